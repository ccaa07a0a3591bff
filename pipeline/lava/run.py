"""NetSpec → Lava: the process graph (source → SpikingNetwork → sink) and runs on Lava's CPU simulator.

``build_lava_graph`` lowers a NetSpec (float) or FixedNetSpec (Loihi integers) with lavaflow.deploy.lowering
(which says what each NetSpec element becomes) and wires the records into two processes:

    SpikingNetwork ──► SpikeCounter
      holds all N samples' payloads;
      fused: one process, B samples side by side (select_sub_proc_model=False)
      plain: a PayloadSource, then Lava Dense / Conv + SoftResetLIF / CubaLIF per population, the Loihi graph (True)

Each sample runs in a window of T + 1 Lava steps (lavaflow.processes.window), so ``run_lava`` compiles once,
runs all N samples in one ``RunSteps``, reads the sink's counts once and always stops the runtime (also on an
exception or Ctrl-C, see lavaflow.pipeline.lava.session). Both graphs honour the NetSpec time semantics, so
their spikes equal the reference simulator's (models.reference): float exactly up to float rounding, fixed
point bit for bit. The readout stays on the host: logits = W·rate + b from the sink's counts (λ-weighted when
rate_decay > 0).

The same graph, with a streaming source, stays up across phases in lavaflow.pipeline.lava.live.LavaSession.

``run_netx`` runs a lava-dl slayer network exported to HDF5 through lava-dl's netx loader (feed-forward CUBA).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from lava.magma.core.process.process import AbstractProcess

from lavaflow.deploy.lowering import network_records
from lavaflow.deploy.quantize import quantize
from lavaflow.deploy.run_config import HARDWARE, SIMULATOR_TAGS, run_config
from lavaflow.models.errors import BackendError, DataError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec, check_fixed_spec, check_payloads, input_payload
from lavaflow.models.netspec import NetSpec, check_integer, check_real
from lavaflow.models.neurons import potential_unit, rate_normaliser
from lavaflow.pipeline.lava.session import run_and_read
from lavaflow.processes.kinds import process_kind
from lavaflow.processes.network.models import PySpikingNetworkModelFixed, PySpikingNetworkModelFloat
from lavaflow.processes.network.process import RECORDABLE, SpikingNetwork
from lavaflow.processes.sink.models import PySpikeCounterModel, PyTraceRecorderModel
from lavaflow.processes.sink.process import SpikeCounter, TraceRecorder
from lavaflow.processes.source.process import PAYLOAD_DTYPE, PayloadSource


@dataclass(frozen=True)
class LavaGraph:
    """The processes of a network and how to run them.

    Attributes:
        network: the SpikingNetwork; it holds the (padded) payloads, (N_padded, T, n_input).
        sink: counts the spikes of ``record`` per sample, (N_padded, n).
        fused: True for the fused CPU model, False for the Dense + neuron (Loihi) graph.
        batch_size: samples per window (1 for the plain graph).
        num_samples: N, the samples before padding to whole windows.
        window_steps: Lava steps per sample window, T + 1.
        record: the population whose spikes the sink counts.
        recorder: buffers the recorded traces (None when nothing is recorded).
        traces: the recorded "population.variable" names, in the order of the recorder's values.
    """

    network: SpikingNetwork
    sink: SpikeCounter
    fused: bool
    batch_size: int
    num_samples: int
    window_steps: int
    record: str
    recorder: TraceRecorder | None = None
    traces: tuple[str, ...] = ()

    @property
    def num_steps(self) -> int:
        """Lava steps that present every sample: windows × (T + 1)."""
        return -(-self.num_samples // self.batch_size) * self.window_steps


@dataclass(frozen=True)
class LavaResult:
    """What ``run_lava`` produced for N samples (the fields of models.reference.SimulationResult it can fill).

    Attributes:
        counts: {readout source: (N, n) int64 spike counts over the T steps}.
        rates: (N, n) λ-weighted rates of the readout source.
        logits: (N, classes) readout.weight @ rates + readout.bias.
        predictions: (N,) arg-max of the logits.
        seconds: wall time of compile, run, read-out and stop.
        run_seconds: wall time of the steps alone.
        records: "population.variable" → (N, T, n) per-step values after the reset, as models.reference records
            them (transposed to samples first): spikes uint8, v and u float64 (int64 in 24-bit LSBs in fixed
            point).
    """

    counts: dict[str, np.ndarray]
    rates: np.ndarray
    logits: np.ndarray
    predictions: np.ndarray
    seconds: float
    run_seconds: float
    records: dict[str, np.ndarray] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ graph
def build_lava_graph(
    spec: NetSpec | FixedNetSpec,
    payloads: np.ndarray,
    *,
    fused: bool,
    batch_size: int,
    record: str | None = None,
    traces: Sequence[str] = (),
    checked: bool = False,
) -> LavaGraph:
    """Build network → sink for ``payloads`` (not yet compiled; run it with ``run_config``).

    Args:
        spec: a NetSpec for floating_pt, a FixedNetSpec for fixed_pt.
        payloads: (N, T, n_input) what the source sends: float intensities/spikes for a NetSpec, integer payloads
            (models.fixed.input_payload) for a FixedNetSpec.
        fused: the fused CPU model (True) or the plain Dense + neuron graph that targets Loihi (False).
        batch_size: samples side by side in the fused model; the plain graph needs 1.
        record: the population whose spikes the sink counts (default: the readout source).
        traces: "population.variable" names ("spikes", "v", and "u" for CUBA kinds) to record every step.
        checked: the spec and payloads have just passed the simulators' gate (run_lava), so their values are not
            checked again (each check reads every payload; the shapes are still checked).

    Raises:
        NetSpecError: an invalid spec (NaN in its arrays, a FixedNetSpec value outside its Lava bit width, an a_in
            that could leave 18 bits with these payloads), or a connection delay other than one step.
        DataError: payloads that do not match the spec.
        BackendError: a batch_size that is not a positive integer, or ≠ 1 for the plain graph.
    """
    batch_size = check_integer("batch_size", batch_size, 1, error=BackendError)
    if not fused and batch_size != 1:
        raise BackendError("the plain (Loihi) graph steps one sample at a time; use batch_size=1 or fused=True")
    if not isinstance(spec, (NetSpec, FixedNetSpec)):
        raise NetSpecError(f"expected a NetSpec or FixedNetSpec, got {type(spec).__name__}")
    if not checked:  # before Lava could clip or truncate a value silently
        check_fixed_spec(spec) if isinstance(spec, FixedNetSpec) else spec.validate()
    names = list(spec.populations)
    record = spec.readout.source if record is None else record
    if record not in spec.populations:
        raise NetSpecError(f"cannot record unknown population {record!r}; choose from {names}")
    expected = (spec.time_steps, spec.input.size)
    if not isinstance(payloads, np.ndarray) or payloads.dtype.kind not in "buif":
        raise DataError(f"payloads must be a real numpy array, got {type(payloads).__name__}")
    if payloads.ndim != 3 or payloads.shape[1:] != expected or payloads.shape[0] == 0:
        raise DataError(f"payloads have shape {payloads.shape}; expected (samples, {expected[0]}, {expected[1]})")
    if not checked:  # the gate of models.fixed.input_payload, for payloads given directly
        check_payloads(spec, payloads) if isinstance(spec, FixedNetSpec) else spec.input.check_values(payloads)
    populations, projections = network_records(spec)
    traced = trace_indices(spec, traces)
    num_samples = payloads.shape[0]
    padded = -(-num_samples // batch_size) * batch_size
    if padded != num_samples:  # whole windows: the padding samples are zeros and are dropped after the run
        payloads = np.concatenate([payloads, np.zeros((padded - num_samples, *expected), dtype=payloads.dtype)])
    window_steps = spec.time_steps + 1
    network = SpikingNetwork(
        input_size=spec.input.size,
        populations=populations,
        projections=projections,
        output=names.index(record),
        batch_size=batch_size,
        window_steps=window_steps,
        record=traced,
        payloads=payloads,
        name="network",
    )
    sink = SpikeCounter(
        shape=(populations[names.index(record)].size,),
        num_samples=padded,
        batch_size=batch_size,
        window_steps=window_steps,
        leak=1.0 - spec.readout.rate_decay if record == spec.readout.source else 1.0,
        name="sink",
    )
    network.s_out.connect(sink.a_in)
    recorder = None
    if traced:
        recorder = TraceRecorder(
            size=sum(populations[index].size for index, _ in traced),
            num_samples=padded,
            batch_size=batch_size,
            window_steps=window_steps,
            name="recorder",
        )
        network.r_out.connect(recorder.a_in)
    return LavaGraph(
        network, sink, fused, batch_size, num_samples, window_steps, record, recorder, tuple(traces)
    )


def fused_models(graph: LavaGraph, backend: str) -> dict[AbstractProcess, type]:
    """The model of each process of a fused graph, named so that Lava need not search for them."""
    fixed = SIMULATOR_TAGS[backend] == "fixed_pt"
    models = {
        graph.network: PySpikingNetworkModelFixed if fixed else PySpikingNetworkModelFloat,
        graph.sink: PySpikeCounterModel,
    }
    if graph.recorder is not None:
        models[graph.recorder] = PyTraceRecorderModel
    return models


def trace_indices(spec: NetSpec | FixedNetSpec, traces: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """(population index, variable) of each "population.variable" name, checked before anything is built.

    Raises:
        NetSpecError: a name that is not a string of a population and one of its recordable variables (listed).
    """
    if isinstance(traces, str):
        raise NetSpecError(f"record must be a sequence of names, got the string {traces!r}")
    populations, _ = network_records(spec)
    valid: dict[str, tuple[int, str]] = {}
    for index, (name, population) in enumerate(zip(spec.populations, populations, strict=True)):
        state = process_kind(population).float_arithmetic(population).state_names
        for variable in RECORDABLE:
            if variable == "spikes" or variable in state:
                valid[f"{name}.{variable}"] = (index, variable)
    for item in traces:
        if not isinstance(item, str) or item not in valid:
            raise NetSpecError(f"cannot record {item!r}; choose from {sorted(valid)}")
    if len(set(traces)) != len(traces):
        raise NetSpecError(f"record names each trace once, got {list(traces)}")
    return tuple(valid[item] for item in traces)


# ------------------------------------------------------------------------------------------------ runs
def run_lava(
    spec: NetSpec | FixedNetSpec,
    inputs: np.ndarray,
    *,
    backend: str,
    fused: bool = True,
    batch_size: int = 32,
    timeout_s: float | None = None,
    record: Sequence[str] = (),
) -> LavaResult:
    """Simulate N samples on Lava's CPU simulator: one compile, one run, one read of the sink.

    Args:
        spec: the network. "lava-fixed" quantises a NetSpec with deploy.quantize (pass a FixedNetSpec to control
            the quantisation); "lava-float" needs a NetSpec.
        inputs: (T, N, *input_shape) as the data pipeline encodes them (intensities, spikes or event counts).
        backend: "lava-float" or "lava-fixed" ("loihi2" is checked, see Raises).
        fused: the fused, batched CPU model (fast) or the plain Dense + neuron graph (the Loihi graph).
        batch_size: samples side by side in the fused model (the plain graph runs one at a time).
        timeout_s: kill the run and raise if it takes longer.
        record: "population.variable" names ("spikes", "v", and "u" for CUBA kinds) to return per step, as
            models.reference.simulate records them; streamed out of the graph once per sample window.

    Returns:
        Counts, rates, logits and predictions of the N samples, the records, and the wall time.

    Raises:
        NetSpecError: an unknown record name (the message lists the valid ones), before anything runs.
        BackendError: an unknown backend, "loihi2" (without lava-loihi; with it, because our neuron processes
            have no Loihi 2 microcode model), or a spec of the wrong precision for the backend.
        DataError: inputs of the wrong shape, with NaN/inf, rate input other than 0/1, or (fixed point) not
            representable as payloads.
        NetSpecError: an invalid spec (e.g. NaN written into its arrays), or (fixed point) one whose a_in could
            leave 18 bits with these inputs: the same gate as the reference simulator's.
        LavaRunError: the Lava run failed or timed out; no OS process is left behind.
    """
    batch_size = check_integer("batch_size", batch_size, 1, error=BackendError)
    if timeout_s is not None:
        check_real("timeout_s", timeout_s, 0.0, error=BackendError)
    run_config(backend)  # an unknown backend, or loihi2 without lava-loihi, raises here
    if backend == HARDWARE:
        raise BackendError(
            "run_lava simulates on the CPU; lavaflow's soft-reset neurons have no Loihi 2 microcode model, so run "
            "--backend lava-fixed for bit-accurate results and deploy netx bundles to the chip"
        )
    simulated, payloads = _spec_and_payloads(spec, inputs, backend)
    trace_indices(simulated, record)  # refuse an unknown name before the graph is built
    potential = f"{simulated.readout.source}.v"
    reads_potential = simulated.readout.quantity == "potential"
    traces = (*record, potential) if reads_potential and potential not in record else tuple(record)
    batch = min(batch_size, payloads.shape[0]) if fused else 1  # no window wider than the data
    graph = build_lava_graph(simulated, payloads, fused=fused, batch_size=batch, traces=traces, checked=True)
    models = fused_models(graph, backend) if fused else None
    config = run_config(backend, select_sub_proc_model=not fused, models=models)
    started = time.perf_counter()
    # The sink streams each window's counts to the host (and the recorder its traces): one pass each, not
    # Var.get's ~20k values/s.
    timed = run_and_read(graph.sink, graph.num_steps, config, partial(_read, graph), timeout_s=timeout_s)
    seconds = time.perf_counter() - started
    (counts, weighted), traces = timed.value
    counts, weighted = counts[: graph.num_samples], weighted[: graph.num_samples]
    records = _split_traces(simulated, graph, traces)
    final = records[potential][:, -1] if reads_potential else None
    result = summarise(simulated, graph.record, counts, weighted, seconds, timed.run_seconds, final)
    return dataclasses.replace(result, records={name: records[name] for name in record})


def _read(graph: LavaGraph) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """The sink's counts and the recorder's traces (None without one), read after the run."""
    traces = None if graph.recorder is None else graph.recorder.receive_traces()
    return graph.sink.receive_counts(), traces


def _split_traces(spec: NetSpec | FixedNetSpec, graph: LavaGraph, traces: np.ndarray | None) -> dict[str, np.ndarray]:
    """The recorder's (N_padded, T, R) values as {name: (N, T, n)} in the reference simulator's dtypes."""
    if traces is None:
        return {}
    records, start = {}, 0
    for name in graph.traces:
        population, _, variable = name.rpartition(".")
        size = spec.populations[population].size
        values = traces[: graph.num_samples, :, start : start + size]
        start += size
        if variable == "spikes":
            records[name] = np.rint(values).astype(np.uint8)
        elif isinstance(spec, FixedNetSpec):
            records[name] = np.rint(values).astype(np.int64)
        else:
            records[name] = np.ascontiguousarray(values)
    return records


def _spec_and_payloads(
    spec: NetSpec | FixedNetSpec, inputs: np.ndarray, backend: str
) -> tuple[NetSpec | FixedNetSpec, np.ndarray]:
    """The spec to simulate and the source's payloads (N, T, n_input) for ``backend``."""
    fixed = SIMULATOR_TAGS[backend] == "fixed_pt"
    if fixed:
        if isinstance(spec, NetSpec):
            spec, _ = quantize(spec)
        if not isinstance(spec, FixedNetSpec):
            raise BackendError(f"lava-fixed simulates a NetSpec or FixedNetSpec, got {type(spec).__name__}")
        values = input_payload(spec, inputs, dtype=None)  # the fixed-point gate, the reference simulator's too
    else:
        if not isinstance(spec, NetSpec):
            raise BackendError(
                f"lava-float simulates a float NetSpec, got {type(spec).__name__}; run a FixedNetSpec on lava-fixed"
            )
        spec.validate()  # the float gate, the reference simulator's too
        values = spec.input.checked(inputs, spec.time_steps)
    # (T, N, n) → (N, T, n) in the source model's Var type (int16 fixed, float64 float), in one pass; Lava then
    # does not convert a second copy.
    time_steps, num_samples = values.shape[:2]
    payloads = np.empty((num_samples, time_steps, spec.input.size), dtype=PAYLOAD_DTYPE if fixed else np.float64)
    payloads.transpose(1, 0, 2)[...] = values.reshape(time_steps, num_samples, -1)
    return spec, payloads


