"""A NetSpec's Lava graph that stays up: compile once, then run phases and read or set weights between them.

``LavaSession`` builds the graph of run.py with a streaming source in front:

    StreamSource ──► SpikingNetwork ──► SpikeCounter
    inputs piped in     fused (B samples side by side) or plain (the Loihi graph, B = 1)
    per phase

and keeps its OS processes alive (lavaflow.pipeline.lava.session.LavaRuntime: every call is guarded as
``run_and_read`` is, and every exit path kills or stops them). A phase is ``run_phase(steps, inputs, reset=...)``:
each of its windows (one per B samples) is one restart step plus ``steps`` dynamics steps (lavaflow.processes.window
says why), so a phase of T steps with reset gives exactly the spikes of a separate run of those inputs, and
the NetSpec time semantics hold within it. ``reset=False`` keeps the neurons' state from the previous phase;
the spikes in flight are dropped all the same, so the phase starts with s[0] = 0 (for a population fed by the
input alone, a kept phase continues the previous one exactly). Inputs travel through a pipe (whole arrays per
step), the counts come back through the sink's pipe (one message per window): neither uses Var.get/set.

Parameters are Vars (lavaflow.processes.network): ``weights(i)`` / ``set_weights(i, values)`` reach projection i
(the NetSpec's connection i) in the NetSpec layout, dense matrix or conv kernel, in both graphs; ``bias`` and
``set_bias`` a population's bias_mant. Floats under lava-float, Lava's integers under lava-fixed (the spec's own
units: a FixedNetSpec's weights, before weight_exp). Var.get/set move ~20k values/s (research/lava.md §1.6), so
read weights at checkpoints, not per batch. A set counts from the next phase on.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from lava.magma.core.process.variable import Var

from lavaflow.deploy.lowering import network_records
from lavaflow.deploy.quantize import quantize
from lavaflow.deploy.run_config import HARDWARE, SIMULATOR_TAGS, run_config
from lavaflow.models.bit_widths import BIAS_MANT_MAX, BIAS_MANT_MIN, WEIGHT_MAX, WEIGHT_MIN
from lavaflow.models.errors import BackendError, DataError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec, input_payload
from lavaflow.models.netspec import NetSpec, check_integer, check_real
from lavaflow.pipeline.lava.run import LavaResult, summarise
from lavaflow.pipeline.lava.session import LavaRuntime
from lavaflow.processes.network.process import SpikingNetwork, bias_var_name, weights_var_name
from lavaflow.processes.sink.process import SpikeCounter
from lavaflow.processes.source.process import StreamSource
from lavaflow.processes.topology import Projection
from lavaflow.processes.window import phase_schedule


class LavaSession:
    """A NetSpec compiled once onto Lava's CPU simulator and kept running between phases.

    Use it as a context manager (or call ``close()``); every failure kills the graph and raises LavaRunError.
    The thread that creates the session must outlive it (its OS processes die with that thread).

    Args:
        spec: the network; "lava-fixed" quantises a NetSpec with deploy.quantize (pass a FixedNetSpec to control
            the quantisation), "lava-float" needs a NetSpec.
        backend: "lava-float" or "lava-fixed".
        fused: the fused, batched CPU model (True) or the plain Dense + neuron graph that targets Loihi (False).
        batch_size: samples side by side in the fused model (the plain graph takes 1).
        max_steps: the longest phase, in dynamics steps (default: the spec's time_steps).
        max_windows: the most windows one phase may run (a window holds batch_size samples).
        record: the population whose spikes are counted (default: the readout source).
        timeout_s: kill the graph and raise if one phase (or Var get/set) takes longer.

    Raises:
        BackendError: an unknown backend or "loihi2", a spec of the wrong precision, sizes out of range.
        NetSpecError: an invalid spec or an unknown ``record``.
    """

    def __init__(
        self,
        spec: NetSpec | FixedNetSpec,
        *,
        backend: str,
        fused: bool = True,
        batch_size: int = 1,
        max_steps: int | None = None,
        max_windows: int = 1,
        record: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        batch_size = check_integer("batch_size", batch_size, 1, error=BackendError)
        max_windows = check_integer("max_windows", max_windows, 1, error=BackendError)
        if timeout_s is not None:
            check_real("timeout_s", timeout_s, 0.0, error=BackendError)
        config = run_config(backend, select_sub_proc_model=not fused)
        if backend == HARDWARE:
            raise BackendError("a LavaSession simulates on the CPU; use lava-float or lava-fixed")
        if not fused and batch_size != 1:
            raise BackendError("the plain (Loihi) graph steps one sample at a time; use batch_size=1 or fused=True")
        self.spec = _simulated_spec(spec, backend)
        self.fixed = isinstance(self.spec, FixedNetSpec)
        self.fused, self.batch_size, self.max_windows = fused, batch_size, max_windows
        self.max_steps = check_integer(
            "max_steps", self.spec.time_steps if max_steps is None else max_steps, 1, error=BackendError
        )
        names = list(self.spec.populations)
        self.record = self.spec.readout.source if record is None else record
        if self.record not in self.spec.populations:
            raise NetSpecError(f"cannot count unknown population {self.record!r}; choose from {names}")
        populations, self.projections = network_records(self.spec)
        window_steps = self.spec.time_steps + 1
        self.source = StreamSource(
            size=self.spec.input.size,
            batch_size=batch_size,
            window_steps=window_steps,
            capacity=max_windows * self.max_steps,
            name="source",
        )
        self.network = SpikingNetwork(
            input_size=self.spec.input.size,
            populations=populations,
            projections=self.projections,
            output=names.index(self.record),
            batch_size=batch_size,
            window_steps=window_steps,
            name="network",
        )
        self.sink = SpikeCounter(
            shape=(populations[names.index(self.record)].size,),
            num_samples=max_windows * batch_size,
            batch_size=batch_size,
            window_steps=window_steps,
            leak=1.0 - self.spec.readout.rate_decay if self.record == self.spec.readout.source else 1.0,
            name="sink",
        )
        self.source.s_out.connect(self.network.s_in)
        self.network.s_out.connect(self.sink.a_in)
        self.runtime = LavaRuntime(self.sink, config, timeout_s=timeout_s)
        self.setup_seconds = 0.0
        self._scheduled: list[Any] | None = None

    # ------------------------------------------------------------------------------------------ lifetime
    def __enter__(self) -> LavaSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        self.runtime.__exit__(kind, error, trace)

    def start(self) -> None:
        """Compile and fork the graph now (otherwise the first phase or Var access does)."""
        if self.sink.runtime is None:
            self.setup_seconds = self.runtime.start()

    def close(self) -> None:
        """Stop the graph gracefully (kill it if that fails); idempotent."""
        self.runtime.close()

    # ------------------------------------------------------------------------------------------ phases
    def run_phase(
        self, steps: int, inputs: np.ndarray | None = None, *, reset: bool = True, learn: bool = False
    ) -> LavaResult:
        """Run one phase of ``steps`` dynamics steps per window and return the counts of ``record`` in it.

        Args:
            steps: dynamics steps per window, 1 … max_steps.
            inputs: (steps, S, *input_shape), time first, as the data pipeline encodes them (the spec's gate
                checks them); S samples fill ⌈S / batch_size⌉ windows. None sends no input (one window).
            reset: zero the neurons' state at the phase's start (False keeps it; needs a single window).
            learn: let plastic processes update their weights during the phase (the schedule's ``learn`` flag; no
                process of today's graph is plastic, so it changes nothing yet).

        Returns:
            counts, rates, logits and predictions of the S samples (B for no input), and the phase's wall time.

        Raises:
            DataError: inputs that do not fit the spec.
            BackendError: steps or windows beyond the session's sizes, reset=False over several windows, or a
                plain graph with delayed projections run for steps other than the spec's time_steps.
            LavaRunError: the phase failed; the graph is gone.
        """
        steps = check_integer("steps", steps, 1, error=BackendError)
        if steps > self.max_steps:
            raise BackendError(f"a phase of {steps} steps is longer than the session's max_steps={self.max_steps}")
        if not isinstance(reset, bool) or not isinstance(learn, bool):
            raise BackendError(f"reset and learn must be True or False, got {reset!r} and {learn!r}")
        phase_spec = dataclasses.replace(self.spec, time_steps=steps)
        if inputs is None:
            payloads, samples = None, self.batch_size
        else:
            payloads = _payloads(phase_spec, inputs)
            samples = payloads.shape[0]
        windows = -(-samples // self.batch_size)
        if windows > self.max_windows:
            raise BackendError(
                f"{samples} samples need {windows} windows of {self.batch_size}; the session holds "
                f"{self.max_windows} per phase (max_windows)"
            )
        if not reset and windows > 1:
            raise BackendError("reset=False keeps one window's state; run one window (≤ batch_size samples)")
        started = time.perf_counter()
        self.start()
        first_step = self.runtime.steps_run + 1
        schedule = phase_schedule(first_step, steps + 1, reset=reset, inputs=payloads is not None, learn=learn)
        for process in self._scheduled_processes():
            self.runtime.set(process.schedule, schedule.astype(np.float64))
        if payloads is not None:
            self.source.send_payloads(_messages(payloads, windows, self.batch_size))
        run_seconds = self.runtime.run(windows * (steps + 1))
        counts, weighted = self.sink.receive_counts(windows)
        result = summarise(
            phase_spec,
            self.record,
            counts[:samples],
            weighted[:samples],
            time.perf_counter() - started,
            run_seconds,
        )
        return result

    def _scheduled_processes(self) -> list[Any]:
        """The processes that read the phase schedule: every leaf process with a ``schedule`` Var (source, sink,
        the fused network or the plain graph's neurons, and whatever later graphs add), found once."""
        if self._scheduled is None:
            self._scheduled = [
                p for p in self.runtime.leaf_processes() if isinstance(getattr(p, "schedule", None), Var)
            ]
        return self._scheduled

    # ------------------------------------------------------------------------------------------ Vars
    def get(self, var: Var) -> np.ndarray:
        """Any Var of the graph, read while paused (~20k values/s)."""
        self.start()
        return self.runtime.get(var)

    def set(self, var: Var, values: np.ndarray) -> None:
        """Write any Var of the graph while paused; it counts from the next phase on."""
        self.start()
        self.runtime.set(var, values)

    def weights(self, projection: int) -> np.ndarray:
        """Projection ``projection``'s weights as the NetSpec holds them: (n_out, n_in), or the conv kernel
        (C_out, C_in/groups, kH, kW); float64, integer-valued under lava-fixed."""
        var, to_lava = self._weights_var(projection)
        value = self.get(var)
        return np.ascontiguousarray(value.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]) if to_lava else value

    def set_weights(self, projection: int, values: np.ndarray) -> None:
        """Write projection ``projection``'s weights (the layout ``weights`` returns); used from the next phase.

        Raises:
            DataError: values of the wrong shape, non-finite, or (fixed point) not even integers in [−256, 254].
        """
        var, to_lava = self._weights_var(projection)
        expected = np.shape(self.projections[projection].weights)
        values = self._checked(f"weights of projection {projection}", values, expected, WEIGHT_MIN, WEIGHT_MAX)
        if self.fixed and np.any(values % 2):
            raise DataError(
                f"weights of projection {projection}: fixed-point weights must be even (Lava's 8-bit mixed-sign "
                f"Dense drops the LSB, so odd values would differ between graphs); quantise with deploy.quantize"
            )
        if to_lava:
            values = np.ascontiguousarray(values[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
        self.set(var, values)

    def bias(self, population: str) -> np.ndarray:
        """Population ``population``'s bias_mant, (n,)."""
        return self.get(self._bias_var(population))

    def set_bias(self, population: str, values: np.ndarray) -> None:
        """Write population ``population``'s bias_mant, (n,); used from the next phase.

        Raises:
            DataError: values of the wrong shape, non-finite, or (fixed point) not 13-bit signed integers.
        """
        size = self.spec.populations[population].size if population in self.spec.populations else 0
        var = self._bias_var(population)
        self.set(var, self._checked(f"bias of {population!r}", values, (size,), BIAS_MANT_MIN, BIAS_MANT_MAX))

    def _weights_var(self, projection: int) -> tuple[Var, bool]:
        """The Var holding the projection's weights, and whether it is in Lava Conv's layout."""
        projection = check_integer("projection", projection, 0, len(self.projections) - 1, error=BackendError)
        record: Projection = self.projections[projection]
        if not self.fused and getattr(record, "sparse", None) is not None:
            raise BackendError(
                f"projection {projection} is sparse: reading or setting its values in the plain graph is not "
                f"supported yet (Lava's Sparse keeps a CSR matrix in its own order); use fused=True"
            )
        if not self.fused and record.conv is not None:
            self.start()  # the Loihi graph's children exist once it is compiled
            return getattr(self.network.procs, f"conv_{projection}").weight, True
        return getattr(self.network, weights_var_name(projection)), False

    def _bias_var(self, population: str) -> Var:
        names = list(self.spec.populations)
        if population not in names:
            raise BackendError(f"unknown population {population!r}; choose from {names}")
        return getattr(self.network, bias_var_name(names.index(population)))

    def _checked(self, what: str, values: np.ndarray, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
        """``values`` as float64 after the checks of the session's precision."""
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "buif":
            raise DataError(f"{what}: expected a real numpy array, got {type(values).__name__}")
        if values.shape != tuple(shape):
            raise DataError(f"{what}: shape {values.shape}, expected {tuple(shape)}")
        values = values.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise DataError(f"{what}: values must be finite")
        if self.fixed and (np.any(values != np.rint(values)) or values.min() < low or values.max() > high):
            raise DataError(f"{what}: fixed-point values must be integers in [{low}, {high}]")
        return values


def _simulated_spec(spec: NetSpec | FixedNetSpec, backend: str) -> NetSpec | FixedNetSpec:
    """The spec the backend simulates: quantised for lava-fixed, validated as run_lava does."""
    if SIMULATOR_TAGS[backend] == "fixed_pt":
        if isinstance(spec, NetSpec):
            spec, _ = quantize(spec)
        if not isinstance(spec, FixedNetSpec):
            raise BackendError(f"lava-fixed simulates a NetSpec or FixedNetSpec, got {type(spec).__name__}")
        return spec
    if not isinstance(spec, NetSpec):
        raise BackendError(
            f"lava-float simulates a float NetSpec, got {type(spec).__name__}; run a FixedNetSpec on lava-fixed"
        )
    spec.validate()
    return spec


def _payloads(spec: NetSpec | FixedNetSpec, inputs: np.ndarray) -> np.ndarray:
    """(S, steps, n_input) payloads of ``inputs`` (steps, S, *input_shape), through the spec's one gate."""
    values = (
        input_payload(spec, inputs) if isinstance(spec, FixedNetSpec) else spec.input.checked(inputs, spec.time_steps)
    )
    return np.ascontiguousarray(values.reshape(values.shape[0], values.shape[1], -1).transpose(1, 0, 2))


def _messages(payloads: np.ndarray, windows: int, batch_size: int) -> np.ndarray:
    """The source's pipe messages, (windows·steps, B·n): per window, per step, its B samples side by side."""
    samples, steps, size = payloads.shape
    padded = np.zeros((windows * batch_size, steps, size))
    padded[:samples] = payloads
    return padded.reshape(windows, batch_size, steps, size).transpose(0, 2, 1, 3).reshape(windows * steps, -1)
