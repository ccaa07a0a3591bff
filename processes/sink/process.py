"""SpikeCounter: per-sample spike counts, kept in Vars and streamed to the host once per sample window."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import SCHEDULE_SIZE, check_window_steps, initial_schedule


class SpikeCounter(AbstractProcess):
    """Adds what arrives at window steps ≥ ``first_step`` to the counts of the window's samples.

    counts[w·B + b] = Σ_k s_b[k];   weighted_counts[w·B + b] = Σ_k λ^{K−k} s_b[k]   (k = first_step … window end)

    The sums are kept in the Vars ``counts`` and ``weighted_counts`` (N, n), readable with ``Var.get`` after a run.
    But ``Var.get`` moves one element per message, ~20k elements/s (2 s for 4096 samples × 10 neurons, longer
    than a batched run itself), so at the last step of each window the model also sends that window's rows,
    (2, B·n) = [counts; weighted_counts], through ``window_counts``, an external pipe (Lava's mechanism behind
    io.extractor.Extractor) buffered for every window of the run; ``receive_counts()`` collects them on the host
    in one pass after the run. No Monitor: it would probe every step.

    Windows follow the ``schedule`` Var (lavaflow.processes.window): w counts the windows of the current phase, so
    a session's phases reuse the rows (each window's rows are zeroed at its first step) and ``receive_counts`` reads
    one phase's windows at a time.

    For our windows first_step is 2 (window step 1 carries no spikes); a netx graph of L layers sends a sample's
    T output steps at window steps L + 1 … T + L, so first_step is L + 1. The values are summed as received, so
    graded payloads (−1, 255) are summed too. One model serves floating_pt and fixed_pt (float64 sums of
    integers ≤ 2^53 are exact).

    Args:
        shape: (n,) values per sample; the port carries B·n values, B samples side by side.
        num_samples: N, a multiple of ``batch_size``.
        batch_size: samples per window, B.
        window_steps: Lava steps per window.
        first_step: the first window step counted.
        leak: λ of ``weighted_counts`` (1 gives the plain counts).
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int],
        num_samples: int,
        batch_size: int,
        window_steps: int,
        first_step: int = 2,
        leak: float = 1.0,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            window_steps=window_steps,
            first_step=first_step,
            leak=leak,
            name=name,
            log_config=log_config,
        )
        # Checked after super(): Lava's AbstractProcess.__del__ fails on a process whose __init__ raised before it.
        if len(shape) != 1:
            raise ValueError(f"SpikeCounter counts flat populations, got shape {shape}")
        if batch_size < 1 or num_samples < 1 or num_samples % batch_size:
            raise ValueError(f"num_samples={num_samples} must be a positive multiple of batch_size={batch_size}")
        if not 1 <= first_step <= check_window_steps(window_steps):
            raise ValueError(f"first_step={first_step} must lie in the window 1..{window_steps}")
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"leak must lie in [0, 1], got {leak}")
        self.a_in = InPort(shape=(batch_size * shape[0],))
        self.counts = Var(shape=(num_samples, shape[0]), init=0)
        self.weighted_counts = Var(shape=(num_samples, shape[0]), init=0)
        self.window_counts = OutPort(shape=(2, batch_size * shape[0]))
        self.window_counts.flag_external_pipe(buffer_size=num_samples // batch_size)  # room for every window
        self.schedule = Var(shape=(SCHEDULE_SIZE,), init=initial_schedule(window_steps))  # set per phase
        self._size = shape[0]

    def receive_counts(self, windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Host side, after a run: (counts, weighted_counts) of ``windows`` windows (default: every window the
        counter holds), each (windows·B, n) float64.

        Raises:
            RuntimeError: the graph has not been run (there is no pipe yet).
        """
        port = self.window_counts
        if not hasattr(port, "external_pipe_csp_recv_port"):
            raise RuntimeError("receive_counts() needs a run: the pipe exists once the runtime is created")
        count = port.external_pipe_buffer_size if windows is None else int(windows)
        windows = [port.external_pipe_csp_recv_port.recv() for _ in range(count)]
        rows = np.stack(windows).reshape(len(windows), 2, -1, self._size)  # (window, kind, B, n)
        return rows[:, 0].reshape(-1, self._size), rows[:, 1].reshape(-1, self._size)


class TraceRecorder(AbstractProcess):
    """Buffers the recorded traces of each sample window and streams them to the host, one message per window.

    Receives B·R values per step (B samples side by side, each the concatenation of R recorded values) and keeps
    window steps ``first_step`` … ``window_steps`` (for our windows 2 … T + 1, the T dynamics steps); at the last
    step of a window it sends them, (K, B·R), through an external pipe buffered for every window, so the host
    reads everything in one pass after the run (``receive_traces``), never per step with ``Var.get``.

    Args:
        size: R, the values per sample and step.
        num_samples: N, a multiple of ``batch_size``.
        batch_size: samples per window, B.
        window_steps: Lava steps per window.
        first_step: the first window step kept.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        size: int,
        num_samples: int,
        batch_size: int,
        window_steps: int,
        first_step: int = 2,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size, window_steps=window_steps, first_step=first_step, name=name, log_config=log_config
        )
        if size < 1 or batch_size < 1 or num_samples < 1 or num_samples % batch_size:
            raise ValueError(f"size={size} and num_samples={num_samples} must be positive multiples of batch_size")
        if not 1 <= first_step <= check_window_steps(window_steps):
            raise ValueError(f"first_step={first_step} must lie in the window 1..{window_steps}")
        steps = window_steps - first_step + 1
        self.a_in = InPort(shape=(batch_size * size,))
        self.window_traces = OutPort(shape=(steps, batch_size * size))
        self.window_traces.flag_external_pipe(buffer_size=num_samples // batch_size)  # room for every window
        self._size, self._batch_size, self._steps = size, batch_size, steps

    def receive_traces(self) -> np.ndarray:
        """Host side, after a run over every window: (N, K, R) float64, K the kept steps per window.

        Raises:
            RuntimeError: the graph has not been run (there is no pipe yet).
        """
        port = self.window_traces
        if not hasattr(port, "external_pipe_csp_recv_port"):
            raise RuntimeError("receive_traces() needs a run: the pipe exists once the runtime is created")
        windows = [port.external_pipe_csp_recv_port.recv() for _ in range(port.external_pipe_buffer_size)]
        rows = np.stack(windows).reshape(len(windows), self._steps, self._batch_size, self._size)
        return rows.transpose(0, 2, 1, 3).reshape(-1, self._steps, self._size)
