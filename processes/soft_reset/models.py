"""SoftResetLIF models: float64 and Lava's bit-accurate integers, sharing the order of AbstractWindowedNeuronModel."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.dynamics import NeuronArithmetic, SoftResetFixed, SoftResetFloat, effective_bias
from lavaflow.processes.soft_reset.process import SoftResetLIF
from lavaflow.processes.window import AbstractWindowedNeuronModel


@implements(proc=SoftResetLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySoftResetLIFModelFloat(AbstractWindowedNeuronModel):
    """SoftResetLIF in float64; bias_exp is ignored (as by Lava's float LIF)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: float = LavaPyType(float, float)
    v_reset: float = LavaPyType(float, float)
    dv: float = LavaPyType(float, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)

    def arithmetic(self) -> NeuronArithmetic:
        return SoftResetFloat(vth=float(self.vth), v_reset=float(self.v_reset), dv=float(self.dv), bias=self.bias_mant)


@implements(proc=SoftResetLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySoftResetLIFModelFixed(AbstractWindowedNeuronModel):
    """SoftResetLIF in Lava's bit widths: the integer dynamics of lavaflow.models.fixed, bit for bit.

    Precisions (as Lava's PyLifModelBitAcc): v 24-bit signed, dv 12-bit unsigned, vth 17-bit unsigned, bias_mant
    13-bit signed, bias_exp 3-bit; v_reset is signed, vth − v_reset the subtraction in a_in LSBs. a_in is typed
    int32: Lava's Dense sends int32 and its Python models do not saturate a_in to 16 bits either.
    """

    spike_dtype = np.int32
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    v_reset: int = LavaPyType(int, np.int32, precision=18)
    dv: int = LavaPyType(int, np.uint16, precision=12)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=3)

    def arithmetic(self) -> NeuronArithmetic:
        return SoftResetFixed(
            vth=int(self.vth),
            v_reset=int(self.v_reset),
            dv=int(self.dv),
            bias=effective_bias(self.bias_mant, self.bias_exp),
        )
