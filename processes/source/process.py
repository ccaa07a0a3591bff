"""PayloadSource: every sample's input payloads, sent on the per-sample window schedule."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import check_window_steps


class PayloadSource(AbstractProcess):
    """Sends x[k] of the current sample window at window step k ≤ T, zeros at the other window steps.

    The process holds all payloads, (N, T, n), as its own data, so a run of N samples needs no ``Var.set`` per
    sample (each moves ~20k elements/s). Window w carries samples w·B … w·B + B − 1 side by side, flattened to
    B·n values (the fused network's batch axis; B = 1 for the plain graph). After the last window it sends zeros.

    Payloads are graded: intensities or event counts (connect to a Dense with ``num_message_bits=8``) or 0/1
    spikes (``num_message_bits=0``). floating_pt sends float64, fixed_pt int32 (integers 0..255 from
    lavaflow.models.fixed.input_payload, which checks them; they are not checked again here).

    Args:
        payloads: (N, T, n) with N a multiple of ``batch_size`` (pad with zero samples).
        batch_size: samples per window, B.
        window_steps: Lava steps per window, at least T + 1.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        payloads: np.ndarray,
        batch_size: int,
        window_steps: int,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, window_steps=window_steps, name=name, log_config=log_config)
        # Checked after super(): Lava's AbstractProcess.__del__ fails on a process whose __init__ raised before it.
        if not isinstance(payloads, np.ndarray) or payloads.ndim != 3:
            raise ValueError(
                f"payloads must be a (samples, time_steps, n) array, got {getattr(payloads, 'shape', payloads)}"
            )
        num_samples, time_steps, size = payloads.shape
        if batch_size < 1 or num_samples % batch_size:
            raise ValueError(f"{num_samples} samples do not fill whole windows of batch_size={batch_size}; pad them")
        if check_window_steps(window_steps) < time_steps + 1:
            raise ValueError(f"window_steps={window_steps} cannot hold T={time_steps} steps plus the restart step")
        self.s_out = OutPort(shape=(batch_size * size,))
        self.payloads = Var(shape=payloads.shape, init=payloads)
