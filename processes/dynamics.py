"""Neuron arithmetic, written once for the neuron process models and the fused network model.

Each class holds one neuron kind's parameters at one precision and supplies the three parts of a step; callers
fix the order, as Lava's LIF does: receive, ``integrate`` (sub-threshold update), ``fire``, ``reset``, send.
States are arrays updated in place, of shape (n,) in a neuron process and (B, n) in the fused network (the
parameters broadcast over the batch axis).

Floating point (float64, Lava's ``floating_pt``):

    soft reset:  v ← (1 − dv)·v + a_in + bias_mant;   s = [v ≥ vth];   v ← v − s·(vth − v_reset)
    CUBA:        u ← (1 − du)·u + a_in;   v ← (1 − dv)·v + u + bias_mant;   s = [v > vth];   v ← 0 where s

Fixed point (Lava's ``fixed_pt``), exactly the integer dynamics of lavaflow.models.fixed, which mirror Lava's
bit-accurate LIF (lava.proc.lif.models.PyLifModelBitAcc):

    soft reset:  v ← saturate(decay(v, dv) + (a_in << 6) + bias);   s = [v ≥ vth << 6];
                 v ← v − s·((vth − v_reset) << 6)
    CUBA:        u ← wrap(decay(u, du + 1) + (a_in << 6));   v ← saturate(decay(v, dv) + u + bias);
                 s = [v > vth << 6];   v ← 0 where s

(the refractory CUBA, the leak/reset-potential LIF and the non-spiking leaky integrator give theirs below)
with bias = bias_mant << bias_exp, decay(x, d) = sign(x)·((|x|·(4096 − d)) >> 12), saturate to ±(2^23 − 1) and
Lava's one conditional ±2^24 wrap of the current. Why ≥ for soft reset: IDE and SPIDE define the firing rate as
clamp(I / D, 0, 1), which needs v ≥ θ (Lava's LIF fires only at v > θ, so a neuron driven by exactly θ per step
would never fire). Why int64: |v|·4096 exceeds int32 for 24-bit states, so the decay product is promoted, as
in Lava; results return to 24 bits and are stored back into the int32 Vars.

This module imports numpy only: Lava discovers process models by importing every module beside a process, and
the fused network needs the arithmetic without the neuron processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

# Lava's bit-accurate LIF constants (lava/proc/lif/models.py, AbstractPyLifModelFixed.__init__); the same values
# are named in lavaflow.models.fixed, which processes/ may not import (processes depend on Lava only).
ACTIVATION_SHIFT = 6  # a_in << 6 aligns the synaptic input with the 24-bit state (act_shift)
THRESHOLD_SHIFT = 6  # vth << 6 (vth_shift)
DECAY_BITS = 12  # decays are fractions of 4096 (decay_shift)
DECAY_UNITY = 1 << DECAY_BITS
CURRENT_DECAY_OFFSET = 1  # Lava's ds_offset: du = 4095 empties u every step
STATE_LIMIT = 1 << 23  # u and v are 24-bit signed
STATE_MAX = STATE_LIMIT - 1  # v saturates to ±STATE_MAX

State = dict[str, np.ndarray]


class NeuronArithmetic(ABC):
    """The arithmetic of one neuron kind at one precision; the caller owns the order of the three parts."""

    state_names: ClassVar[tuple[str, ...]]  # the state arrays a step reads and writes, zeroed per sample

    @abstractmethod
    def integrate(self, state: State, a_in: np.ndarray) -> None:
        """Sub-threshold update: decay the state left by the previous step and add this step's input."""

    @abstractmethod
    def fire(self, state: State) -> np.ndarray:
        """Boolean spikes of the integrated state."""

    @abstractmethod
    def reset(self, state: State, spikes: np.ndarray) -> None:
        """Remove the charge of the neurons that fired."""


