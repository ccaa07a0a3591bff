"""Neuron dynamics, written once: every trainer and the reference simulator call these step functions.

Each neuron kind is a parameter NamedTuple, a state (a bare tensor or a NamedTuple) and one pure step function
``step(current, state, params, spike_fn) -> (spikes, state)`` that follows Lava's order of operations within a
time step: decay the state left by the previous step, integrate this step's input, fire, reset. Trainers pass a
surrogate-gradient ``spike_fn``; simulators use the exact Heaviside functions. The steps live with the rest of
their kind in models.kinds and are re-exported here; this module keeps what all kinds share (rates).

Units: voltages and currents are in the units of the input current (a weight times a spike); time in steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lavaflow.models.bit_widths import ACTIVATION_SHIFT

# The steps live with the rest of their kind (models.kinds); they are re-exported here, their old home.
from lavaflow.models.kinds.base import SpikeFn as SpikeFn
from lavaflow.models.kinds.base import heaviside as heaviside
from lavaflow.models.kinds.base import strict_heaviside as strict_heaviside
from lavaflow.models.kinds.cuba import CubaParams as CubaParams
from lavaflow.models.kinds.cuba import CubaState as CubaState
from lavaflow.models.kinds.cuba import cuba_step as cuba_step
from lavaflow.models.kinds.soft_reset import SoftResetParams as SoftResetParams
from lavaflow.models.kinds.soft_reset import soft_reset_step as soft_reset_step


def rate_normaliser(time_steps: int, leak: float) -> float:
    """Σ_{k<T} λ^k: divides the λ-weighted spike count r ← λ·r + s into an average rate in [0, 1]."""
    if leak == 1.0:
        return float(time_steps)
    return (1.0 - leak**time_steps) / (1.0 - leak)


def potential_unit(scale: float) -> float:
    """Float value of one LSB of a fixed-point v: one a_in LSB is ``scale``, and v holds a_in << 6."""
    return scale / (1 << ACTIVATION_SHIFT)


def weighted_rate(spikes: Tensor, leak: float) -> Tensor:
    """λ-weighted average rate of a time-first spike train (T, ...): Σ_t λ^{T−t} s[t] / Σ_k λ^k (IDE, LIF)."""
    time_steps = spikes.shape[0]
    weights = torch.tensor([leak ** (time_steps - 1 - t) for t in range(time_steps)], dtype=spikes.dtype)
    weights = weights.to(spikes.device).reshape(-1, *([1] * (spikes.dim() - 1)))
    return (weights * spikes).sum(0) / rate_normaliser(time_steps, leak)



def constant_in_time(inputs: Tensor) -> bool:
    """Whether time-first input (T, ...) is the same at every step: an ``expand``ed view (stride 0 in time), or
    T = 1. Constant-current input is encoded that way, so a network can push it through its input layer once."""
    return inputs.shape[0] == 1 or inputs.stride(0) == 0


def mean_input(inputs: Tensor, leak: float, dtype: torch.dtype) -> Tensor:
    """What a feedback network's input layer F sees of time-first input (T, B, ...): its λ-weighted mean rate
    (B, ...) in ``dtype``; for constant input simply its first step."""
    if constant_in_time(inputs):
        return inputs[0].to(dtype)
    return weighted_rate(inputs.to(dtype), leak)
