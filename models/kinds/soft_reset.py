"""Soft-reset IF/LIF neurons (IDE, SPIDE, STDB): fire at v ≥ θ and subtract D = θ − u_rest (fixed kind "soft_reset").

Every part of the kind, in the order a network meets them: the NetSpec node, the torch step, the reference's
float64 and bit-accurate integer models, the FixedPopulation checks and the quantisation rule. Lava's LIF fires at
v > vth and resets to 0; processes/soft_reset holds the Lava process that does what this module describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lavaflow.models.bit_widths import ACTIVATION_SHIFT, DECAY_UNITY, STATE_MAX, SUBTRACTION_MAX
from lavaflow.models.checks import check_array, check_population_shape, store_integer, store_real
from lavaflow.models.errors import NetSpecError
from lavaflow.models.kinds.base import (
    CLIP_MARGIN,
    FixedNeurons,
    FixedRecord,
    NeuronKind,
    QuantisedValue,
    SpikeFn,
    decay_code,
    heaviside,
)

if TYPE_CHECKING:
    from torch import Tensor


# ------------------------------------------------------------------------------------------------ NetSpec node
@dataclass(frozen=True, eq=False)
class SoftResetNeurons:
    """IF/LIF with reset by subtraction: v ← λv + I; s = [v ≥ θ]; v −= s·(θ − u_rest)  (see ``soft_reset_step``)."""

    bias: np.ndarray  # (n,), added to the input current every step
    threshold: float
    reset_potential: float = 0.0
    voltage_decay: float = 0.0
    shape: tuple[int, ...] = ()  # (C, H, W) for conv layers; () means (n,)

    def __post_init__(self) -> None:
        check_array("SoftResetNeurons.bias", self.bias, 1)
        store_real(self, "threshold", 0.0)
        store_real(self, "reset_potential", high=self.threshold)
        store_real(self, "voltage_decay", 0.0, 1.0)
        if self.threshold - self.reset_potential <= 0:
            raise NetSpecError("threshold − reset_potential must be positive (a spike must remove charge)")
        check_population_shape(self.bias, self.shape)

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leak(self) -> float:
        return 1.0 - self.voltage_decay


# ------------------------------------------------------------------------------------------------ torch step
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


# ------------------------------------------------------------------------------------------------ reference
class FloatSoftReset:
    """soft_reset_step in float64, in Lava's order: v ← λ·v + a_in + bias; s = [v ≥ θ]; v −= s·D.

    The bias is added after a_in, as Lava adds ``bias_mant`` after the synaptic input, so the rounding matches
    Lava's floating_pt model rather than soft_reset_step(a_in + bias, …); the two agree exactly when bias = 0.
    Every step writes into preallocated arrays (masked ufuncs are avoided: they are slow on irregular masks).
    """

    def __init__(self, neurons: SoftResetNeurons, batch: int) -> None:
        params = SoftResetParams(neurons.threshold, neurons.reset_potential, neurons.voltage_decay)
        self.leak, self.threshold, self.subtraction = params.leak, params.threshold, params.subtraction
        self.bias = neurons.bias.astype(np.float64)
        self.state = {"v": np.zeros((batch, neurons.size))}
        self.scratch = np.zeros((batch, neurons.size))

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        voltage = self.state["v"]
        if self.leak != 1.0:  # λ = 1 is exact either way; skip the multiply for IF neurons
            np.multiply(voltage, self.leak, out=voltage)
        voltage += a_in
        voltage += self.bias
        np.greater_equal(voltage, self.threshold, out=spikes)
        np.multiply(spikes, self.subtraction, out=self.scratch)
        voltage -= self.scratch


class FixedSoftReset(FixedNeurons):
    """v = saturate(decay(v, dv) + (a_in << 6) + bias); s = [v ≥ vth << 6]; v −= s·(subtraction << 6)."""

    def __init__(self, population: FixedRecord, batch: int) -> None:
        super().__init__(population, batch, ("v",))
        self.subtraction = population.subtraction << ACTIVATION_SHIFT

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        voltage = self.state["v"]
        self.decay(voltage, self.voltage_keep)
        voltage += self.shifted_activation(a_in)
        voltage += self.bias
        np.clip(voltage, -STATE_MAX, STATE_MAX, out=voltage)
        np.greater_equal(voltage, self.threshold, out=self.fired)
        np.multiply(self.fired, self.subtraction, out=self.scratch)
        voltage -= self.scratch  # v ≥ vth << 6 ≥ 0 where it fired, so this stays above −2^23
        np.copyto(spikes, self.fired)


# ------------------------------------------------------------------------------------------------ fixed point
def check_fixed(name: str, population: FixedRecord) -> None:
    """subtraction is ours: as wide as vth (17 bits) and ≥ 1, so a spike removes charge; du is unused."""
    store_integer(population, "subtraction", f"{name}.subtraction (a spike must remove charge)", 1, SUBTRACTION_MAX)
    store_integer(population, "du", f"{name}.du (unused by soft reset)")


def scale_bounds(neurons: SoftResetNeurons) -> list[tuple[str, float]]:
    """The reset subtraction D must fit its 17 bits: one a_in LSB is worth at least D / SUBTRACTION_MAX."""
    subtraction = neurons.threshold - neurons.reset_potential
    return [(f"reset subtraction {subtraction:g} (≤ {SUBTRACTION_MAX}, 17 bits)", subtraction / SUBTRACTION_MAX)]


def spike_preserving_range(
    neurons: SoftResetNeurons, positive: np.ndarray, negative: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, [−P, N + θ + λ·max(−u_rest, 0)] widened by CLIP_MARGIN: the proof is in
    deploy.quantize.spike_preserving_bias_range. ``positive``/``negative``: P and N per neuron, float units."""
    subtraction = neurons.threshold - neurons.reset_potential
    margin = CLIP_MARGIN * (positive + negative + neurons.threshold + subtraction)
    lower = -positive - margin
    upper = negative + neurons.threshold + neurons.leak * max(-neurons.reset_potential, 0.0) + margin
    return lower, upper