# ------------------------------------------------------------------------------------------------ float
@dataclass(frozen=True)
class SoftResetFloat(NeuronArithmetic):
    """IF/LIF with reset by subtraction in float64 (see the module docstring for the equations)."""

    vth: float
    v_reset: float
    dv: float
    bias: np.ndarray | float

    state_names: ClassVar[tuple[str, ...]] = ("v",)

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        # ((1 − dv)·v + a_in) + bias in place: the reference simulator's order, so the float rounding agrees too.
        voltage = state["v"]
        if self.dv != 0.0:  # × 1.0 is exact; skip it for IF neurons
            voltage *= 1.0 - self.dv
        voltage += a_in
        voltage += self.bias

    def fire(self, state: State) -> np.ndarray:
        return state["v"] >= self.vth  # ≥, not Lava's >: see the module docstring

    def reset(self, state: State, spikes: np.ndarray) -> None:
        state["v"] -= spikes * (self.vth - self.v_reset)  # v − 0.0 is exactly v where nothing fired


@dataclass(frozen=True)
class CubaFloat(NeuronArithmetic):
    """Lava's LIF in float64: current-based, fires at v > vth, resets v to 0 (u is not reset)."""

    vth: float
    du: float
    dv: float
    bias: np.ndarray | float

    state_names: ClassVar[tuple[str, ...]] = ("u", "v")

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        current, voltage = state["u"], state["v"]  # in place, in Lava's order of operations
        current *= 1.0 - self.du
        current += a_in
        voltage *= 1.0 - self.dv
        voltage += current
        voltage += self.bias

    def fire(self, state: State) -> np.ndarray:
        return state["v"] > self.vth

    def reset(self, state: State, spikes: np.ndarray) -> None:
        state["v"] *= ~spikes  # v·0 is ±0.0 where it fired (adds like 0 later); elsewhere v·1 is v


# ------------------------------------------------------------------------------------------------ fixed
def effective_bias(bias_mant: np.ndarray | int, bias_exp: np.ndarray | int) -> np.ndarray:
    """bias_mant << bias_exp in int64 (a negative exponent shifts right, as in Lava's ``scale_bias``)."""
    mantissa = np.asarray(bias_mant, dtype=np.int64)
    exponent = np.asarray(bias_exp, dtype=np.int64)
    return np.where(exponent >= 0, mantissa << np.maximum(exponent, 0), mantissa >> np.maximum(-exponent, 0))


def decay(values: np.ndarray, decay_constant: int) -> np.ndarray:
    """sign(x)·((|x|·(4096 − d)) >> 12) in int64: Lava's decay, rounding toward zero.

    Computed as (p + (4095 if p < 0 else 0)) >> 12 on p = x·(4096 − d), the same truncation in three in-place
    passes (p >> 63 is −1 for a negative p, 0 otherwise), instead of sign·(|p| >> 12)'s four arrays.
    """
    product = np.asarray(values, dtype=np.int64) * (DECAY_UNITY - int(decay_constant))
    product += (product >> 63) & (DECAY_UNITY - 1)
    product >>= DECAY_BITS
    return product


def saturate(values: np.ndarray) -> np.ndarray:
    """Clip int64 ``values`` in place (and return them) to the 24-bit voltage range ±(2^23 − 1), as Lava saturates v."""
    return np.clip(values, -STATE_MAX, STATE_MAX, out=values)


def wrap(values: np.ndarray) -> np.ndarray:
    """Lava's current wrap, in place on int64 ``values`` (returned): one conditional ±2^24 into (−2^23, 2^23], not a
    two's-complement wrap. A value above 2^23 lands above −2^23, so the second test never undoes the first."""
    np.subtract(values, 2 * STATE_LIMIT, out=values, where=values > STATE_LIMIT)
    np.add(values, 2 * STATE_LIMIT, out=values, where=values <= -STATE_LIMIT)
    return values


