"""Neuron dynamics, written once: every trainer and the reference simulator call these step functions.

Each neuron kind is a parameter NamedTuple, a state (a bare tensor or a NamedTuple) and one pure step function
``step(current, state, params, spike_fn) -> (spikes, state)`` that follows Lava's order of operations within a
time step: decay the state left by the previous step, integrate this step's input, fire, reset. Trainers pass a
surrogate-gradient ``spike_fn``; simulators use the exact Heaviside functions below.

Units: voltages and currents are in the units of the input current (a weight times a spike); time in steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

SpikeFn = Callable[[Tensor], Tensor]


def heaviside(x: Tensor) -> Tensor:
    """1 where x ≥ 0: soft-reset neurons fire at v ≥ θ (IDE/SPIDE convention)."""
    return (x >= 0).to(x.dtype)


def strict_heaviside(x: Tensor) -> Tensor:
    """1 where x > 0: Lava's LIF (and Loihi's CUBA neuron) fires only above threshold."""
    return (x > 0).to(x.dtype)


class SoftResetParams(NamedTuple):
    """Integrate-and-fire with reset by subtraction (IF when ``voltage_decay`` is 0, LIF otherwise)."""

    threshold: float = 1.0  # θ: fire when v ≥ θ
    reset_potential: float = 0.0  # u_rest: a spike removes θ − u_rest (SPIDE uses u_rest = −θ)
    voltage_decay: float = 0.0  # fraction of v lost per step: λ = 1 − voltage_decay

    @property
    def subtraction(self) -> float:
        """D = θ − u_rest, the charge one spike removes; the equilibrium rate is clamp(I / D, 0, 1)."""
        return self.threshold - self.reset_potential

    @property
    def leak(self) -> float:
        """λ, the voltage kept per step."""
        return 1.0 - self.voltage_decay


def soft_reset_step(
    current: Tensor, voltage: Tensor, params: SoftResetParams, spike_fn: SpikeFn = heaviside
) -> tuple[Tensor, Tensor]:
    """One step: v ← λ·v + I;  s = [v ≥ θ];  v ← v − s·D.

    The leak acts on the voltage left after the previous reset, so u[t+1] = λ(u[t] − D·s[t]) + I[t+1], the IDE
    and SPIDE papers' order, and Lava's (decay, integrate, fire, reset). Shapes: any, broadcast with ``current``.
    """
    voltage = params.leak * voltage + current
    spikes = spike_fn(voltage - params.threshold)
    return spikes, voltage - spikes * params.subtraction


class CubaParams(NamedTuple):
    """Current-based LIF as in Lava's ``LIF`` and lava-dl's CUBA neuron: hard reset to 0, fires at v > θ."""

    threshold: float = 1.0
    current_decay: float = 1.0  # fraction of the synaptic current lost per step (1: no synaptic filter)
    voltage_decay: float = 0.0  # fraction of v lost per step


class CubaState(NamedTuple):
    current: Tensor  # Lava's `u`
    voltage: Tensor  # Lava's `v`


def cuba_step(
    input_current: Tensor, state: CubaState, params: CubaParams, spike_fn: SpikeFn = strict_heaviside
) -> tuple[Tensor, CubaState]:
    """One step in Lava's ``LIF`` order: u ← (1−du)·u + a_in;  v ← (1−dv)·v + u;  s = [v > θ];  v ← v·(1−s)."""
    current = (1.0 - params.current_decay) * state.current + input_current
    voltage = (1.0 - params.voltage_decay) * state.voltage + current
    spikes = spike_fn(voltage - params.threshold)
    return spikes, CubaState(current, voltage * (1.0 - spikes))


def rate_normaliser(time_steps: int, leak: float) -> float:
    """Σ_{k<T} λ^k: divides the λ-weighted spike count r ← λ·r + s into an average rate in [0, 1]."""
    if leak == 1.0:
        return float(time_steps)
    return (1.0 - leak**time_steps) / (1.0 - leak)


def weighted_rate(spikes: Tensor, leak: float) -> Tensor:
    """λ-weighted average rate of a time-first spike train (T, ...): Σ_t λ^{T−t} s[t] / Σ_k λ^k (IDE, LIF)."""
    time_steps = spikes.shape[0]
    weights = torch.tensor([leak ** (time_steps - 1 - t) for t in range(time_steps)], dtype=spikes.dtype)
    weights = weights.to(spikes.device).reshape(-1, *([1] * (spikes.dim() - 1)))
    return (weights * spikes).sum(0) / rate_normaliser(time_steps, leak)
