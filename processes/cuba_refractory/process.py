"""CubaRefractoryLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.process import LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class CubaRefractoryLIF(AbstractWindowedNeurons):
    """CubaLIF whose voltage is held for ``refractory`` steps after a spike, as Lava's LIFRefractory holds it.

    u[t] = (1 − du)·u[t−1] + a_in[t];   where r = 0: v[t] = (1 − dv)·v[t−1] + u[t] + bias, else v held and r −= 1;
    s_out[t] = [v[t] > vth];   v[t] = 0 and r = refractory where s_out[t]

    Lava's LIFRefractory has a floating_pt model only and counts in absolute time steps; this one counts down a
    per-neuron Var ``r`` (zeroed with every sample's window) and has Lava's integer LIF as its fixed_pt model.

    Args:
        shape: neurons, e.g. (n,).
        vth: threshold.
        window_steps: Lava steps per sample, T + 1.
        du: fraction of the current lost per step (fixed point: 12 bits, to which Lava adds 1).
        dv: fraction of the voltage lost per step.
        refractory: steps v is held after a spike (0: CubaLIF).
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
        du: float = 1.0,
        dv: float = 0.0,
        refractory: int = 1,
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
        self.r = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.refractory = Var(shape=(1,), init=refractory)