def cuba_integrate(state: State, a_in: np.ndarray, du: int, dv: int, bias: np.ndarray | int) -> np.ndarray:
    """Lava's integer CUBA step: u ← wrap(decay(u, du + 1) + (a_in << 6)) in ``state``; returns the new v,
    saturate(decay(v, dv) + u + bias), as a fresh array (a refractory neuron keeps its v where it is held).
    Each intermediate is updated in place: this is most of a fixed-point network's step."""
    current = decay(state["u"], int(du) + CURRENT_DECAY_OFFSET)
    current += shifted_input(a_in)
    state["u"][...] = wrap(current)
    voltage = decay(state["v"], dv)
    voltage += current
    voltage += bias
    return saturate(voltage)


def shifted_input(a_in: np.ndarray) -> np.ndarray:
    """a_in << 6 in int64: Lava MSB-aligns the synaptic input with the 24-bit state."""
    return np.asarray(a_in, dtype=np.int64) << ACTIVATION_SHIFT


@dataclass(frozen=True)
class SoftResetFixed(NeuronArithmetic):
    """IF/LIF with reset by subtraction in Lava's integers; ``bias`` is bias_mant << bias_exp (int64)."""

    vth: int
    v_reset: int
    dv: int
    bias: np.ndarray | int

    state_names: ClassVar[tuple[str, ...]] = ("v",)

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        state["v"][...] = saturate(decay(state["v"], self.dv) + shifted_input(a_in) + self.bias)

    def fire(self, state: State) -> np.ndarray:
        return state["v"] >= (int(self.vth) << THRESHOLD_SHIFT)

    def reset(self, state: State, spikes: np.ndarray) -> None:
        subtraction = (int(self.vth) - int(self.v_reset)) << THRESHOLD_SHIFT
        np.subtract(state["v"], subtraction, out=state["v"], where=spikes)


@dataclass(frozen=True)
class CubaFixed(NeuronArithmetic):
    """Lava's bit-accurate LIF (PyLifModelBitAcc); ``bias`` is bias_mant << bias_exp (int64)."""

    vth: int
    du: int
    dv: int
    bias: np.ndarray | int

    state_names: ClassVar[tuple[str, ...]] = ("u", "v")

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        state["v"][...] = cuba_integrate(state, a_in, self.du, self.dv, self.bias)

    def fire(self, state: State) -> np.ndarray:
        return state["v"] > (int(self.vth) << THRESHOLD_SHIFT)

    def reset(self, state: State, spikes: np.ndarray) -> None:
        state["v"][spikes] = 0


# ------------------------------------------------------------------------------------------------ refractory CUBA
@dataclass(frozen=True)
class CubaRefractoryFloat(CubaFloat):
    """CubaFloat whose v is held for ``refractory`` steps after a spike (Lava's LIFRefractory), counted down in r.

    u integrates every step; where r > 0 the step holds v (at 0, its reset value) and counts r down; a spike sets
    r = refractory. The counter restarts with every sample (the window zeroes it), unlike Lava's absolute time.
    """

    refractory: float = 1.0

    state_names: ClassVar[tuple[str, ...]] = ("u", "v", "r")

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        current, voltage, refractory = state["u"], state["v"], state["r"]
        current *= 1.0 - self.du
        current += a_in
        integrated = voltage * (1.0 - self.dv)
        integrated += current
        integrated += self.bias
        held = refractory > 0
        np.copyto(voltage, integrated, where=~held)
        np.subtract(refractory, 1, out=refractory, where=held)

    def reset(self, state: State, spikes: np.ndarray) -> None:
        state["v"][spikes] = 0
        state["r"][spikes] = self.refractory


@dataclass(frozen=True)
class CubaRefractoryFixed(CubaFixed):
    """CubaFixed (Lava's integer LIF) with CubaRefractoryFloat's hold: v held and r counted down while r > 0."""

    refractory: int = 1

    state_names: ClassVar[tuple[str, ...]] = ("u", "v", "r")

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        integrated = cuba_integrate(state, a_in, self.du, self.dv, self.bias)
        held = state["r"] > 0
        state["v"][...] = np.where(held, state["v"], integrated)
        state["r"][...] = np.where(held, state["r"] - 1, state["r"])

    def reset(self, state: State, spikes: np.ndarray) -> None:
        state["v"][...] = np.where(spikes, 0, state["v"])
        state["r"][...] = np.where(spikes, int(self.refractory), state["r"])