def summarise(
    spec: NetSpec | FixedNetSpec,
    record: str,
    counts: np.ndarray,
    weighted: np.ndarray,
    seconds: float,
    run_seconds: float,
    final_potential: np.ndarray | None = None,
) -> LavaResult:
    """Rates, logits and predictions from the sink's sums, as models.reference computes them on the host; a
    potential readout reads ``final_potential``, the source's v after the last step (N, n), in the spec's units."""
    readout = spec.readout
    leak = 1.0 - readout.rate_decay
    rates = weighted / rate_normaliser(spec.time_steps, leak)
    if readout.quantity == "potential":
        if final_potential is None:
            raise BackendError("this runner cannot read a potential readout; use run_lava")
        unit = potential_unit(spec.populations[readout.source].scale) if isinstance(spec, FixedNetSpec) else 1.0
        logits = readout.logits(final_potential * unit)
    else:
        logits = readout.logits(rates)
    return LavaResult(
        counts={record: np.rint(counts).astype(np.int64)},
        rates=rates,
        logits=logits,
        predictions=np.argmax(logits, axis=1).astype(np.int64),
        seconds=seconds,
        run_seconds=run_seconds,
    )


# ------------------------------------------------------------------------------------------------ netx
@dataclass(frozen=True)
class NetxResult:
    """Output spike counts of a netx network, (N, n_output), and the wall time of the Lava run."""

    counts: np.ndarray
    seconds: float


