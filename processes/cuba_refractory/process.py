"""CubaRefractoryLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class CubaRefractoryLIF(AbstractWindowedNeurons):
    """CubaLIF whose voltage is held for ``refractory`` steps after a spike, as Lava's LIFRefractory holds it.

    u[t] = (1 − du)·u[t−1] + a_in[t];   where r = 0: v[t] = (1 − dv)·v[t−1] + u[t] + bias, else v held and r −= 1;
    s_out[t] = [v[t] > vth];   v[t] = 0 and r = refractory where s_out[t]

    Lava's LIFRefractory has a floating_pt model only and counts in absolute time steps; this one counts down a
    per-neuron Var ``r`` (zeroed with every sample's window) and has Lava's integer LIF as its fixed_pt model.

    Args (besides those of AbstractWindowedNeurons, passed on as ``neuron``):
        du: fraction of the current lost per step (fixed point: 12 bits, to which Lava adds 1).
        refractory: steps v is held after a spike (0: CubaLIF).
    """

    def __init__(self, *, du: float = 1.0, refractory: int = 1, **neuron: Any) -> None:
        super().__init__(**neuron)
        self.u = Var(shape=neuron["shape"], init=0)
        self.r = Var(shape=neuron["shape"], init=0)
        self.du = Var(shape=(1,), init=du)
        self.refractory = Var(shape=(1,), init=refractory)