def integer_bias_bounds(
    neurons: SoftResetNeurons, positive: np.ndarray, negative: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The spike-preserving bounds on the integers, in 24-bit units: never fires if b ≤ silent (−64·P̂ − 1); fires
    at every step if b ≥ firing (64·N̂ + 64·vth + ⌈λ̂·64·max(subtraction − vth, 0)⌉). P̂, N̂ in a_in LSBs."""
    shift = 1 << ACTIVATION_SHIFT
    vth = round(neurons.threshold / scale)
    subtraction = round((neurons.threshold - neurons.reset_potential) / scale)
    dv, _ = decay_code(neurons.voltage_decay, offset=0)
    overshoot = (DECAY_UNITY - dv) * shift * max(subtraction - vth, 0)
    silent = -shift * positive - 1
    firing = shift * negative + shift * vth + -(-overshoot // DECAY_UNITY)  # ceil(λ̂·64·max(subtraction − vth, 0))
    return silent, firing


def fixed_fields(name: str, neurons: SoftResetNeurons, scale: float) -> tuple[dict[str, int], list[QuantisedValue]]:
    """subtraction = round(D / scale); one that rounds to zero would make a spike remove nothing, so it raises."""
    subtraction_float = neurons.threshold - neurons.reset_potential
    subtraction = round(subtraction_float / scale)
    if subtraction == 0:
        raise NetSpecError(
            f"population {name!r}: the reset subtraction {subtraction_float:.3g} rounds to zero "
            f"at scale {scale:.3g} (one a_in LSB), so a spike would remove no charge"
        )
    report = QuantisedValue(
        "subtraction", np.array([subtraction_float]), np.array([subtraction * scale]), 0, "17-bit unsigned"
    )
    return {"subtraction": subtraction}, [report]


def from_fixed(population: FixedRecord, threshold: float, bias: np.ndarray) -> SoftResetNeurons:
    """u_rest = θ − subtraction·scale; λ = 1 − dv/4096."""
    return SoftResetNeurons(
        bias=bias,
        threshold=threshold,
        reset_potential=threshold - population.subtraction * population.scale,
        voltage_decay=population.dv / DECAY_UNITY,
        shape=population.shape,
    )


KIND = NeuronKind(
    name="soft_reset",
    node=SoftResetNeurons,
    params=SoftResetParams,
    step=soft_reset_step,
    variables=("v",),
    float_model=FloatSoftReset,
    fixed_model=FixedSoftReset,
    check_fixed=check_fixed,
    scale_bounds=scale_bounds,
    spike_preserving_range=spike_preserving_range,
    integer_bias_bounds=integer_bias_bounds,
    fixed_fields=fixed_fields,
    from_fixed=from_fixed,
)
