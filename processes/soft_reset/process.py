"""SoftResetLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.process import LogConfig
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

    Args:
        shape: neurons, e.g. (n,).
        vth: threshold θ.
        v_reset: u_rest; a spike removes vth − v_reset (SPIDE uses −θ, IDE 0).
        dv: fraction of v lost per step.
        bias_mant: per-neuron (or scalar) bias mantissa.
        bias_exp: fixed point only: bias = bias_mant << bias_exp.
        window_steps: Lava steps per sample, T + 1.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        vth: float,
        window_steps: int,
        v_reset: float = 0.0,
        dv: float = 0.0,
        bias_mant: float | np.ndarray = 0.0,
        bias_exp: int | np.ndarray = 0,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(
            shape=shape,
            vth=vth,
            window_steps=window_steps,
            dv=dv,
            bias_mant=bias_mant,
            bias_exp=bias_exp,
            name=name,
            log_config=log_config,
        )
        self.v_reset = Var(shape=(1,), init=v_reset)
