"""PayloadSource: every sample's input payloads, sent on the per-sample window schedule; StreamSource: payloads
the host streams in per phase."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import SCHEDULE_SIZE, check_payload_windows, initial_schedule

PAYLOAD_DTYPE = np.int16  # the fixed-point source's payload type: signed 8-bit values with room to spare


class PayloadSource(AbstractProcess):
    """Sends x[k] of the current sample window at window step k ≤ T, zeros at the other window steps.

    The process holds all payloads, (N, T, n), as its own data, so a run of N samples needs no ``Var.set`` per
    sample (each moves ~20k elements/s). Window w carries samples w·B … w·B + B − 1 side by side, flattened to
    B·n values (the fused network's batch axis; B = 1 for the plain graph). After the last window it sends zeros.

    Payloads are graded: intensities or event counts (connect to a Dense with ``num_message_bits=8``) or 0/1
    spikes (``num_message_bits=0``). floating_pt holds and sends float64, fixed_pt holds int16 and sends int32
    (integers 0..255 from lavaflow.models.fixed.input_payload, which checks them; they are not checked again here).

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
        size = payloads.shape[-1] if isinstance(payloads, np.ndarray) and payloads.ndim == 3 else -1
        check_payload_windows(payloads, size, batch_size, window_steps)
        self.s_out = OutPort(shape=(batch_size * size,))
        self.payloads = Var(shape=payloads.shape, init=payloads)


class StreamSource(AbstractProcess):
    """Sends the payloads the host streams in for each phase, on the phase's window schedule.

    A session that stays up (lavaflow.pipeline.lava.live) gives every phase its own inputs; a Var.set of them would
    move ~20k values/s, so they travel through an external pipe instead (Lava's mechanism behind io.injector), one
    message of B·n payloads per input step, sent by the host before the phase runs (``send_payloads``). At window
    step k ≤ window_steps − 1 of a phase whose schedule has ``inputs`` = 1 the model receives one message and
    sends it on; at the window's last step, and throughout a phase without inputs, it sends zeros and reads
    nothing. Graded or binary as PayloadSource: the projection's num_message_bits decides.

    Args:
        size: n, the payload values per sample and step.
        batch_size: samples per window, B.
        window_steps: Lava steps per window until the first phase is scheduled (lavaflow.processes.window).
        capacity: messages the pipe holds, at least the input steps of the longest phase (windows × steps).
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        size: int,
        batch_size: int,
        window_steps: int,
        capacity: int,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, window_steps=window_steps, name=name, log_config=log_config)
        # Checked after super(): Lava's AbstractProcess.__del__ fails on a process whose __init__ raised before it.
        if size < 1 or batch_size < 1 or capacity < 1:
            raise ValueError(f"size={size}, batch_size={batch_size} and capacity={capacity} must be positive")
        self.s_out = OutPort(shape=(batch_size * size,))
        self.x_in = InPort(shape=(batch_size * size,))
        self.x_in.flag_external_pipe(buffer_size=capacity)
        self.schedule = Var(shape=(SCHEDULE_SIZE,), init=initial_schedule(window_steps))  # set per phase
        self.capacity = int(capacity)

    def send_payloads(self, payloads: np.ndarray) -> None:
        """Host side, before a phase runs: queue (messages, B·n) payloads, one message per input step.

        Raises:
            RuntimeError: the runtime does not exist yet (the pipe is made when it is created).
            ValueError: payloads of the wrong shape, or more messages than the pipe holds (the send would block).
        """
        port = self.x_in
        if not hasattr(port, "external_pipe_csp_send_port"):
            raise RuntimeError("send_payloads() needs a runtime: the pipe exists once it is created")
        if payloads.ndim != 2 or payloads.shape[1] != port.shape[0]:
            raise ValueError(f"payloads have shape {payloads.shape}; expected (messages, {port.shape[0]})")
        if payloads.shape[0] > self.capacity:
            raise ValueError(f"{payloads.shape[0]} input steps exceed the pipe's capacity of {self.capacity} messages")
        for row in payloads:
            port.external_pipe_csp_send_port.send(row)
