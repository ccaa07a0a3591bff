"""CubaRefractoryLIF models: float64 and Lava's bit-accurate integers, in AbstractWindowedNeuronModel's order."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.cuba.models import AbstractCubaModelFixed, AbstractCubaModelFloat
from lavaflow.processes.cuba_refractory.process import CubaRefractoryLIF
from lavaflow.processes.dynamics import CubaRefractoryFixed, CubaRefractoryFloat, NeuronArithmetic, effective_bias


@implements(proc=CubaRefractoryLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaRefractoryLIFModelFloat(AbstractCubaModelFloat):
    """CubaRefractoryLIF in float64: CubaLIF's Vars plus the counter and the period."""

    r: np.ndarray = LavaPyType(np.ndarray, float)
    refractory: float = LavaPyType(float, float)

    def arithmetic(self) -> NeuronArithmetic:
        return CubaRefractoryFloat(
            vth=float(self.vth),
            du=float(self.du),
            dv=float(self.dv),
            bias=self.bias_mant,
            refractory=float(self.refractory),
        )


@implements(proc=CubaRefractoryLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyCubaRefractoryLIFModelFixed(AbstractCubaModelFixed):
    """CubaRefractoryLIF with Lava's bit-accurate LIF arithmetic (as CubaLIF's fixed model) and an 8-bit counter."""

    r: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    refractory: int = LavaPyType(int, np.int32, precision=8)

    def arithmetic(self) -> NeuronArithmetic:
        return CubaRefractoryFixed(
            vth=int(self.vth),
            du=int(self.du),
            dv=int(self.dv),
            bias=effective_bias(self.bias_mant, self.bias_exp),
            refractory=int(self.refractory),
        )