def run_netx(
    hdf5_path: str | Path,
    inputs: np.ndarray,
    *,
    input_message_bits: int = 0,
    timeout_s: float | None = None,
    backend: str = "lava-fixed",
) -> NetxResult:
    """Run a lava-dl netx network (slayer ``export_hdf5``) on N samples under fixed_pt and count its output spikes.

    netx graphs are correct only under fixed_pt (their parameters are Loihi integers; research/lava.md §4.4).
    Each of the L layers adds one step, so a sample of T steps runs in a window of T + L steps; netx's LIFReset
    neurons reset layer i at window step 2 + i (``reset_interval`` = T + L, ``reset_offset`` = 1), when the
    sample's first input reaches that layer, and the sink counts window steps L + 1 … T + L, the T output steps.
    This equals slayer's forward pass (``delay_shift=True``) on the input padded with L zero steps, for networks
    whose neurons have no bias (a bias drives slayer's deeper layers before the input arrives).

    Args:
        hdf5_path: the file slayer's ``export_hdf5`` wrote.
        inputs: (T, N, *input_shape) integer payloads: 0/1 spikes (``input_message_bits`` 0) or graded values;
            each step is flattened in C order onto netx's input port (whose shape is (x, y, f) for a conv input).
        input_message_bits: 0 for binary input spikes, 8 for graded payloads.
        timeout_s: kill the run and raise if it takes longer.
        backend: "lava-fixed" (Lava's CPU simulator, bit-accurate) or "loihi2" (Loihi2HwCfg, where Intel's
            lava-loihi is installed; deploy.run_config says clearly why not where it is not).

    Raises:
        NetSpecError: a missing, unreadable or unsupported HDF5 file, a synapse layer without neurons, or
            non-finite weights, biases or neuron parameters.
        DataError: inputs that do not fit the network's input.
        BackendError: input_message_bits or timeout_s that are not numbers in range.
        LavaRunError: the Lava run failed or timed out.
    """
    input_message_bits = check_integer("input_message_bits", input_message_bits, 0, 16, error=BackendError)
    if backend not in ("lava-fixed", HARDWARE):
        raise BackendError(f"a netx network runs on lava-fixed or {HARDWARE} (its values are Loihi integers), "
                           f"not {backend!r}")
    if timeout_s is not None:
        check_real("timeout_s", timeout_s, 0.0, error=BackendError)
    network = _load_netx(Path(hdf5_path), input_message_bits)
    input_size = int(np.prod(network.inp.shape))
    if (
        not isinstance(inputs, np.ndarray)
        or inputs.dtype.kind not in "buif"
        or inputs.ndim < 3
        or 0 in inputs.shape[:2]
        or int(np.prod(inputs.shape[2:])) != input_size
    ):
        raise DataError(
            f"inputs have shape {getattr(inputs, 'shape', None)}; the netx network expects (T, N, {network.inp.shape})"
        )
    limit = 1 if input_message_bits == 0 else (1 << input_message_bits) - 1
    if not np.all(np.isfinite(inputs)) or np.any(inputs != np.rint(inputs)) or inputs.min() < 0 or inputs.max() > limit:
        raise DataError(f"netx inputs must be integers in 0..{limit} for input_message_bits={input_message_bits}")
    time_steps, num_samples = inputs.shape[:2]
    window_steps = time_steps + len(network.layers)
    network = _load_netx(Path(hdf5_path), input_message_bits, reset_interval=window_steps)
    payloads = np.ascontiguousarray(inputs.reshape(time_steps, num_samples, input_size).transpose(1, 0, 2))
    source = PayloadSource(payloads=payloads.astype(np.int64), batch_size=1, window_steps=window_steps)
    output_size = int(np.prod(network.out.shape))
    sink = SpikeCounter(
        shape=(output_size,),
        num_samples=num_samples,
        batch_size=1,
        window_steps=window_steps,
        first_step=len(network.layers) + 1,
    )
    if tuple(network.inp.shape) == (input_size,):
        source.s_out.connect(network.inp)
    else:
        source.s_out.reshape(tuple(network.inp.shape)).connect(network.inp)
    if tuple(network.out.shape) == (output_size,):
        network.out.connect(sink.a_in)
    else:
        network.out.flatten().connect(sink.a_in)
    started = time.perf_counter()
    timed = run_and_read(
        sink, num_samples * window_steps, run_config(backend), sink.receive_counts, timeout_s=timeout_s
    )
    return NetxResult(counts=np.rint(timed.value[0]).astype(np.int64), seconds=time.perf_counter() - started)


