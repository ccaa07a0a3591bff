"""SpikingNetwork: a whole network as one Lava process, described by the records of lavaflow.processes.topology;
ExponentShift: the adaptor its Loihi graph puts behind Lava's Conv."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.kinds import check_kinds
from lavaflow.processes.topology import Population, Projection, check_topology
from lavaflow.processes.window import SCHEDULE_SIZE, check_payload_windows, check_window_steps, initial_schedule

RECORDABLE = ("spikes", "v", "u")  # what SpikingNetwork can record per population ("u": CUBA current)


def weights_var_name(projection: int) -> str:
    """The name of the Var holding projection ``projection``'s weights (or kernel, or sparse values)."""
    return f"weights_{int(projection)}"


def bias_var_name(population: int) -> str:
    """The name of the Var holding population ``population``'s bias_mant."""
    return f"bias_{int(population)}"


class SpikingNetwork(AbstractProcess):
    """Populations of neurons (the kinds of lavaflow.processes.kinds) joined by Dense or Conv projections.

    Two kinds of model implement it (ARCHITECTURE §4): a SubProcessModel that expands into standard Lava Dense,
    DelayDense and Conv processes and our neuron processes, one per population (the graph that targets Loihi;
    picked by ``Loihi2SimCfg(select_sub_proc_model=True)``), and fused leaf models (floating_pt, fixed_pt) that step the
    whole network in this one OS process with a batch axis of B independent samples (the CPU simulator's fast
    path; ``select_sub_proc_model=False``), computing convolutions natively. The fused models reproduce each
    projection's delay (Dense's one step, or d steps through a spike history) and the per-sample window of
    lavaflow.processes.window, so both give the same spikes.

    Ports carry B samples side by side, flattened: ``s_in`` B·n_input payload values, ``s_out`` the spikes of
    population ``output``, B·n_output values. The sub-process graph runs one sample at a time (B = 1).

    A run whose inputs are all known before it starts (lavaflow.pipeline.lava.run) hands them over as ``payloads``
    and leaves ``s_in`` unconnected: the fused models then read each step's input from the ``payloads`` Var, as a
    PayloadSource would send it (window w's samples at window step k ≤ T, zeros at the other steps), which saves
    an OS process and a channel copy of B·n_input values per step; the Loihi graph puts a PayloadSource holding
    them inside its sub-process graph, in front of the input's connections.

    Parameters that a session reads and writes between phases are Vars: ``weights_<i>`` per projection i (its
    ``weights`` array, same shape: matrix, kernel or sparse values) and ``bias_<j>`` per population j (its bias_mant),
    floats in floating_pt, Lava's integers in fixed_pt. The fused models compute with these Vars (they rebuild their
    synapses at the first step of each phase, after any Var.set); the Loihi graph aliases them to its Dense /
    DelayDense ``weights`` and neurons' ``bias_mant`` (a conv projection's Var is not aliased: Lava's Conv keeps its
    kernel flipped and transposed, lavaflow.pipeline.lava.live converts). The records' own arrays are the initial
    values only. ``schedule`` is the fused model's phase schedule (lavaflow.processes.window); in the Loihi graph
    each neuron process has its own.

    Args:
        input_size: payload values per sample and step.
        populations: the populations, in update order.
        projections: the connections; sources and targets index ``populations`` (or INPUT_SOURCE).
        output: index of the population sent on ``s_out``.
        batch_size: B.
        window_steps: Lava steps per sample, T + 1.
        record: (population index, "spikes" | "v" | "u") traces sent on ``r_out`` every step, after the reset.
        payloads: (N, T, n_input) the inputs of every sample, N a multiple of B (pad with zero samples), in the
            precision's payload type (float64; int16 in fixed point, lavaflow.processes.source.PAYLOAD_DTYPE);
            None: the input arrives on ``s_in``.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        input_size: int,
        populations: Sequence[Population],
        projections: Sequence[Projection],
        output: int,
        batch_size: int,
        window_steps: int,
        record: Sequence[tuple[int, str]] = (),
        payloads: np.ndarray | None = None,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        populations, projections = tuple(populations), tuple(projections)
        record = tuple((int(index), str(variable)) for index, variable in record)
        super().__init__(
            input_size=input_size,
            populations=populations,
            projections=projections,
            output=output,
            batch_size=batch_size,
            window_steps=window_steps,
            record=record,
            holds_payloads=payloads is not None,
            name=name,
            log_config=log_config,
        )
        # Checked after super(): Lava's AbstractProcess.__del__ fails on a process whose __init__ raised before it.
        check_kinds(populations)
        check_topology(input_size, populations, projections, output)
        check_window_steps(window_steps)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.s_in = InPort(shape=(batch_size * input_size,))
        self.s_out = OutPort(shape=(batch_size * populations[output].size,))
        for index, variable in record:
            if not 0 <= index < len(populations) or variable not in RECORDABLE:
                raise ValueError(f"cannot record {variable!r} of population {index}; variables are {RECORDABLE}")
        # The recorded traces of each step, per sample concatenated in ``record`` order; one dummy value without.
        self.r_out = OutPort(shape=(batch_size * max(1, sum(populations[i].size for i, _ in record)),))
        self.schedule = Var(shape=(SCHEDULE_SIZE,), init=initial_schedule(window_steps))
        for index, projection in enumerate(projections):
            weights = np.asarray(projection.weights)
            setattr(self, weights_var_name(index), Var(shape=weights.shape, init=weights))
        for index, population in enumerate(populations):
            setattr(self, bias_var_name(index), Var(shape=(population.size,), init=np.asarray(population.bias_mant)))
        if payloads is not None:
            check_payload_windows(payloads, input_size, batch_size, window_steps)
            self.payloads = Var(shape=payloads.shape, init=payloads)


class TraceJoin(AbstractProcess):
    """Concatenates two vectors within a step (no delay): the Loihi graph joins its recorded traces with a chain
    of these, because Lava 0.10 cannot connect a ConcatPort.

    Args:
        sizes: (m, k), the lengths of ``a_in`` and ``b_in``; ``out`` carries m + k values.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(self, *, sizes: tuple[int, int], name: str | None = None, log_config: LogConfig | None = None) -> None:
        super().__init__(sizes=sizes, name=name, log_config=log_config)
        self.a_in = InPort(shape=(sizes[0],))
        self.b_in = InPort(shape=(sizes[1],))
        self.out = OutPort(shape=(sizes[0] + sizes[1],))


class ExponentShift(AbstractProcess):
    """Applies a weight exponent to a synaptic input on its way to the neurons, within the same step (no delay).

    The Loihi graph needs it behind Lava's Conv, whose models (lava-nc 0.10) never read their ``weight_exp`` Var
    (lavaflow.processes.network.models says what else they do): fixed_pt sends a_in << weight_exp, or a_in >>
    −weight_exp (an arithmetic shift, flooring), exactly what Lava's Dense does to its accumulated W·s; floating_pt
    passes a_in through, as Lava's float Dense and the fused float model ignore weight_exp too.

    Args:
        shape: (n,), the synaptic inputs of one target population.
        weight_exp: the projection's exponent.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self, *, shape: tuple[int], weight_exp: int, name: str | None = None, log_config: LogConfig | None = None
    ) -> None:
        super().__init__(shape=shape, weight_exp=weight_exp, name=name, log_config=log_config)
        self.a_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
