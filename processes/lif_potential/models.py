"""PotentialLIF models: float64 and Lava's integers, sharing the order of AbstractWindowedNeuronModel."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.dynamics import NeuronArithmetic, PotentialLIFFixed, PotentialLIFFloat, effective_bias
from lavaflow.processes.lif_potential.process import PotentialLIF
from lavaflow.processes.window import AbstractWindowedNeuronModel


@implements(proc=PotentialLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPotentialLIFModelFloat(AbstractWindowedNeuronModel):
    """PotentialLIF in float64; bias_exp is ignored (as by Lava's float LIF)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: float = LavaPyType(float, float)
    dv: float = LavaPyType(float, float)
    v_reset: float = LavaPyType(float, float)
    leak: float = LavaPyType(float, float)
    reset_mode: int = LavaPyType(int, int)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)

    def arithmetic(self) -> NeuronArithmetic:
        return PotentialLIFFloat(
            vth=float(self.vth),
            dv=float(self.dv),
            bias=self.bias_mant,
            v_reset=float(self.v_reset),
            leak=float(self.leak),
            subtract=int(self.reset_mode) == 1,
        )


@implements(proc=PotentialLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyPotentialLIFModelFixed(AbstractWindowedNeuronModel):
    """PotentialLIF in Lava's LIF precisions, with a signed 17-bit v_reset and a 24-bit leak constant."""

    spike_dtype = np.int32
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    dv: int = LavaPyType(int, np.uint16, precision=12)
    v_reset: int = LavaPyType(int, np.int32, precision=18)
    leak: int = LavaPyType(int, np.int32, precision=24)
    reset_mode: int = LavaPyType(int, np.int32, precision=1)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)

    def arithmetic(self) -> NeuronArithmetic:
        return PotentialLIFFixed(
            vth=int(self.vth),
            dv=int(self.dv),
            bias=effective_bias(self.bias_mant, self.bias_exp),
            v_reset=int(self.v_reset),
            leak=int(self.leak),
            subtract=int(self.reset_mode) == 1,
        )
