"""SpikeCounter model, shared by floating_pt and fixed_pt."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.sink.process import SpikeCounter, TraceRecorder
from lavaflow.processes.window import FIRST_WINDOW_STEP, scheduled_position, window_position


@implements(proc=SpikeCounter, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PySpikeCounterModel(PyLoihiProcessModel):
    """Accumulates counts[w·B:(w+1)·B] += s and weighted_counts ← λ·weighted_counts + s per counted step, and
    sends the window's rows to the host pipe at its last step; w counts the windows of the scheduled phase, so the
    rows are zeroed at each window's first step (a later phase reuses them)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    window_counts: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    counts: np.ndarray = LavaPyType(np.ndarray, float)
    weighted_counts: np.ndarray = LavaPyType(np.ndarray, float)
    schedule: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.batch_size = int(proc_params["batch_size"])
        self.window_steps = int(proc_params["window_steps"])
        self.first_step = int(proc_params["first_step"])
        self.leak = float(proc_params["leak"])

    def run_spk(self) -> None:
        values = self.a_in.recv()
        window, step = scheduled_position(self.time_step, self.schedule)
        first = window * self.batch_size
        if first >= self.counts.shape[0]:
            return
        rows = slice(first, first + self.batch_size)
        if step == FIRST_WINDOW_STEP:
            self.counts[rows] = 0.0
            self.weighted_counts[rows] = 0.0
        if step < self.first_step:
            return
        values = values.reshape(self.batch_size, -1)
        self.counts[rows] += values
        self.weighted_counts[rows] *= self.leak
        self.weighted_counts[rows] += values
        if step == int(self.schedule[1]):
            self.window_counts.send(np.stack([self.counts[rows].reshape(-1), self.weighted_counts[rows].reshape(-1)]))


@implements(proc=TraceRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyTraceRecorderModel(PyLoihiProcessModel):
    """Keeps each window's steps ≥ first_step in a buffer and sends it to the host pipe at the window's last step."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    window_traces: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.window_steps = int(proc_params["window_steps"])
        self.first_step = int(proc_params["first_step"])
        self.buffer: np.ndarray | None = None

    def run_spk(self) -> None:
        values = self.a_in.recv()
        _, step = window_position(self.time_step, self.window_steps)
        if step < self.first_step:
            return
        if self.buffer is None:
            self.buffer = np.zeros((self.window_steps - self.first_step + 1, values.size))
        self.buffer[step - self.first_step] = values
        if step == self.window_steps:
            self.window_traces.send(self.buffer)