# ------------------------------------------------------------------------------------------------ leak/reset potentials
@dataclass(frozen=True)
class PotentialLIFFloat(NeuronArithmetic):
    """LIF relaxing toward v_leak (``leak`` = dv·v_leak per step) with reset to v_reset or by subtraction, float64:

    v ← ((1 − dv)·v + a_in + bias) + leak;   s = [v > vth];   v ← v_reset, or v ← v − (vth − v_reset), where s
    """

    vth: float
    dv: float
    bias: np.ndarray | float
    v_reset: float
    leak: float
    subtract: bool

    state_names: ClassVar[tuple[str, ...]] = ("v",)

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        voltage = state["v"]
        voltage *= 1.0 - self.dv
        voltage += a_in
        voltage += self.bias
        voltage += self.leak

    def fire(self, state: State) -> np.ndarray:
        return state["v"] > self.vth

    def reset(self, state: State, spikes: np.ndarray) -> None:
        if self.subtract:
            state["v"][spikes] -= self.vth - self.v_reset
        else:
            state["v"][spikes] = self.v_reset


@dataclass(frozen=True)
class PotentialLIFFixed(NeuronArithmetic):
    """PotentialLIFFloat in Lava's integers: v ← saturate(decay(v, dv) + (a_in << 6) + bias + leak) (leak in
    24-bit units); s = [v > vth << 6]; v ← v_reset << 6, or v −= (vth − v_reset) << 6."""

    vth: int
    dv: int
    bias: np.ndarray | int
    v_reset: int
    leak: int
    subtract: bool

    state_names: ClassVar[tuple[str, ...]] = ("v",)

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        state["v"][...] = saturate(decay(state["v"], self.dv) + shifted_input(a_in) + self.bias + int(self.leak))

    def fire(self, state: State) -> np.ndarray:
        return state["v"] > (int(self.vth) << THRESHOLD_SHIFT)

    def reset(self, state: State, spikes: np.ndarray) -> None:
        voltage = np.asarray(state["v"], dtype=np.int64)
        if self.subtract:
            reset = voltage - ((int(self.vth) - int(self.v_reset)) << THRESHOLD_SHIFT)
        else:
            reset = np.full_like(voltage, int(self.v_reset) << THRESHOLD_SHIFT)
        state["v"][...] = np.where(spikes, reset, voltage)


# ------------------------------------------------------------------------------------------------ leaky integrator
@dataclass(frozen=True)
class LIFloat(NeuronArithmetic):
    """Non-spiking leaky integrator (NIR LI) in float64: CubaFloat's integrate, no threshold, never fires."""

    du: float
    dv: float
    bias: np.ndarray | float

    state_names: ClassVar[tuple[str, ...]] = ("u", "v")

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        current, voltage = state["u"], state["v"]  # in place, in Lava's (and the reference's) order
        current *= 1.0 - self.du
        current += a_in
        voltage *= 1.0 - self.dv
        voltage += current
        voltage += self.bias

    def fire(self, state: State) -> np.ndarray:
        return np.zeros(state["v"].shape, dtype=bool)

    def reset(self, state: State, spikes: np.ndarray) -> None:
        return None  # nothing fires, nothing resets


@dataclass(frozen=True)
class LIFixed(NeuronArithmetic):
    """Non-spiking leaky integrator in Lava's integers: CubaFixed's integrate (wrapping u, saturating v), no fire."""

    du: int
    dv: int
    bias: np.ndarray | int

    state_names: ClassVar[tuple[str, ...]] = ("u", "v")

    def integrate(self, state: State, a_in: np.ndarray) -> None:
        state["v"][...] = cuba_integrate(state, a_in, self.du, self.dv, self.bias)

    def fire(self, state: State) -> np.ndarray:
        return np.zeros(state["v"].shape, dtype=bool)

    def reset(self, state: State, spikes: np.ndarray) -> None:
        return None  # nothing fires, nothing resets
