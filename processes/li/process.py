"""LeakyIntegratorNeurons: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class LeakyIntegratorNeurons(AbstractWindowedNeurons):
    """A non-spiking leaky integrator (NIR's LI / CubaLI) with a per-sample window.

    u[t] = (1 − du)·u[t−1] + a_in[t];   v[t] = (1 − dv)·v[t−1] + u[t] + bias;   s_out[t] = 0

    The arithmetic is Lava's LIF in both precisions without the threshold and reset (floating_pt: fractions and
    bias = bias_mant; fixed_pt: 12-bit du and dv with Lava's hidden +1 on du, bias = bias_mant << bias_exp, input
    shifted left by 6, a wrapping 24-bit u and a saturating 24-bit v; see lavaflow.processes.dynamics). vth exists
    only because every windowed neuron process has it; it is unused.

    Args (besides those of AbstractWindowedNeurons, passed on as ``neuron``):
        vth: unused (default 0).
        du: fraction of the current lost per step (1: no synaptic filter; fixed point 4095, to which Lava adds 1).
    """

    def __init__(self, *, vth: float = 0.0, du: float = 1.0, **neuron: Any) -> None:
        super().__init__(vth=vth, **neuron)
        self.u = Var(shape=neuron["shape"], init=0)
        self.du = Var(shape=(1,), init=du)
