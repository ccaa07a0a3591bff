"""LIF with a leak potential and a reset potential (NIR's LIF: v_leak, v_reset), fixed kind "lif_potential".

v ← (1 − dv)·v + dv·v_leak + I + bias, so v relaxes toward v_leak; s = [v > θ] (Lava's LIF convention); a spike
either sets v to v_reset (``reset_mode`` "reset", NIR's default; v_reset 0 is Lava's LIF reset) or removes
θ − v_reset ("subtract"; NIR's subtractive reset is v_reset = 0). In integers the leak term dv·v_leak is one
24-bit constant per step (``leak``, computed with the quantised dv, so the rest potential is v_leak up to
rounding) and v_reset is in a_in LSBs like vth (used << 6). processes/lif_potential holds the Lava process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lavaflow.models.bit_widths import ACTIVATION_SHIFT, DECAY_UNITY, STATE_MAX, THRESHOLD_MAX
from lavaflow.models.checks import check_array, check_population_shape, store_integer, store_real
from lavaflow.models.errors import NetSpecError
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

RESET_MODES = ("reset", "subtract")  # FixedPopulation.reset_mode is the index: 0 reset to v_reset, 1 subtract


# ------------------------------------------------------------------------------------------------ NetSpec node
@dataclass(frozen=True, eq=False)
class PotentialLIFNeurons:
    """LIF relaxing toward ``leak_potential``; a spike resets v to ``reset_potential`` or subtracts θ − it."""

    bias: np.ndarray  # (n,)
    threshold: float
    voltage_decay: float = 0.0
    leak_potential: float = 0.0
    reset_potential: float = 0.0
    reset_mode: str = "reset"  # "reset" (v ← v_reset) or "subtract" (v ← v − (θ − v_reset))
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_array("PotentialLIFNeurons.bias", self.bias, 1)
        store_real(self, "threshold", 0.0)
        store_real(self, "voltage_decay", 0.0, 1.0)
        store_real(self, "leak_potential")
        store_real(self, "reset_potential", high=self.threshold)
        if self.threshold - self.reset_potential <= 0:
            raise NetSpecError("threshold − reset_potential must be positive (a reset must lower v)")
        if self.reset_mode not in RESET_MODES:
            raise NetSpecError(f"reset_mode {self.reset_mode!r} is not one of {RESET_MODES}")
        check_population_shape(self.bias, self.shape)

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leak(self) -> float:
        return 1.0 - self.voltage_decay


# ------------------------------------------------------------------------------------------------ torch step
class PotentialLIFParams(NamedTuple):
    """θ, dv, v_leak, v_reset and the reset mode."""

    threshold: float = 1.0
    voltage_decay: float = 0.0
    leak_potential: float = 0.0
    reset_potential: float = 0.0
    reset_mode: str = "reset"


def potential_lif_step(
    current: Tensor, voltage: Tensor, params: PotentialLIFParams, spike_fn: SpikeFn = strict_heaviside
) -> tuple[Tensor, Tensor]:
    """v ← (1−dv)·v + dv·v_leak + I;  s = [v > θ];  v ← v_reset where s (or v − s·(θ − v_reset))."""
    voltage = (1.0 - params.voltage_decay) * voltage + params.voltage_decay * params.leak_potential + current
    spikes = spike_fn(voltage - params.threshold)
    if params.reset_mode == "subtract":
        return spikes, voltage - spikes * (params.threshold - params.reset_potential)
    return spikes, voltage * (1.0 - spikes) + spikes * params.reset_potential


# ------------------------------------------------------------------------------------------------ reference
class FloatPotentialLIF:
    """float64 in processes.dynamics.PotentialLIFFloat's order: ((v·(1−dv) + a_in) + bias) + dv·v_leak."""

    def __init__(self, neurons: PotentialLIFNeurons, batch: int) -> None:
        self.keep, self.threshold = 1.0 - neurons.voltage_decay, neurons.threshold
        self.leak_term = neurons.voltage_decay * neurons.leak_potential
        self.reset_potential, self.subtract = neurons.reset_potential, neurons.reset_mode == "subtract"
        self.bias = neurons.bias.astype(np.float64)
        self.state = {"v": np.zeros((batch, neurons.size))}

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        voltage = self.state["v"]
        np.multiply(voltage, self.keep, out=voltage)
        voltage += a_in
        voltage += self.bias
        voltage += self.leak_term
        np.greater(voltage, self.threshold, out=spikes)
        fired = spikes.astype(bool)
        if self.subtract:
            voltage[fired] -= self.threshold - self.reset_potential
        else:
            voltage[fired] = self.reset_potential


class FixedPotentialLIF(FixedNeurons):
    """v = saturate(decay(v, dv) + (a_in << 6) + bias + leak); s = [v > vth << 6]; v ← v_reset << 6, or
    v −= (vth − v_reset) << 6."""

    def __init__(self, population: FixedRecord, batch: int) -> None:
        super().__init__(population, batch, ("v",))
        self.leak_term = int(population.leak)
        self.reset_value = int(population.v_reset) << ACTIVATION_SHIFT
        self.subtraction = (int(population.vth) - int(population.v_reset)) << ACTIVATION_SHIFT
        self.subtract = population.reset_mode == 1

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        voltage = self.state["v"]
        self.decay(voltage, self.voltage_keep)
        voltage += self.shifted_activation(a_in)
        voltage += self.bias
        voltage += self.leak_term
        np.clip(voltage, -STATE_MAX, STATE_MAX, out=voltage)
        np.greater(voltage, self.threshold, out=self.fired)
        if self.subtract:
            voltage[self.fired] -= self.subtraction
        else:
            voltage[self.fired] = self.reset_value
        np.copyto(spikes, self.fired)


