"""LeakyIntegratorNeurons models: float64 and Lava's bit-accurate integers, in AbstractWindowedNeuronModel's order."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.dynamics import LIFixed, LIFloat, NeuronArithmetic, effective_bias
from lavaflow.processes.li.process import LeakyIntegratorNeurons
from lavaflow.processes.window import AbstractWindowedNeuronModel


@implements(proc=LeakyIntegratorNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLeakyIntegratorModelFloat(AbstractWindowedNeuronModel):
    """The leaky integrator in float64; bias_exp is ignored (as by Lava's float LIF)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: float = LavaPyType(float, float)
    du: float = LavaPyType(float, float)
    dv: float = LavaPyType(float, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)

    def arithmetic(self) -> NeuronArithmetic:
        return LIFloat(du=float(self.du), dv=float(self.dv), bias=self.bias_mant)


@implements(proc=LeakyIntegratorNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLeakyIntegratorModelFixed(AbstractWindowedNeuronModel):
    """The leaky integrator bit-accurate with Lava's PyLifModelBitAcc (same precisions, no spike), windowed."""

    spike_dtype = np.int32
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    du: int = LavaPyType(int, np.uint16, precision=12)
    dv: int = LavaPyType(int, np.uint16, precision=12)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)

    def arithmetic(self) -> NeuronArithmetic:
        return LIFixed(du=int(self.du), dv=int(self.dv), bias=effective_bias(self.bias_mant, self.bias_exp))
