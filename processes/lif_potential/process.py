"""PotentialLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.process import LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class PotentialLIF(AbstractWindowedNeurons):
    """LIF that relaxes toward a leak potential and resets to a reset potential (or subtracts), NIR's LIF.

    v[t] = (1 − dv)·v[t−1] + a_in[t] + bias + leak;   s_out[t] = [v[t] > vth];
    where s_out[t]: v[t] = v_reset (reset_mode 0) or v[t] −= vth − v_reset (reset_mode 1)

    ``leak`` is dv·v_leak per step (fixed point: in 24-bit units; v_reset in a_in units, used << 6 as vth is).
    See lavaflow.processes.dynamics.PotentialLIFFloat / PotentialLIFFixed for the arithmetic.

    Args:
        shape: neurons, e.g. (n,).
        vth: threshold.
        window_steps: Lava steps per sample, T + 1.
        dv: fraction of the voltage lost per step.
        v_reset: reset potential.
        leak: dv·v_leak, added every step.
        reset_mode: 0 sets v to v_reset, 1 subtracts vth − v_reset.
        bias_mant: per-neuron (or scalar) bias mantissa.
        bias_exp: fixed point only: bias = bias_mant << bias_exp.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        vth: float,
        window_steps: int,
        dv: float = 0.0,
        v_reset: float = 0.0,
        leak: float = 0.0,
        reset_mode: int = 0,
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
        self.leak = Var(shape=(1,), init=leak)
        self.reset_mode = Var(shape=(1,), init=reset_mode)
