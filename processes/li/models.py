"""LeakyIntegratorNeurons models: float64 and Lava's bit-accurate integers, in AbstractWindowedNeuronModel's order;
the Vars are CubaLIF's (the leaky integrator is a CUBA neuron that never fires)."""

from __future__ import annotations

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.cuba.models import AbstractCubaModelFixed, AbstractCubaModelFloat
from lavaflow.processes.dynamics import LIFixed, LIFloat, NeuronArithmetic, effective_bias
from lavaflow.processes.li.process import LeakyIntegratorNeurons


@implements(proc=LeakyIntegratorNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLeakyIntegratorModelFloat(AbstractCubaModelFloat):
    """The leaky integrator in float64."""

    def arithmetic(self) -> NeuronArithmetic:
        return LIFloat(du=float(self.du), dv=float(self.dv), bias=self.bias_mant)


@implements(proc=LeakyIntegratorNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLeakyIntegratorModelFixed(AbstractCubaModelFixed):
    """The leaky integrator bit-accurate with Lava's PyLifModelBitAcc (same precisions, no spike), windowed."""

    def arithmetic(self) -> NeuronArithmetic:
        return LIFixed(du=int(self.du), dv=int(self.dv), bias=effective_bias(self.bias_mant, self.bias_exp))
