"""Non-spiking leaky integrator (NIR's LI / CubaLI): Lava's CUBA arithmetic without a threshold (fixed kind "li").

u ← (1−du)·u + a_in;  v ← (1−dv)·v + u + bias; it never spikes and never resets, so v is read as a trace (a
readout potential). Every part of the kind, in the order a network meets them: the NetSpec node, the torch step, the
reference's float64 and bit-accurate integer models (Lava's PyLifModelBitAcc without the spike), the FixedPopulation
checks and the quantisation rule. processes/li holds the Lava process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lavaflow.models.bit_widths import DECAY_UNITY, STATE_MAX
from lavaflow.models.checks import check_array, check_population_shape, store_real
from lavaflow.models.kinds.base import FixedRecord, NeuronKind, SpikeFn, strict_heaviside
from lavaflow.models.kinds.cuba import FixedCuba, FloatCuba, check_fixed, fixed_fields

if TYPE_CHECKING:
    from torch import Tensor


# ------------------------------------------------------------------------------------------------ NetSpec node
@dataclass(frozen=True, eq=False)
class LeakyIntegrator:
    """NIR's LI / CubaLI: u ← (1−du)u + I; v ← (1−dv)v + u + bias; never spikes, never resets."""

    bias: np.ndarray  # (n,)
    current_decay: float = 1.0
    voltage_decay: float = 0.0
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_array("LeakyIntegrator.bias", self.bias, 1)
        store_real(self, "current_decay", 0.0, 1.0)
        store_real(self, "voltage_decay", 0.0, 1.0)
        check_population_shape(self.bias, self.shape)

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leak(self) -> float:
        return 1.0 - self.voltage_decay

    @property
    def threshold(self) -> float:
        """0: no threshold (vth is unused; it adds no bound to the quantiser's scale)."""
        return 0.0


# ------------------------------------------------------------------------------------------------ torch step
class LIParams(NamedTuple):
    """Leaky integrator: the CUBA decays, no threshold."""

    current_decay: float = 1.0  # fraction of the synaptic current lost per step (1: no synaptic filter)
    voltage_decay: float = 0.0  # fraction of v lost per step


class LIState(NamedTuple):
    current: Tensor  # Lava's `u`
    voltage: Tensor  # Lava's `v`


def li_step(
    input_current: Tensor, state: LIState, params: LIParams, spike_fn: SpikeFn = strict_heaviside
) -> tuple[Tensor, LIState]:
    """u ← (1−du)·u + a_in;  v ← (1−dv)·v + u;  spikes are always 0 (``spike_fn`` is unused)."""
    current = (1.0 - params.current_decay) * state.current + input_current
    voltage = (1.0 - params.voltage_decay) * state.voltage + current
    return voltage * 0.0, LIState(current, voltage)


# ------------------------------------------------------------------------------------------------ reference
class FloatLI(FloatCuba):
    """FloatCuba without the spike: u ← (1−du)·u + a_in; v ← (1−dv)·v + u + bias; spikes = 0."""

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        self.integrate(a_in)
        spikes[...] = 0


class FixedLI(FixedCuba):
    """Lava's PyLifModelBitAcc without the spike (FixedCuba's integration): u wraps, v saturates, spikes = 0."""

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        self.integrate(a_in)
        spikes[...] = 0


# ------------------------------------------------------------------------------------------------ fixed point
def scale_bounds(neurons: LeakyIntegrator) -> list[tuple[str, float]]:
    """No threshold bound; the largest bias must fit v's 24 bits (weights and inputs bound the scale as usual)."""
    largest = float(np.abs(neurons.bias).max(initial=0.0))
    return [(f"largest bias {largest:.3g} (|v| ≤ {STATE_MAX}, 24 bits)", largest / STATE_MAX)]


def spike_preserving_range(neurons: LeakyIntegrator, positive: np.ndarray, negative: np.ndarray) -> None:
    """None: v itself is the output, so no bias may be clipped."""
    return None


def integer_bias_bounds(neurons: LeakyIntegrator, positive: np.ndarray, negative: np.ndarray, scale: float) -> None:
    """None: never called, as no bias of this kind is clipped."""
    return None


def from_fixed(population: FixedRecord, threshold: float, bias: np.ndarray) -> LeakyIntegrator:
    """current_decay = (du + 1)/4096, voltage_decay = dv/4096; the threshold is ignored."""
    return LeakyIntegrator(
        bias=bias,
        current_decay=(population.du + 1) / DECAY_UNITY,
        voltage_decay=population.dv / DECAY_UNITY,
        shape=population.shape,
    )


KIND = NeuronKind(
    name="li",
    node=LeakyIntegrator,
    params=LIParams,
    step=li_step,
    variables=("u", "v"),
    float_model=FloatLI,
    fixed_model=FixedLI,
    check_fixed=check_fixed,
    scale_bounds=scale_bounds,
    spike_preserving_range=spike_preserving_range,
    integer_bias_bounds=integer_bias_bounds,
    fixed_fields=fixed_fields,
    from_fixed=from_fixed,
)
