"""PotentialLIF: the process declaration (ports, Vars, parameters); the arithmetic is in its models."""

from __future__ import annotations

from typing import Any

from lava.magma.core.process.variable import Var

from lavaflow.processes.window import AbstractWindowedNeurons


class PotentialLIF(AbstractWindowedNeurons):
    """LIF that relaxes toward a leak potential and resets to a reset potential (or subtracts), NIR's LIF.

    v[t] = (1 − dv)·v[t−1] + a_in[t] + bias + leak;   s_out[t] = [v[t] > vth];
    where s_out[t]: v[t] = v_reset (reset_mode 0) or v[t] −= vth − v_reset (reset_mode 1)

    ``leak`` is dv·v_leak per step (fixed point: in 24-bit units; v_reset in a_in units, used << 6 as vth is).
    See lavaflow.processes.dynamics.PotentialLIFFloat / PotentialLIFFixed for the arithmetic.

    Args (besides those of AbstractWindowedNeurons, passed on as ``neuron``):
        v_reset: reset potential.
        leak: dv·v_leak, added every step.
        reset_mode: 0 sets v to v_reset, 1 subtracts vth − v_reset.
    """

    def __init__(self, *, v_reset: float = 0.0, leak: float = 0.0, reset_mode: int = 0, **neuron: Any) -> None:
        super().__init__(**neuron)
        self.v_reset = Var(shape=(1,), init=v_reset)
        self.leak = Var(shape=(1,), init=leak)
        self.reset_mode = Var(shape=(1,), init=reset_mode)
