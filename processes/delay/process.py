"""DelayGate: the process declaration; its float and fixed-point models pass a_in through or zero it."""

from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import SCHEDULE_SIZE, check_window_steps, initial_schedule


class DelayGate(AbstractProcess):
    """Zeroes a delayed projection's synaptic input for the first ``delay`` steps of every window, else passes it.

    Why: a synapse with a delay of d Lava steps (Lava's DelayDense) delivers at window step k what its source sent
    at step k − d. For k ≤ d that is the previous sample's residue (source steps ≤ 0 lie in the previous window;
    step 1 of this one sends zeros anyway), which the neurons' own reset at window step 1 cannot drop for k > 1.
    Zeroing it gives the NetSpec's s_q[t − d] = 0 for t ≤ d, as the reference starts every sample with an empty
    history. Within the same step (receive, then send): no extra delay. Windows follow the ``schedule`` Var, so
    phases of any length in a session that stays up are gated as single runs are (lavaflow.processes.window).

    Args:
        shape: (n,), the synaptic inputs of one target population.
        delay: the projection's delay in Lava steps (≥ 2; one step needs no gate).
        window_steps: Lava steps per sample, T + 1 (lavaflow.processes.window).
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int],
        delay: int,
        window_steps: int,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(shape=shape, delay=delay, window_steps=window_steps, name=name, log_config=log_config)
        check_window_steps(window_steps)  # after super(): Lava's __del__ needs an initialised process
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 2:
            raise ValueError(f"a DelayGate needs a delay ≥ 2 Lava steps, got {delay!r}")
        self.a_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.schedule = Var(shape=(SCHEDULE_SIZE,), init=initial_schedule(window_steps))  # set per phase
