"""Current-based LIF (ST-RSBP, lava-dl's CUBA): Lava's own ``LIF``, fires at v > θ, resets v to 0 (fixed kind "cuba").

Every part of the kind, in the order a network meets them: the NetSpec node, the torch step, the reference's
float64 and bit-accurate integer models (Lava's PyLifModelBitAcc), the FixedPopulation checks and the
quantisation rule. processes/cuba holds the Lava process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from lavaflow.models.bit_widths import CURRENT_WRAP, DECAY_MAX, DECAY_UNITY, STATE_MAX
from lavaflow.models.checks import check_array, check_population_shape, store_integer, store_real
from lavaflow.models.kinds.base import (
    FixedNeurons,
    FixedRecord,
    NeuronKind,
    QuantisedValue,
    SpikeFn,
    decay_code,
    strict_heaviside,
)

if TYPE_CHECKING:
    from torch import Tensor


# ------------------------------------------------------------------------------------------------ NetSpec node
@dataclass(frozen=True, eq=False)
class CubaNeurons:
    """Lava's LIF / lava-dl CUBA: u ← (1−du)u + I; v ← (1−dv)v + u + bias; s = [v > θ]; v ← 0 on a spike."""

    bias: np.ndarray  # (n,)
    threshold: float
    current_decay: float = 1.0
    voltage_decay: float = 0.0
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_array("CubaNeurons.bias", self.bias, 1)
        store_real(self, "threshold", 0.0)
        store_real(self, "current_decay", 0.0, 1.0)
        store_real(self, "voltage_decay", 0.0, 1.0)
        check_population_shape(self.bias, self.shape)

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leak(self) -> float:
        return 1.0 - self.voltage_decay


# ------------------------------------------------------------------------------------------------ torch step
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


# ------------------------------------------------------------------------------------------------ reference
class FloatCuba:
    """Lava's LIF floating_pt: u ← (1−du)·u + a_in; v ← (1−dv)·v + u + bias; s = [v > θ]; v ← v·(1 − s)."""

    def __init__(self, neurons: CubaNeurons, batch: int) -> None:
        self.current_keep, self.voltage_keep = 1.0 - neurons.current_decay, 1.0 - neurons.voltage_decay
        self.threshold = neurons.threshold
        self.bias = neurons.bias.astype(np.float64)
        self.state = {"u": np.zeros((batch, neurons.size)), "v": np.zeros((batch, neurons.size))}
        self.scratch = np.zeros((batch, neurons.size))

    def integrate(self, a_in: np.ndarray) -> np.ndarray:
        """u ← (1−du)·u + a_in; v ← (1−dv)·v + u + bias; returns v (the leaky integrator stops here)."""
        current, voltage = self.state["u"], self.state["v"]
        np.multiply(current, self.current_keep, out=current)
        current += a_in
        np.multiply(voltage, self.voltage_keep, out=voltage)
        voltage += current
        voltage += self.bias
        return voltage

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        voltage = self.integrate(a_in)
        np.greater(voltage, self.threshold, out=spikes)
        np.subtract(1.0, spikes, out=self.scratch)
        voltage *= self.scratch


class FixedCuba(FixedNeurons):
    """Lava's PyLifModelBitAcc: u = wrap(decay(u, du + 1) + (a_in << 6)); v = saturate(decay(v, dv) + u + bias)."""

    def __init__(self, population: FixedRecord, batch: int) -> None:
        super().__init__(population, batch, ("u", "v"))
        self.current_keep = DECAY_UNITY - (population.du + 1)  # Lava's ds_offset = 1

    def integrate(self, a_in: np.ndarray) -> np.ndarray:
        """u and v of Lava's bit-accurate LIF before the spike test; returns v (the leaky integrator stops here)."""
        current, voltage = self.state["u"], self.state["v"]
        self.decay(current, self.current_keep)
        current += self.shifted_activation(a_in)
        # Lava subtracts 2^24 above 2^23 and adds it at or below −2^23: the representative of u mod 2^24 in
        # (−2^23, 2^23]. One conditional step suffices because |u| < 2^24 here (a_in is 18-bit, see models.fixed),
        # so the modular form below is the same map.
        current += STATE_MAX
        np.bitwise_and(current, CURRENT_WRAP - 1, out=current)
        current -= STATE_MAX
        self.decay(voltage, self.voltage_keep)
        voltage += current
        voltage += self.bias
        np.clip(voltage, -STATE_MAX, STATE_MAX, out=voltage)
        return voltage

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        voltage = self.integrate(a_in)
        np.less_equal(voltage, self.threshold, out=self.fired)  # fired holds "did not fire" here
        voltage *= self.fired
        np.logical_not(self.fired, out=self.fired)
        np.copyto(spikes, self.fired)


# ------------------------------------------------------------------------------------------------ fixed point
class CurrentDecay(Protocol):
    """What ``fixed_fields`` reads: the CUBA kinds' (and the leaky integrator's) synaptic current decay."""

    current_decay: float


def check_fixed(name: str, population: FixedRecord) -> None:
    """du is Lava's 12-bit current decay; subtraction is unused (the reset is to 0, or none)."""
    store_integer(population, "du", f"{name}.du (12-bit unsigned)", 0, DECAY_MAX)
    store_integer(population, "subtraction", f"{name}.subtraction (unused by {population.kind})")


def scale_bounds(neurons: CubaNeurons) -> list[tuple[str, float]]:
    """None beyond the common ones (threshold, weights, bias, input): the reset needs no integer."""
    return []


def spike_preserving_range(neurons: CubaNeurons, positive: np.ndarray, negative: np.ndarray) -> None:
    """None: the float range depends on T, and Lava's current wraps mod 2^24, so biases are never clipped."""
    return None


def integer_bias_bounds(neurons: CubaNeurons, positive: np.ndarray, negative: np.ndarray, scale: float) -> None:
    """None: never called, as no bias of this kind is clipped."""
    return None


def fixed_fields(name: str, neurons: CurrentDecay, scale: float) -> tuple[dict[str, int], list[QuantisedValue]]:
    """du = round(current_decay·4096) − 1 (Lava adds 1), clipped to 0..4095: current_decay 0 is not representable."""
    du, du_clipped = decay_code(neurons.current_decay, offset=1)
    reason = ", 0 is not representable: Lava adds 1 to du" if du_clipped else ""
    report = QuantisedValue(
        "current_decay",
        np.array([neurons.current_decay]),
        np.array([(du + 1) / DECAY_UNITY]),
        du_clipped,
        "(du+1)/4096" + reason,
    )
    return {"du": du}, [report]


def from_fixed(population: FixedRecord, threshold: float, bias: np.ndarray) -> CubaNeurons:
    """current_decay = (du + 1)/4096, voltage_decay = dv/4096."""
    return CubaNeurons(
        bias=bias,
        threshold=threshold,
        current_decay=(population.du + 1) / DECAY_UNITY,
        voltage_decay=population.dv / DECAY_UNITY,
        shape=population.shape,
    )


KIND = NeuronKind(
    name="cuba",
    node=CubaNeurons,
    params=CubaParams,
    step=cuba_step,
    variables=("u", "v"),
    float_model=FloatCuba,
    fixed_model=FixedCuba,
    check_fixed=check_fixed,
    scale_bounds=scale_bounds,
    spike_preserving_range=spike_preserving_range,
    integer_bias_bounds=integer_bias_bounds,
    fixed_fields=fixed_fields,
    from_fixed=from_fixed,
)
