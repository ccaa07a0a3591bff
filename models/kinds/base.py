"""What every neuron kind provides (``NeuronKind``), and the pieces the kinds share.

A kind is one module of models.kinds holding, for one neuron model: its NetSpec node, its torch step (called by
every trainer), its reference float and fixed-point steps (called by models.reference), the checks of its
FixedPopulation fields and its quantisation rule (called by deploy.quantize). Everything here is torch-free at
import time (the torch steps only use tensor arithmetic), so models.netspec can list the kinds cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from lavaflow.models.bit_widths import ACTIVATION_SHIFT, DECAY_BITS, DECAY_MAX, DECAY_UNITY, THRESHOLD_SHIFT

if TYPE_CHECKING:
    from torch import Tensor

SpikeFn = Callable[["Tensor"], "Tensor"]


def heaviside(x: Tensor) -> Tensor:
    """1 where x ≥ 0: soft-reset neurons fire at v ≥ θ (IDE/SPIDE convention)."""
    return (x >= 0).to(x.dtype)


def strict_heaviside(x: Tensor) -> Tensor:
    """1 where x > 0: Lava's LIF (and Loihi's CUBA neuron) fires only above threshold."""
    return (x > 0).to(x.dtype)


class NeuronNode(Protocol):
    """What every kind's NetSpec node has: the fields a NetSpec reader may use without knowing the kind."""

    bias: np.ndarray  # (n,), added to the input current every step
    threshold: float
    voltage_decay: float
    shape: tuple[int, ...]  # (C, H, W) for conv layers; () means (n,)

    @property
    def size(self) -> int: ...

    @property
    def leak(self) -> float: ...


class ReferenceModel(Protocol):
    """One population of the reference simulator: named state arrays (B, n) and an in-place step."""

    state: dict[str, np.ndarray]

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        """Advance one step: a_in (B, n) float64 is this step's synaptic input; write 0/1 into ``spikes``."""


class FixedRecord(Protocol):
    """The FixedPopulation fields a kind reads (models.fixed defines the record; the kinds cannot import it)."""

    kind: str
    size: int
    vth: int
    dv: int
    bias_mant: np.ndarray
    bias_exp: int
    scale: float
    subtraction: int
    du: int
    refractory: int
    v_reset: int
    leak: int
    reset_mode: int
    shape: tuple[int, ...]


class QuantisedValue(NamedTuple):
    """A kind-specific value the quantiser reports: "<population>.<field>", its float and de-quantised values."""

    field: str
    original: np.ndarray
    restored: np.ndarray
    clipped: int
    note: str


@dataclass(frozen=True)
class NeuronKind:
    """Every part of one neuron kind; models.kinds.KINDS holds one per kind, keyed by ``name``.

    Attributes:
        name: the FixedPopulation ``kind`` ("soft_reset"), the key of every kind table.
        node: the NetSpec node class (serialised by its class name: keep it stable).
        params: the torch parameter NamedTuple of ``step``.
        step: the pure torch step ``step(current, state, params, spike_fn) -> (spikes, state)``.
        variables: the state a simulator records besides spikes, in Lava's Var names ("u", "v").
        float_model: (node, batch) → the reference's float64 model.
        fixed_model: (FixedPopulation, batch) → the reference's bit-accurate integer model.
        check_fixed: (population name, FixedPopulation) → None; checks and stores the kind's own fields.
        scale_bounds: node → [(reason, smallest scale)] the kind adds to the quantiser's scale choice.
        spike_preserving_range: (node, P, N) → per-neuron (lower, upper) bias range that changes no spike, or
            None where the kind has none (the quantiser then never clips its bias).
        integer_bias_bounds: (node, P̂, N̂, scale) → (silent, firing) in 24-bit units on the integer weights, or
            None; only called for a kind with a spike-preserving range.
        fixed_fields: (population name, node, scale) → (the FixedPopulation fields of this kind, their report).
        from_fixed: (FixedPopulation, threshold, bias) → the node whose values are the integers times their units.
    """

    name: str
    node: type
    params: type
    step: Callable[..., Any]
    variables: tuple[str, ...]
    float_model: Callable[[Any, int], ReferenceModel]
    fixed_model: Callable[[Any, int], ReferenceModel]
    check_fixed: Callable[[str, Any], None]
    scale_bounds: Callable[[Any], list[tuple[str, float]]]
    spike_preserving_range: Callable[[Any, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]
    integer_bias_bounds: Callable[[Any, np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray] | None]
    fixed_fields: Callable[[str, Any, float], tuple[dict[str, int], list[QuantisedValue]]]
    from_fixed: Callable[[Any, float, np.ndarray], Any]


CLIP_MARGIN = 2.0**-20  # relative widening of a spike-preserving bias range (deploy.quantize explains why)


def decay_code(decay: float, offset: int) -> tuple[int, int]:
    """round(decay·4096) − offset clipped to 0..4095, and 1 if it was clipped (Lava's 12-bit decays)."""
    code = round(decay * DECAY_UNITY) - offset
    clipped = min(max(code, 0), DECAY_MAX)
    return clipped, int(clipped != code)


class FixedNeurons:
    """Shared integer machinery of the fixed-point kinds: a_in conversion, bias, decay, saturation."""

    def __init__(self, population: FixedRecord, batch: int, names: tuple[str, ...]) -> None:
        shape = (batch, population.size)
        self.bias = population.bias_mant.astype(np.int64) << population.bias_exp  # Lava: bias_mant << bias_exp
        self.threshold = population.vth << THRESHOLD_SHIFT
        self.voltage_keep = DECAY_UNITY - population.dv
        self.state = {name: np.zeros(shape, dtype=np.int64) for name in names}
        self.activation = np.zeros(shape, dtype=np.int64)
        self.scratch = np.zeros(shape, dtype=np.int64)
        self.fired = np.zeros(shape, dtype=bool)

    def shifted_activation(self, a_in: np.ndarray) -> np.ndarray:
        """a_in << 6 as int64; a_in holds exact integers in float64, range-checked by the caller."""
        np.copyto(self.activation, a_in, casting="unsafe")
        np.left_shift(self.activation, ACTIVATION_SHIFT, out=self.activation)
        return self.activation

    def decay(self, values: np.ndarray, keep: int) -> None:
        """values ← sign·((|values|·keep) >> 12) in place: Lava's decay, rounding toward zero.

        For p = values·keep < 0, −((−p) >> 12) = (p + 4095) >> 12, so adding (p >> 63) & 4095 (4095 exactly
        where p < 0) before the arithmetic shift truncates toward zero without a sign array.
        """
        if keep == DECAY_UNITY:
            return
        np.multiply(values, keep, out=values)
        np.right_shift(values, 63, out=self.scratch)
        np.bitwise_and(self.scratch, DECAY_UNITY - 1, out=self.scratch)
        values += self.scratch
        np.right_shift(values, DECAY_BITS, out=values)
