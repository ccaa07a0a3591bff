"""CUBA LIF with a refractory period (netx ``refDelay``, Lava's ``LIFRefractory``): fixed kind "cuba_refractory".

Lava's LIFRefractory (lava.proc.lif.models.PyLifRefractoryModelFloat) keeps integrating the current u but holds
the voltage for ``refractory_period`` steps after a spike: a spike at step t freezes v (at its reset value 0)
during steps t+1 … t+R, so the neuron cannot fire there. Here a per-neuron counter r does the same without
absolute time (it restarts with every sample): a step with r > 0 holds v and counts r down; a spike sets r = R.
Otherwise the kind is "cuba" (hard reset to 0, v > θ), in both precisions; R = 0 is exactly "cuba". Lava ships
LIFRefractory in floating point only; processes/cuba_refractory has both precisions, with Lava's integer LIF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lavaflow.models.bit_widths import CURRENT_WRAP, DECAY_UNITY, STATE_MAX
from lavaflow.models.checks import check_array, check_population_shape, store_integer, store_real
from lavaflow.models.kinds.base import FixedNeurons, FixedRecord, NeuronKind, QuantisedValue, SpikeFn, strict_heaviside
from lavaflow.models.kinds.cuba import check_fixed as cuba_check_fixed
from lavaflow.models.kinds.cuba import fixed_fields as cuba_fixed_fields
from lavaflow.models.kinds.cuba import integer_bias_bounds, scale_bounds, spike_preserving_range

if TYPE_CHECKING:
    from torch import Tensor

REFRACTORY_MAX = 255  # ours: 8 bits, ample for netx's refDelay, and a small counter Var


# ------------------------------------------------------------------------------------------------ NetSpec node
@dataclass(frozen=True, eq=False)
class CubaRefractoryNeurons:
    """CUBA LIF whose voltage is held for ``refractory_period`` steps after each spike (u keeps integrating)."""

    bias: np.ndarray  # (n,)
    threshold: float
    current_decay: float = 1.0
    voltage_decay: float = 0.0
    refractory_period: int = 1  # R: steps after a spike during which v is held (Lava's default 1)
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_array("CubaRefractoryNeurons.bias", self.bias, 1)
        store_real(self, "threshold", 0.0)
        store_real(self, "current_decay", 0.0, 1.0)
        store_real(self, "voltage_decay", 0.0, 1.0)
        store_integer(self, "refractory_period", "CubaRefractoryNeurons.refractory_period", 0, REFRACTORY_MAX)
        check_population_shape(self.bias, self.shape)

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leak(self) -> float:
        return 1.0 - self.voltage_decay


# ------------------------------------------------------------------------------------------------ torch step
class CubaRefractoryParams(NamedTuple):
    """cuba's parameters plus R, the steps v is held after a spike."""

    threshold: float = 1.0
    current_decay: float = 1.0
    voltage_decay: float = 0.0
    refractory_period: int = 1


class CubaRefractoryState(NamedTuple):
    current: Tensor  # Lava's `u`
    voltage: Tensor  # Lava's `v`
    refractory: Tensor  # steps of holding left (ours: `r`)


def cuba_refractory_step(
    input_current: Tensor,
    state: CubaRefractoryState,
    params: CubaRefractoryParams,
    spike_fn: SpikeFn = strict_heaviside,
) -> tuple[Tensor, CubaRefractoryState]:
    """u ← (1−du)·u + I;  where r = 0: v ← (1−dv)·v + u, else v held and r ← r − 1;  s = [v > θ];  v ← v·(1−s);
    r ← R where s. The hold is a mask, so the surrogate gradient flows only through steps that integrate."""
    current = (1.0 - params.current_decay) * state.current + input_current
    active = (state.refractory <= 0).to(current.dtype)
    integrated = (1.0 - params.voltage_decay) * state.voltage + current
    voltage = active * integrated + (1.0 - active) * state.voltage
    spikes = spike_fn(voltage - params.threshold)
    countdown = (state.refractory - 1.0).clamp(min=0.0)
    refractory = spikes * float(params.refractory_period) + (1.0 - spikes) * countdown
    return spikes, CubaRefractoryState(current, voltage * (1.0 - spikes), refractory)


