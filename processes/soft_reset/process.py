"""SoftResetLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class SoftResetLIF(AbstractWindowedNeurons):
    """IF/LIF neurons that fire at v ≥ vth and reset by subtracting vth − v_reset (Lava's LIF: v > vth, v ← 0).

    v[t] = (1 − dv)·v[t−1] + a_in[t] + bias;   s_out[t] = [v[t] ≥ vth];   v[t] −= s_out[t]·(vth − v_reset)

    dv = 0 gives IF, dv = 1 − λ the IDE/SPIDE leaky neuron. Units follow the selected model: floating_pt reads
    every Var as a float and uses bias = bias_mant (bias_exp ignored, as in Lava's float LIF); fixed_pt reads
    24-bit voltages, 12-bit dv (fractions of 4096), a 17-bit vth and bias = bias_mant << bias_exp, with input and
    threshold shifted left by 6 bits (lavaflow.processes.dynamics). Each sample runs in a window of
    ``window_steps`` = T + 1 Lava steps: at window step 1 the state is zeroed and a_in is discarded, because it is
    the previous sample's residue still buffered in the Dense that feeds this process; window steps 2 … T + 1 are
    dynamics steps 1 … T (lavaflow.processes.window).

    Args (besides those of AbstractWindowedNeurons, passed on as ``neuron``):
        v_reset: u_rest; a spike removes vth − v_reset (SPIDE uses −θ, IDE 0).
    """

    def __init__(self, *, v_reset: float = 0.0, **neuron: Any) -> None:
        super().__init__(**neuron)
        self.v_reset = Var(shape=(1,), init=v_reset)
