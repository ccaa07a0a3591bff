"""CubaLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class CubaLIF(AbstractWindowedNeurons):
    """Lava's current-based LIF (lava.proc.lif.LIF: hard reset to 0, fires at v > vth) with a per-sample window.

    u[t] = (1 − du)·u[t−1] + a_in[t];   v[t] = (1 − dv)·v[t−1] + u[t] + bias;   s_out[t] = [v[t] > vth];
    v[t] = 0 where s_out[t]

    The arithmetic is Lava's LIF in both precisions (floating_pt: fractions and bias = bias_mant; fixed_pt: 12-bit
    du and dv with Lava's hidden +1 on du, bias = bias_mant << bias_exp, input and threshold shifted left by 6,
    a wrapping 24-bit u and a saturating 24-bit v; see lavaflow.processes.dynamics). Lava's own LIF cannot be
    used in a per-sample graph: LIFReset zeroes u and v but still integrates that step's a_in, which is the
    previous sample's residue. Here window step 1 zeroes u and v and discards a_in; window steps 2 … T + 1 are
    dynamics steps 1 … T (lavaflow.processes.window).

    Args (besides those of AbstractWindowedNeurons, passed on as ``neuron``):
        du: fraction of the current lost per step (1: no synaptic filter; fixed point 4095, to which Lava adds 1).
    """

    def __init__(self, *, du: float = 1.0, **neuron: Any) -> None:
        super().__init__(**neuron)
        self.u = Var(shape=neuron["shape"], init=0)
        self.du = Var(shape=(1,), init=du)