# ------------------------------------------------------------------------------------------------ fixed point
def check_fixed(name: str, population: FixedRecord) -> None:
    """v_reset is 17-bit signed and below vth; leak is a 24-bit constant; reset_mode 0/1; du, subtraction unused."""
    v_reset = store_integer(population, "v_reset", f"{name}.v_reset (17-bit signed)", -THRESHOLD_MAX, THRESHOLD_MAX)
    if v_reset >= population.vth:
        raise NetSpecError(f"population {name!r}: v_reset {v_reset} must be below vth {population.vth}")
    store_integer(population, "leak", f"{name}.leak (24-bit signed)", -STATE_MAX, STATE_MAX)
    store_integer(population, "reset_mode", f"{name}.reset_mode (0 reset, 1 subtract)", 0, 1)
    store_integer(population, "du", f"{name}.du (unused by lif_potential)")
    store_integer(population, "subtraction", f"{name}.subtraction (unused by lif_potential)")


def _leak_term(neurons: PotentialLIFNeurons) -> float:
    """dv·v_leak with the 12-bit dv the integers use, in float units."""
    dv, _ = decay_code(neurons.voltage_decay, offset=0)
    return dv / DECAY_UNITY * neurons.leak_potential


def scale_bounds(neurons: PotentialLIFNeurons) -> list[tuple[str, float]]:
    """v_reset must fit vth's 17 bits, the leak term the 24-bit state."""
    leak = abs(_leak_term(neurons)) * (1 << ACTIVATION_SHIFT)
    return [
        (
            f"reset potential {neurons.reset_potential:g} (|v_reset| ≤ {THRESHOLD_MAX})",
            abs(neurons.reset_potential) / THRESHOLD_MAX,
        ),
        (f"leak term dv·v_leak {_leak_term(neurons):g} (24 bits)", leak / STATE_MAX),
    ]


def spike_preserving_range(neurons: PotentialLIFNeurons, positive: np.ndarray, negative: np.ndarray) -> None:
    """None: biases of this kind are never clipped."""
    return None


def integer_bias_bounds(neurons: PotentialLIFNeurons, positive: np.ndarray, negative: np.ndarray, scale: float) -> None:
    """None: never called, as no bias of this kind is clipped."""
    return None


def fixed_fields(name: str, neurons: PotentialLIFNeurons, scale: float) -> tuple[dict[str, int], list[QuantisedValue]]:
    """v_reset = round(v_reset / scale); leak = round(dv̂·v_leak / scale · 64); reset_mode its index."""
    vth = round(neurons.threshold / scale)
    v_reset = round(neurons.reset_potential / scale)
    if v_reset >= vth:
        raise NetSpecError(
            f"population {name!r}: the reset potential {neurons.reset_potential:.3g} rounds to the threshold at "
            f"scale {scale:.3g} (one a_in LSB), so a reset would not lower v"
        )
    leak_float = _leak_term(neurons)
    leak = round(leak_float / scale * (1 << ACTIVATION_SHIFT))
    unit = scale / (1 << ACTIVATION_SHIFT)
    report = [
        QuantisedValue(
            "reset_potential", np.array([neurons.reset_potential]), np.array([v_reset * scale]), 0, "17-bit signed"
        ),
        QuantisedValue("leak_term", np.array([leak_float]), np.array([leak * unit]), 0, "dv·v_leak, 24-bit signed"),
    ]
    return {"v_reset": v_reset, "leak": leak, "reset_mode": RESET_MODES.index(neurons.reset_mode)}, report


def from_fixed(population: FixedRecord, threshold: float, bias: np.ndarray) -> PotentialLIFNeurons:
    """v_reset·scale; v_leak = leak term / dv (0 where dv = 0, where the integers have no leak term either)."""
    decay = population.dv / DECAY_UNITY
    leak_term = population.leak * population.scale / (1 << ACTIVATION_SHIFT)
    return PotentialLIFNeurons(
        bias=bias,
        threshold=threshold,
        voltage_decay=decay,
        leak_potential=leak_term / decay if population.dv else 0.0,
        reset_potential=population.v_reset * population.scale,
        reset_mode=RESET_MODES[population.reset_mode],
        shape=population.shape,
    )


KIND = NeuronKind(
    name="lif_potential",
    node=PotentialLIFNeurons,
    params=PotentialLIFParams,
    step=potential_lif_step,
    variables=("v",),
    float_model=FloatPotentialLIF,
    fixed_model=FixedPotentialLIF,
    check_fixed=check_fixed,
    scale_bounds=scale_bounds,
    spike_preserving_range=spike_preserving_range,
    integer_bias_bounds=integer_bias_bounds,
    fixed_fields=fixed_fields,
    from_fixed=from_fixed,
)
