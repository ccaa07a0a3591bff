"""CubaLIF models: float64 and Lava's bit-accurate integers, sharing the order of AbstractWindowedNeuronModel."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.cuba.process import CubaLIF
from lavaflow.processes.dynamics import CubaFixed, CubaFloat, NeuronArithmetic, effective_bias
from lavaflow.processes.window import AbstractWindowedNeuronModel


class AbstractCubaModelFloat(AbstractWindowedNeuronModel):
    """The float64 Vars and ports of every CUBA-style kind (CubaLIF, CubaRefractoryLIF, the leaky integrator);
    bias_exp is ignored, as by Lava's float LIF. Undecorated: Lava's model search passes it by."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: float = LavaPyType(float, float)
    du: float = LavaPyType(float, float)
    dv: float = LavaPyType(float, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)


class AbstractCubaModelFixed(AbstractWindowedNeuronModel):
    """The Vars and ports of every CUBA-style kind in Lava's PyLifModelBitAcc precisions. Undecorated, as above."""

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


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaLIFModelFloat(AbstractCubaModelFloat):
    """CubaLIF in float64."""

    def arithmetic(self) -> NeuronArithmetic:
        return CubaFloat(vth=float(self.vth), du=float(self.du), dv=float(self.dv), bias=self.bias_mant)


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyCubaLIFModelFixed(AbstractCubaModelFixed):
    """CubaLIF bit-accurate with Lava's PyLifModelBitAcc (same precisions), plus the per-sample window."""

    def arithmetic(self) -> NeuronArithmetic:
        return CubaFixed(
            vth=int(self.vth), du=int(self.du), dv=int(self.dv), bias=effective_bias(self.bias_mant, self.bias_exp)
        )
