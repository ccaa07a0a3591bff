"""DelayGate models: the same gate on float64 (floating_pt) and int32 (fixed_pt) synaptic inputs."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.delay.process import DelayGate
from lavaflow.processes.window import scheduled_position


class AbstractDelayGateModel(PyLoihiProcessModel):
    """Receive a_in; send zeros at window steps 1 … delay (the previous sample's residue), else a_in unchanged."""

    a_in: PyInPort
    a_out: PyOutPort
    schedule: np.ndarray = LavaPyType(np.ndarray, np.int64)  # the phase's windows (lavaflow.processes.window)

    def run_spk(self) -> None:
        a_in = self.a_in.recv()  # always receive: every channel must be drained every step
        _, step = scheduled_position(self.time_step, self.schedule)
        self.a_out.send(np.zeros_like(a_in) if step <= int(self.proc_params["delay"]) else a_in)


@implements(proc=DelayGate, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayGateModelFloat(AbstractDelayGateModel):
    """The gate on float64 synaptic inputs."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=DelayGate, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyDelayGateModelFixed(AbstractDelayGateModel):
    """The gate on int32 synaptic inputs (Lava's fixed-point DelayDense output)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
