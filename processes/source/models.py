"""PayloadSource and StreamSource models: float64 or int32 payloads."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.source.process import PAYLOAD_DTYPE, PayloadSource, StreamSource
from lavaflow.processes.window import INPUTS, WINDOW_STEPS, scheduled_position, window_payload, window_position


class AbstractPayloadSourceModel(PyLoihiProcessModel):
    """Sends payloads[w·B:(w+1)·B, k − 1] (flattened) at window step k ≤ T of window w, zeros otherwise."""

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.batch_size = int(proc_params["batch_size"])
        self.window_steps = int(proc_params["window_steps"])

    def run_spk(self) -> None:
        payload = window_payload(self.payloads, self.batch_size, *window_position(self.time_step, self.window_steps))
        if payload is None:
            payload = np.zeros(self.s_out.shape, dtype=self.payloads.dtype)
        self.s_out.send(payload.reshape(-1))


@implements(proc=PayloadSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPayloadSourceModelFloat(AbstractPayloadSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    payloads: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=PayloadSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPayloadSourceModelFixed(AbstractPayloadSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    # int16 holds every signed 8-bit payload in half of int32's memory: a run's payloads can be 10^8 values.
    payloads: np.ndarray = LavaPyType(np.ndarray, PAYLOAD_DTYPE, precision=8)


class AbstractStreamSourceModel(PyLoihiProcessModel):
    """At window step k < window_steps of a phase with inputs: send the next message of the host's pipe; else zeros."""

    payload_dtype: type = np.float64

    def run_spk(self) -> None:
        _, step = scheduled_position(self.time_step, self.schedule)
        if self.schedule[INPUTS] and step < int(self.schedule[WINDOW_STEPS]):
            self.s_out.send(self.x_in.recv())
        else:
            self.s_out.send(np.zeros(self.s_out.shape, dtype=self.payload_dtype))


@implements(proc=StreamSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyStreamSourceModelFloat(AbstractStreamSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    schedule: np.ndarray = LavaPyType(np.ndarray, np.int64)


@implements(proc=StreamSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyStreamSourceModelFixed(AbstractStreamSourceModel):
    payload_dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    schedule: np.ndarray = LavaPyType(np.ndarray, np.int64)
