"""LeakyIntegratorNeurons: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.process import LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class LeakyIntegratorNeurons(AbstractWindowedNeurons):
    """A non-spiking leaky integrator (NIR's LI / CubaLI) with a per-sample window.

    u[t] = (1 − du)·u[t−1] + a_in[t];   v[t] = (1 − dv)·v[t−1] + u[t] + bias;   s_out[t] = 0

    The arithmetic is Lava's LIF in both precisions without the threshold and reset (floating_pt: fractions and
    bias = bias_mant; fixed_pt: 12-bit du and dv with Lava's hidden +1 on du, bias = bias_mant << bias_exp, input
    shifted left by 6, a wrapping 24-bit u and a saturating 24-bit v; see lavaflow.processes.dynamics). vth exists
    only because every windowed neuron process has it; it is unused.

    Args:
        shape: neurons, e.g. (n,).
        window_steps: Lava steps per sample, T + 1.
        vth: unused (default 0).
        du: fraction of the current lost per step (1: no synaptic filter; fixed point 4095, to which Lava adds 1).
        dv: fraction of the voltage lost per step.
        bias_mant: per-neuron (or scalar) bias mantissa.
        bias_exp: fixed point only: bias = bias_mant << bias_exp.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        window_steps: int,
        vth: float = 0.0,
        du: float = 1.0,
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
        self.u = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
