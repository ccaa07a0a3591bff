"""SpikingNetwork: a whole network as one Lava process, described by the records of lavaflow.processes.topology."""

from __future__ import annotations

from collections.abc import Sequence

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig

from lavaflow.processes.topology import Population, Projection, check_topology
from lavaflow.processes.window import check_window_steps


class SpikingNetwork(AbstractProcess):
    """Populations of SoftResetLIF / CubaLIF neurons joined by Dense projections, as one process.

    Two kinds of model implement it (ARCHITECTURE §4): a SubProcessModel that expands into standard Lava Dense
    processes and our neuron processes, one per population (the graph that targets Loihi; picked by
    ``Loihi2SimCfg(select_sub_proc_model=True)``), and fused leaf models (floating_pt, fixed_pt) that step the
    whole network in this one OS process with a batch axis of B independent samples (the CPU simulator's fast
    path; ``select_sub_proc_model=False``). The fused models reproduce Dense's one-step delay and the
    per-sample window of lavaflow.processes.window, so both give the same spikes.

    Ports carry B samples side by side, flattened: ``s_in`` B·n_input payload values, ``s_out`` the spikes of
    population ``output``, B·n_output values. The sub-process graph runs one sample at a time (B = 1).

    Args:
        input_size: payload values per sample and step.
        populations: the populations, in update order.
        projections: the connections; sources and targets index ``populations`` (or INPUT).
        output: index of the population sent on ``s_out``.
        batch_size: B.
        window_steps: Lava steps per sample, T + 1.
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
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        populations, projections = tuple(populations), tuple(projections)
        super().__init__(
            input_size=input_size,
            populations=populations,
            projections=projections,
            output=output,
            batch_size=batch_size,
            window_steps=window_steps,
            name=name,
            log_config=log_config,
        )
        # Checked after super(): Lava's AbstractProcess.__del__ fails on a process whose __init__ raised before it.
        check_topology(input_size, populations, projections, output)
        check_window_steps(window_steps)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.s_in = InPort(shape=(batch_size * input_size,))
        self.s_out = OutPort(shape=(batch_size * populations[output].size,))