# ------------------------------------------------------------------------------------------------ reference
class FloatCubaRefractory:
    """float64, in the order of lavaflow.processes.dynamics.CubaRefractoryFloat: u; (v·(1−dv) + u) + bias where
    r = 0; s = [v > θ]; v ← 0 and r ← R where s."""

    def __init__(self, neurons: CubaRefractoryNeurons, batch: int) -> None:
        self.current_keep, self.voltage_keep = 1.0 - neurons.current_decay, 1.0 - neurons.voltage_decay
        self.threshold, self.period = neurons.threshold, float(neurons.refractory_period)
        self.bias = neurons.bias.astype(np.float64)
        shape = (batch, neurons.size)
        self.state = {"u": np.zeros(shape), "v": np.zeros(shape), "r": np.zeros(shape)}

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        current, voltage, refractory = self.state["u"], self.state["v"], self.state["r"]
        np.multiply(current, self.current_keep, out=current)
        current += a_in
        integrated = voltage * self.voltage_keep
        integrated += current
        integrated += self.bias
        held = refractory > 0
        np.copyto(voltage, integrated, where=~held)
        np.subtract(refractory, 1.0, out=refractory, where=held)
        np.greater(voltage, self.threshold, out=spikes)
        fired = spikes.astype(bool)
        voltage[fired] = 0.0
        refractory[fired] = self.period


class FixedCubaRefractory(FixedNeurons):
    """Lava's integer LIF (as kind "cuba") where r = 0; v held and r counted down elsewhere; v ← 0, r ← R on a spike."""

    def __init__(self, population: FixedRecord, batch: int) -> None:
        super().__init__(population, batch, ("u", "v", "r"))
        self.current_keep = DECAY_UNITY - (population.du + 1)  # Lava's ds_offset = 1
        self.period = int(population.refractory)

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        current, voltage, refractory = self.state["u"], self.state["v"], self.state["r"]
        self.decay(current, self.current_keep)
        current += self.shifted_activation(a_in)
        current += STATE_MAX  # Lava's conditional ±2^24 wrap, as a modulo (models.kinds.cuba explains why)
        np.bitwise_and(current, CURRENT_WRAP - 1, out=current)
        current -= STATE_MAX
        integrated = voltage.copy()
        self.decay(integrated, self.voltage_keep)
        integrated += current
        integrated += self.bias
        np.clip(integrated, -STATE_MAX, STATE_MAX, out=integrated)
        held = refractory > 0
        np.copyto(voltage, integrated, where=~held)
        np.subtract(refractory, 1, out=refractory, where=held)
        np.greater(voltage, self.threshold, out=self.fired)
        voltage[self.fired] = 0
        refractory[self.fired] = self.period
        np.copyto(spikes, self.fired)


# ------------------------------------------------------------------------------------------------ fixed point
def check_fixed(name: str, population: FixedRecord) -> None:
    """du as cuba's; refractory is R, 0..REFRACTORY_MAX steps."""
    cuba_check_fixed(name, population)
    store_integer(population, "refractory", f"{name}.refractory (0..{REFRACTORY_MAX} steps)", 0, REFRACTORY_MAX)


def fixed_fields(
    name: str, neurons: CubaRefractoryNeurons, scale: float
) -> tuple[dict[str, int], list[QuantisedValue]]:
    """cuba's du; R is a step count and passes unchanged."""
    fields, report = cuba_fixed_fields(name, neurons, scale)  # type: ignore[arg-type]
    return {**fields, "refractory": int(neurons.refractory_period)}, report


def from_fixed(population: FixedRecord, threshold: float, bias: np.ndarray) -> CubaRefractoryNeurons:
    """current_decay = (du + 1)/4096, voltage_decay = dv/4096, refractory_period = refractory."""
    return CubaRefractoryNeurons(
        bias=bias,
        threshold=threshold,
        current_decay=(population.du + 1) / DECAY_UNITY,
        voltage_decay=population.dv / DECAY_UNITY,
        refractory_period=population.refractory,
        shape=population.shape,
    )


KIND = NeuronKind(
    name="cuba_refractory",
    node=CubaRefractoryNeurons,
    params=CubaRefractoryParams,
    step=cuba_refractory_step,
    variables=("u", "v", "r"),
    float_model=FloatCubaRefractory,
    fixed_model=FixedCubaRefractory,
    check_fixed=check_fixed,
    scale_bounds=scale_bounds,
    spike_preserving_range=spike_preserving_range,
    integer_bias_bounds=integer_bias_bounds,
    fixed_fields=fixed_fields,
    from_fixed=from_fixed,
)