def _load_netx(path: Path, input_message_bits: int, reset_interval: int | None = None) -> AbstractProcess:
    """lava-dl's netx Network for ``path``, with every failure turned into a NetSpecError that names the file."""
    if not path.is_file():
        raise NetSpecError(f"{path}: no such netx HDF5 file; write one with a slayer network's export_hdf5")
    import h5py
    from lava.lib.dl import netx  # imported here: lava-dl pulls in torch and prints warnings on import

    try:
        with h5py.File(path, "r") as handle:
            if "layer" not in handle or len(handle["layer"]) == 0:
                raise NetSpecError(f"{path}: no 'layer' group; not a netx network description (slayer export_hdf5)")
            _check_netx_layers(path, handle["layer"])
        return netx.hdf5.Network(
            net_config=str(path),
            input_message_bits=input_message_bits,
            reset_interval=reset_interval,
            reset_offset=1,
        )
    except NetSpecError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, NotImplementedError, RuntimeError) as error:
        raise NetSpecError(f"{path}: not a readable netx network ({type(error).__name__}: {error})") from None


def _check_netx_layers(path: Path, layers: object) -> None:
    """Refuse what netx would run silently wrong: a synapse layer without a neuron group (netx makes it a
    non-spiking integrator, so the network outputs no spikes at all) and non-finite weights, biases or neuron
    parameters (netx casts NaN weights to integers, which its weight optimisation turns into −256, with a
    warning only)."""
    import h5py

    for key in sorted(layers, key=lambda name: int(name) if str(name).isdigit() else -1):
        layer = layers[key]
        if not str(key).isdigit() or not isinstance(layer, h5py.Group) or "type" not in layer:
            raise NetSpecError(f"{path}: layer {key!r} is not a netx layer (numbered groups with a 'type')")
        kind = layer["type"][0] if layer["type"].shape else layer["type"][()]
        kind = kind.decode("ascii") if isinstance(kind, bytes) else str(kind)
        if kind in ("dense", "dense_rec", "conv") and "neuron" not in layer:
            raise NetSpecError(
                f"{path}: layer {key} ({kind}) has no 'neuron' group; netx would run it as a non-spiking integrator "
                f"and the network would output no spikes. Export the layer with its neurons (slayer blocks do)"
            )
        datasets: list[tuple[str, h5py.Dataset]] = []
        layer.visititems(partial(_collect_dataset, datasets))
        for name, dataset in datasets:
            if dataset.dtype.kind == "f" and not np.all(np.isfinite(dataset[()])):
                raise NetSpecError(
                    f"{path}: layer {key} {name} holds NaN or inf values; netx would cast them to integers "
                    f"(NaN weights become −256) and run silently. The training run diverged: retrain or re-export"
                )


def _collect_dataset(found: list[tuple[str, object]], name: str, item: object) -> None:
    """h5py visititems callback: keep every dataset (returns None, so the visit goes on)."""
    import h5py

    if isinstance(item, h5py.Dataset):
        found.append((name, item))
