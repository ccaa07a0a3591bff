"""Quantisation: a float NetSpec becomes a FixedNetSpec in Loihi 2 integer units, with a report of what was lost.

The scheme, per population p (integer rules in models.fixed):

- One ``scale`` (the float value of one a_in LSB) is shared by everything that adds into p's voltage, since Loihi
  sums all incoming connections in one integer state. It starts at min_c max|W_c| / 254 over incoming
  connections c: the connection with the smallest weights uses the full even mantissa range [−254, 254] at
  weight_exp 0. A finer scale would buy nothing (the 17-bit threshold is never the limit there) and would cost
  that connection a right shift.
- The scale is coarsened only as far as the threshold, the reset subtraction (17 bits), the bias (13-bit
  mantissa << up to 7, after the spike-preserving clip below) and the largest possible input require. That last
  bound makes fixed-point simulation safe: payloads are never negative, so |a_in| is at most the larger of the
  positive and negative row sums of the integer weights times the largest payload (plus one LSB per floored
  connection, below), and the scale is chosen so that this fits a_in's 18 bits. It is a worst case, not a typical
  one, the price of a guarantee that no data can overflow. If coarsening wipes out every weight of a connection,
  the network cannot be represented (its topology would change) and NetSpecError says which value is at fault.
- Every connection then gets the smallest weight_exp e ≥ −8 (Loihi's shift range; Lava's own
  ``optimize_weight_bits`` also goes negative) whose mantissas fit [−254, 254], so each keeps 7 significant bits
  however far the scale was coarsened. For e < 0 Lava's Dense right-shifts the summed W·x, which floors it: at
  most one a_in LSB per step and connection, ½ LSB on average, instead of the rounding error of every weight that
  short mantissas at e = 0 would add up (a coarsened scale left IDE's input weights 3-4 significant bits).
- Weights become even mantissas m = 2·round(w / (2·scale·2^e)) (Lava drops the LSB of mixed-sign weights), so the
  error is at most scale·2^e, half a step. Input connections quantise w·input_scale: one payload unit is
  input_scale intensity (current encoding: input_range/255) or one spike or event.
- The mantissas stay in [−254, 254]: −256 would turn into −255 where Lava infers the inhibitory sign mode.
- Decays become 12-bit: dv = round(voltage_decay·4096), CUBA du = round(current_decay·4096) − 1 (Lava adds 1),
  both clipped to 0..4095 and reported when clipped.
- Soft-reset biases beyond what any input can counter are clipped, never allowed to coarsen the scale: where
  the raw biases would coarsen it, every bias outside its neuron's spike-preserving range
  (``spike_preserving_bias_range``) is clipped to the range's edge. Such a neuron never fires (b ≤ −P) or fires
  at every step (b − N ≥ θ + λ·max(−u_rest, 0)) for every input within ``input_range``, before and after the
  clip, so no spike changes; its integer bias is pushed past the same bound on the integer weights, so this
  holds in fixed point too. The report counts these values as clipped and measures the bias error against the
  clipped values. CUBA biases are not clipped: a float range exists (b ≤ −P·S never fires, b > θ + N·S fires at
  every step, S = Σ_{k<T} (1 − current_decay)^k), but it depends on T, and Lava's current wraps mod 2^24 once
  |u| passes 2^23, so it does not carry over to fixed point without a wrap analysis.

The readout stays in float (it runs on the host from spike counts) and is copied unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import (
    ACTIVATION_MAX,
    ACTIVATION_SHIFT,
    BIAS_EXP_MAX,
    BIAS_MANT_MAX,
    DECAY_UNITY,
    PAYLOAD_MAX,
    THRESHOLD_MAX,
    WEIGHT_EXP_MAX,
    WEIGHT_EXP_MIN,
    FixedConnection,
    FixedNetSpec,
    FixedPopulation,
)
from lavaflow.models.kinds import kind_named, kind_of
from lavaflow.models.kinds.base import CLIP_MARGIN as CLIP_MARGIN  # re-exported: its old home
from lavaflow.models.kinds.base import decay_code
from lavaflow.models.netspec import INPUT, Connection, Conv, Dense, NetSpec, Neurons, Sparse, check_real

MANTISSA_LIMIT = 254  # the quantiser's symmetric even range [−254, 254] (see the module docstring)
RESCALE = "Rescale the population (divide its threshold, reset potential, bias and incoming weights alike)."
MAX_WEIGHT_EXP = WEIGHT_EXP_MAX  # Loihi's weight exponent is 4-bit signed: W·x << up to 7 bits
MIN_WEIGHT_EXP = WEIGHT_EXP_MIN  # ... and a right shift of W·x by up to 8 bits
INPUT_REASON = f"largest possible a_in (≤ {ACTIVATION_MAX}, 18 bits)"
INPUT_ADVICE = "Lower input_range, or shrink the largest incoming weights (e.g. feedback) relative to the others."


@dataclass(frozen=True)
class TensorError:
    """How one quantised tensor differs from its float original, in the original float units.

    Attributes:
        name: "population.threshold", "connection 0 (input → hidden).weight", ...
        size: number of values.
        max_abs_error: max |x − x̂| over the values, x̂ the de-quantised value.
        relative_error: max_abs_error / max |x| (0 when every x is 0).
        clipped: values that hit the edge of their integer range.
        zeroed: non-zero values that became 0.
        note: why values were clipped, or the integer format used.
    """

    name: str
    size: int
    max_abs_error: float
    relative_error: float
    clipped: int = 0
    zeroed: int = 0
    note: str = ""


@dataclass(frozen=True)
class QuantizationReport:
    """Per-tensor errors plus the chosen scales and exponents; ``str()`` gives a table, ``to_dict()`` JSON."""

    tensors: tuple[TensorError, ...]
    scales: dict[str, float]  # population → float value of one a_in LSB
    weight_exponents: dict[str, int]  # connection name → weight_exp
    notes: tuple[str, ...] = ()  # scale coarsening, input-range warnings

    @property
    def max_relative_error(self) -> float:
        return max((t.relative_error for t in self.tensors), default=0.0)

    @property
    def clipped(self) -> int:
        return sum(t.clipped for t in self.tensors)

    def to_dict(self) -> dict[str, object]:
        return {
            "tensors": [asdict(t) for t in self.tensors],
            "scales": dict(self.scales),
            "weight_exponents": dict(self.weight_exponents),
            "notes": list(self.notes),
            "max_relative_error": self.max_relative_error,
            "clipped": self.clipped,
        }

    def __str__(self) -> str:
        width = max([len(t.name) for t in self.tensors] + [6])
        lines = [
            f"{'tensor':<{width}}  {'size':>7}  {'max abs err':>11}  {'rel err':>8}  {'clipped':>7}  "
            f"{'zeroed':>6}  note"
        ]
        for t in self.tensors:
            lines.append(
                f"{t.name:<{width}}  {t.size:>7}  {t.max_abs_error:>11.3g}  {t.relative_error:>8.2%}  "
                f"{t.clipped:>7}  {t.zeroed:>6}  {t.note}"
            )
        lines.append(
            "scales (float value of one a_in LSB): "
            + ", ".join(f"{name} {scale:.4g}" for name, scale in self.scales.items())
        )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def quantize(spec: NetSpec, *, input_range: float = 1.0) -> tuple[FixedNetSpec, QuantizationReport]:
    """Map a float NetSpec onto Loihi 2 integers (models.fixed); pure: ``spec`` is not modified.

    Args:
        spec: the trained network.
        input_range: the largest input value. Current encoding: the intensity that maps to payload 255.
            Events: the largest event count per pixel and step that the a_in bound plans for (one payload unit
            is one event). Rate (0/1 spikes): ignored.

    Returns:
        The FixedNetSpec and a report of the error introduced in every tensor. Soft-reset biases that would
        coarsen the scale are clipped to their spike-preserving range (``spike_preserving_bias_range``), which
        changes no spike in float or fixed point; the report counts them as clipped and says so in its notes.

    Raises:
        NetSpecError: non-finite values, a bad ``input_range``, or a value that cannot be represented at any
            scale that keeps the weights (a threshold beyond 17 bits, a bias beyond 13 + 7 bits, inputs whose
            worst case spans more than 18 bits, a reset subtraction that rounds to zero).
    """
    spec.validate()  # arrays are mutable: a NaN written in after the build is caught here
    input_range = _input_range(input_range)
    input_scale = _input_scale(spec, input_range)
    tensors: list[TensorError] = []
    notes: list[str] = []
    populations: dict[str, FixedPopulation] = {}
    connections: dict[int, FixedConnection] = {}
    exponents: dict[str, int] = {}
    for name, neurons in spec.populations.items():
        inputs = _incoming(spec, name, input_range)
        scale, bias = _choose_scale(name, neurons, inputs, notes)
        populations[name] = _quantize_neurons(name, neurons, bias, inputs, scale, tensors)
        for incoming in inputs:
            fixed, error = _quantize_connection(incoming, scale)
            connections[incoming.index] = fixed
            exponents[incoming.label] = fixed.weight_exp
            tensors.append(error)
    fixed_spec = FixedNetSpec(
        input=spec.input,
        input_scale=input_scale,
        populations=populations,
        connections=tuple(connections[i] for i in range(len(spec.connections))),
        readout=spec.readout,
        time_steps=spec.time_steps,
        metadata=dict(spec.metadata),
    )
    scales = {name: p.scale for name, p in populations.items()}
    return fixed_spec, QuantizationReport(tuple(tensors), scales, exponents, tuple(notes))


def spike_preserving_bias_range(spec: NetSpec, *, input_range: float = 1.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per population, per neuron, the range [lower, upper] to which a bias can be clipped without changing a spike.

    For soft-reset neurons (v ← λ·v + I + b;  s = [v ≥ θ];  v ← v − s·D,  D = θ − u_rest,  λ ∈ [0, 1]), let P and
    N ≥ 0 bound the synaptic input of a neuron in every step, −N ≤ I ≤ P: P = Σ_c Σ_j max(W_cj, 0)·(largest payload
    of c's source) in float units, N likewise with max(−W_cj, 0). Payloads are never negative, so these are the
    bounds for every input within ``input_range`` (the quantiser's own input plan: current intensities in
    [0, input_range], event counts up to ⌊input_range⌋, 0/1 spikes) and every spike train of the sources.

    - Silent, b ≤ −P: then v ≤ 0 at every step. Induction: if the voltage left by step t − 1 is ≤ 0, so is
      λ·v (λ ≥ 0), and the new v ≤ 0 + P + b ≤ 0 < θ: no spike, no reset, v stays ≤ 0. (θ = 0 would need v < 0,
      which the margin below gives.) Any two biases ≤ −P thus give the same spike train: none.
    - Firing, b − N ≥ θ + λ·u⁻ with u⁻ = max(−u_rest, 0): then s = 1 at every step. Induction on the voltage
      left after the reset, r ≥ min(u_rest, 0) (true for r = 0 at the start): the new v = λ·r + I + b ≥
      −λ·u⁻ + (b − N) ≥ θ, so the neuron fires and leaves r = v − D ≥ θ − D = u_rest ≥ min(u_rest, 0).
      Any two such biases give the same spike train: all ones. The condition is the least that works for every
      λ, T and input: the first step alone needs b − N ≥ θ (with I = −N), and with I = −N held, firing every
      step settles to v = θ + (b − N − θ − λ·u⁻)/(1 − λ) (λ < 1; for λ = 1, v falls by D − (b − N) a step), so
      any smaller b − N eventually misses a spike when u_rest < 0. (2·D is not enough when u_rest > θ/2: then
      b − N must still reach θ > 2·D at the first step.)

    The range is widened by a margin of 2^−20·(P + N + θ + D) on both sides, which makes the silent case strict
    (v < 0) and absorbs float rounding in simulators. CUBA populations get (−inf, inf): the quantiser does not clip
    them (see the module docstring).

    Returns:
        population name → (lower, upper), two float64 arrays of the population's size.
    """
    spec.validate()
    input_range = _input_range(input_range)
    ranges = {}
    for name, neurons in spec.populations.items():
        bounds = _spike_preserving_range(neurons, _incoming(spec, name, input_range))
        if bounds is None:
            bounds = (np.full(neurons.size, -np.inf), np.full(neurons.size, np.inf))
        ranges[name] = bounds
    return ranges


def exact_input_range(inputs: np.ndarray) -> float:
    """The ``input_range`` whose 8-bit payloads hold every current-encoded value of ``inputs`` exactly.

    Intensities that are multiples of 1/n, n ≤ 255 (sklearn digits: n = 16; 8-bit images: 255), with at most K
    steps, get payload k·⌊255/K⌋ for the value k/n: no input rounding at all (with input_range 1, a digit's 1/16
    would be 15.94 payload units, the largest error left between float and fixed point). Other values get 1.0, or
    their largest value where that exceeds 1. Only the values are looked at, never labels.
    """
    values = np.unique(np.asarray(inputs, dtype=np.float64))
    largest = float(values.max(initial=0.0))
    if largest <= 0 or values.min() < 0 or values.size > 4096 or not np.all(np.isfinite(values)):
        return max(largest, 1.0) if np.isfinite(largest) else 1.0
    for levels in range(1, PAYLOAD_MAX + 1):
        steps = values * levels
        if np.allclose(steps, np.rint(steps), rtol=0, atol=1e-6):
            top = round(largest * levels)
            return PAYLOAD_MAX / (levels * (PAYLOAD_MAX // top))
    return max(largest, 1.0)


def dequantize(spec: FixedNetSpec) -> NetSpec:
    """The float NetSpec whose values are exactly the integers of ``spec`` times their units (for tests, reports).

    Where the float products are exact (dyadic scales), ``quantize(dequantize(spec))`` gives back ``spec``.
    """
    populations: dict[str, Neurons] = {}
    for name, p in spec.populations.items():
        threshold = p.vth * p.scale
        bias = p.bias_mant.astype(np.float64) * 2.0**p.bias_exp * p.scale / (1 << ACTIVATION_SHIFT)
        populations[name] = kind_named(p.kind).from_fixed(p, threshold, bias)
    connections = []
    for c in spec.connections:
        unit = spec.input_scale if c.source == INPUT else 1.0
        weight = c.weight.astype(np.float64) * (spec.populations[c.target].scale * 2.0**c.weight_exp / unit)
        synapse: Dense | Conv | Sparse
        if c.sparse is not None:
            synapse = Sparse(weight, c.sparse.rows, c.sparse.cols, c.sparse.shape)
        elif c.conv is None:
            synapse = Dense(weight)
        else:
            geometry = c.conv
            synapse = Conv(
                weight, geometry.input_shape, geometry.stride, geometry.padding, geometry.dilation, geometry.groups
            )
        connections.append(Connection(c.source, c.target, synapse, c.delay_steps))
    return NetSpec(spec.input, populations, tuple(connections), spec.readout, spec.time_steps, dict(spec.metadata))


# --------------------------------------------------------------------------------------------------- scale
@dataclass(frozen=True)
class _Incoming:
    """A connection into the population being quantised, with its payload unit and largest payload."""

    index: int
    connection: Connection
    label: str
    unit: float  # float input per payload unit: input_scale for the input, 1 for spikes
    payload_max: int  # the largest payload: 255 (current), the planned event count, or 1 (spikes)

    @property
    def effective(self) -> np.ndarray:
        """Float current per payload unit: what the integer weight approximates in a_in LSBs × scale."""
        return self.connection.synapse.weight.astype(np.float64) * self.unit

    def exponent(self, scale: float) -> int:
        """Its weight_exp at ``scale`` (``_weight_exponent`` of its largest effective weight)."""
        return _weight_exponent(float(np.abs(self.effective).max(initial=0)), scale, self.label)


def _input_range(input_range: object) -> float:
    """``input_range`` as a positive float (numpy scalars welcome), or NetSpecError."""
    value = check_real("input_range", input_range, 0.0)
    if value <= 0:
        raise NetSpecError(f"input_range must be positive, got {value:g}")
    return value


def _input_scale(spec: NetSpec, input_range: float) -> float:
    """The float intensity of one input payload unit."""
    return input_range / PAYLOAD_MAX if spec.input.encoding == "current" else 1.0


def _incoming(spec: NetSpec, name: str, input_range: float) -> list[_Incoming]:
    """The connections into population ``name``, with the input plan of ``quantize``."""
    input_scale = _input_scale(spec, input_range)
    input_payload_max = {"current": PAYLOAD_MAX, "rate": 1, "events": max(1, math.floor(input_range))}
    inputs = []
    for index, connection in enumerate(spec.connections):
        if connection.target == name:
            from_input = connection.source == INPUT
            unit = input_scale if from_input else 1.0
            payload_max = input_payload_max[spec.input.encoding] if from_input else 1
            inputs.append(_Incoming(index, connection, _label(index, connection), unit, payload_max))
    return inputs


@dataclass(frozen=True, eq=False)
class _Bias:
    """The float bias a population is quantised with: its own, or clipped to the spike-preserving range."""

    raw: np.ndarray  # the NetSpec's bias, float64
    values: np.ndarray  # what is quantised: ``raw``, or ``raw`` clipped
    low: np.ndarray  # bool: raised to −P, a neuron that never fires
    high: np.ndarray  # bool: lowered to N + θ + λ·u⁻, a neuron that fires at every step

    @classmethod
    def unclipped(cls, bias: np.ndarray) -> _Bias:
        raw = bias.astype(np.float64)
        return cls(raw, raw, np.zeros(raw.shape, dtype=bool), np.zeros(raw.shape, dtype=bool))

    @property
    def clipped(self) -> int:
        return int(np.count_nonzero(self.low) + np.count_nonzero(self.high))

    def reason(self) -> str:
        largest = float(np.abs(self.values).max(initial=0))
        clip = " after the spike-preserving clip" if self.clipped else ""
        return f"bias (largest |b| {largest:.3g}{clip}; bias_mant ≤ {BIAS_MANT_MAX} << {BIAS_EXP_MAX})"


def _spike_preserving_range(neurons: Neurons, inputs: list[_Incoming]) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) per neuron, or None for a kind whose biases are never clipped (CUBA): the kind's rule
    (models.kinds) on this population's input bounds P and N (spike_preserving_bias_range)."""
    positive, negative = _input_bounds(inputs, neurons.size)
    return kind_of(neurons).spike_preserving_range(neurons, positive, negative)


def _choose_scale(name: str, neurons: Neurons, inputs: list[_Incoming], notes: list[str]) -> tuple[float, _Bias]:
    """The finest scale at which weights, threshold, subtraction, bias and the largest a_in all fit, and the bias
    to quantise: the population's own, or, where that would coarsen the scale, clipped to its spike-preserving
    range."""
    largest = [(float(np.abs(i.effective).max(initial=0)), i.label) for i in inputs]
    nonzero = [(value, label) for value, label in largest if value > 0]
    fine = min(value for value, _ in nonzero) / MANTISSA_LIMIT if nonzero else 0.0
    # Each bound is value / integer limit: round(value / scale) then never exceeds the limit.
    bounds = [
        (
            f"threshold {neurons.threshold:g} (vth ≤ {THRESHOLD_MAX}, 17 bits)",
            RESCALE,
            neurons.threshold / THRESHOLD_MAX,
        ),
        (INPUT_REASON, INPUT_ADVICE, _largest_input(inputs) / ACTIVATION_MAX),
    ]
    if nonzero:  # the largest weight must fit a mantissa at Loihi's largest weight exponent
        widest, label = max(nonzero)
        bounds.append(
            (
                f"largest weight {widest:.3g} of {label} (≤ {MANTISSA_LIMIT} << {MAX_WEIGHT_EXP})",
                "Shrink the largest weights relative to the population's smallest ones (or its threshold).",
                widest / (MANTISSA_LIMIT * 2.0**MAX_WEIGHT_EXP),
            )
        )
    bounds += [(reason, RESCALE, bound) for reason, bound in kind_of(neurons).scale_bounds(neurons)]  # soft reset: D
    bias = _Bias.unclipped(neurons.bias)
    spike_range = _spike_preserving_range(neurons, inputs)
    if spike_range is not None:
        lower, upper = spike_range
        low, high = bias.raw < lower, bias.raw > upper
        if low.any() or high.any():
            # Clip only where the raw biases would coarsen the scale that everything else sets.
            other, _, _ = _settle(name, neurons, inputs, None, fine, bounds)
            excess = _bias_excess(bias, neurons, inputs, other) if other > 0 else math.inf
            if excess > 1.0:
                bias = _Bias(bias.raw, np.clip(bias.raw, lower, upper), low, high)
                notes.append(
                    f"{name}: {bias.clipped} of {neurons.size} biases clipped to their spike-preserving range "
                    f"(unclipped, they would coarsen the scale ×{excess:.3g}): {np.count_nonzero(low)} to −P, a "
                    f"neuron that never fires, {np.count_nonzero(high)} to N + θ + λ·max(−u_rest, 0), one that "
                    f"fires at every step (P, N: its largest excitatory and inhibitory input per step within "
                    f"input_range). Clipped or not, such a neuron's spikes are the same for every input, in float "
                    f"and in fixed point (see spike_preserving_bias_range)"
                )
    scale, reason, advice = _settle(name, neurons, inputs, bias, fine, bounds)
    if scale == 0.0:
        return 1.0, bias  # nothing to represent: no weights, threshold, subtraction or bias
    if nonzero and scale > fine:  # fine is 0 where the smallest weights underflow (denormals): they vanish too
        for value, label in nonzero:  # a connection that vanishes entirely changes the network: refuse
            if _even_round(value / (scale * 2.0**MIN_WEIGHT_EXP)) == 0:
                raise NetSpecError(
                    f"population {name!r}: the {reason} needs one a_in LSB to be worth at least {scale:.3g}, but "
                    f"then every weight of {label} rounds to zero even at weight_exp {MIN_WEIGHT_EXP} (the largest "
                    f"is {value:.3g}): the population's values span more than its integers can hold. {advice}"
                )
        coarsened = scale / fine if fine > 0.0 else math.inf
        lost = math.log2(coarsened) + MIN_WEIGHT_EXP  # bits beyond what negative weight exponents recover
        notes.append(
            f"{name}: scale coarsened ×{coarsened:.3g} so the {reason} fits; "
            + (
                f"weights lose {lost:.1f} bits (weight_exp stops at {MIN_WEIGHT_EXP})"
                if lost > 0
                else "the connections keep their 7-bit mantissas through negative weight exponents (W·x floored)"
            )
        )
    return _snap_to_weight_grid(scale, neurons, bias, inputs), bias


def _snap_to_weight_grid(scale: float, neurons: Neurons, bias: _Bias, inputs: list[_Incoming]) -> float:
    """Where the incoming weights already lie on one dyadic grid (slayer trains on Loihi's 8-bit grid), the scale
    up to 2× coarser on which every weight is an exact even mantissa, so the trained network reaches Loihi
    unchanged instead of re-rounded onto a grid that does not line up; otherwise ``scale``."""
    grids = [_dyadic_grid(i.connection.synapse.weight) for i in inputs]
    if not inputs or any(grid is None for grid in grids):
        return scale
    steps = [grid * i.unit for grid, i in zip(grids, inputs, strict=True)]  # float current of one grid step
    finest = min(steps)
    if finest < np.finfo(np.float64).tiny or max(steps) / finest > 2.0**60:  # denormal grids: nothing to snap to
        return scale
    if any(abs(math.log2(step / finest) - round(math.log2(step / finest))) > 1e-9 for step in steps):
        return scale  # the grids are not powers of two apart: no common scale makes them all exact
    snapped = finest * 2.0 ** -math.floor(math.log2(finest / scale) + 1e-12)
    for incoming in inputs:
        mantissa = incoming.effective / (snapped * 2.0 ** incoming.exponent(snapped))
        if not np.allclose(mantissa, _even_round(mantissa), rtol=0, atol=1e-6):
            return scale
    if _largest_integer_input(inputs, snapped) > ACTIVATION_MAX or _bias_excess(bias, neurons, inputs, snapped) > 1:
        return scale
    return snapped


def _dyadic_grid(weight: np.ndarray) -> float | None:
    """The largest power of two q with every weight an integer multiple of q, if the weights have at most
    12 significant bits (a trained grid such as slayer's); None for free-valued or all-zero weights."""
    largest = float(np.abs(weight).max(initial=0))
    if largest == 0 or not np.all(np.isfinite(weight)):
        return None
    top = math.floor(math.log2(largest))
    for exponent in range(top, top - 13, -1):
        multiples = weight / 2.0**exponent  # exact: dividing by a power of two
        if np.array_equal(multiples, np.rint(multiples)):
            return 2.0**exponent
    return None


def _settle(
    name: str,
    neurons: Neurons,
    inputs: list[_Incoming],
    bias: _Bias | None,
    fine: float,
    bounds: list[tuple[str, str, float]],
) -> tuple[float, str, str]:
    """The scale ``max(fine, bounds, bias bound)``, coarsened until the integer a_in and bias fit; with the
    reason and advice of the binding bound. ``bias`` None leaves the bias out."""
    if bias is not None:
        largest = float(np.abs(bias.values).max(initial=0)) * (1 << ACTIVATION_SHIFT)
        bounds = [*bounds, (bias.reason(), RESCALE, largest / (BIAS_MANT_MAX << BIAS_EXP_MAX))]
    reason, advice, bound = max(bounds, key=lambda item: item[2])
    scale = max(fine, bound)
    if scale == 0.0:
        return scale, reason, advice
    # The float bounds ignore rounding (up to 1 LSB per weight, and a clipped bias is pushed past its bound on
    # the integer weights): confirm on the integers, and coarsen in steps of at least 0.1% so that rounding
    # boundaries are crossed.
    for _ in range(256):
        input_excess = _largest_integer_input(inputs, scale) / ACTIVATION_MAX
        bias_excess = 0.0 if bias is None else _bias_excess(bias, neurons, inputs, scale)
        if max(input_excess, bias_excess) <= 1.0:
            return scale, reason, advice
        if input_excess >= bias_excess:
            reason, advice = INPUT_REASON, INPUT_ADVICE
        elif bias is not None:
            reason, advice = bias.reason(), RESCALE
        scale *= max(input_excess, bias_excess, 1.001)
    raise NetSpecError(f"population {name!r}: no scale keeps the {reason} in its integer range. {advice}")


def _input_bounds(inputs: list[_Incoming], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, N) per neuron in float units: the largest positive and negative synaptic input of one step.

    Payloads are never negative, so a_in is largest with every excitatory input at its maximum and every
    inhibitory one silent (or the reverse): the positive and negative row sums times the largest payloads.
    """
    positive, negative = np.zeros(size), np.zeros(size)
    for incoming in inputs:
        positive += _row_sums(np.maximum(incoming.effective, 0), incoming.connection) * incoming.payload_max
        negative += _row_sums(np.maximum(-incoming.effective, 0), incoming.connection) * incoming.payload_max
    return positive, negative


def _integer_input_bounds(inputs: list[_Incoming], scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """As ``_input_bounds``, in a_in LSBs, on the integer weights (mantissa << exponent) quantised at ``scale``;
    a negative exponent floors W·x, which can take it one LSB further down."""
    positive, negative = np.zeros(size), np.zeros(size)
    for incoming in inputs:
        exponent = incoming.exponent(scale)
        integer = _even_round(incoming.effective / (scale * 2.0**exponent)) * 2.0**exponent * incoming.payload_max
        positive += _row_sums(np.maximum(integer, 0), incoming.connection)
        negative += _row_sums(np.maximum(-integer, 0), incoming.connection) + (exponent < 0)  # floor: −1 at most
    return positive, negative


def _largest_input(inputs: list[_Incoming]) -> float:
    """max over neurons of |a_in| in float units when every input sits at 0 or its largest payload."""
    if not inputs:
        return 0.0
    positive, negative = _input_bounds(inputs, inputs[0].connection.synapse.out_size)
    return float(np.maximum(positive, negative).max(initial=0))


def _largest_integer_input(inputs: list[_Incoming], scale: float) -> float:
    """As ``_largest_input``, on the integer weights (mantissa << exponent) quantised at ``scale``."""
    if not inputs:
        return 0.0
    positive, negative = _integer_input_bounds(inputs, scale, inputs[0].connection.synapse.out_size)
    return float(np.maximum(positive, negative).max(initial=0))


def _even_round(values: np.ndarray | float) -> np.ndarray | float:
    """Nearest even integer (ties to the even half, as np.rint): Lava's mixed-sign weights have no LSB."""
    return 2.0 * np.rint(np.asarray(values, dtype=np.float64) / 2.0)


def _weight_exponent(largest: float, scale: float, label: str) -> int:
    """The smallest e ≥ MIN_WEIGHT_EXP whose even mantissas of ``largest`` fit in [−254, 254]."""
    if largest == 0:
        return 0
    exponent = MIN_WEIGHT_EXP
    while _even_round(largest / (scale * 2.0**exponent)) > MANTISSA_LIMIT:
        exponent += 1
        if exponent > MAX_WEIGHT_EXP:
            raise NetSpecError(  # _choose_scale bounds the weights, so this is reached only by a broken invariant
                f"{label}: weights {largest:.3g} exceed {MANTISSA_LIMIT} << {MAX_WEIGHT_EXP} at scale {scale:.3g}"
            )
    return exponent


# ------------------------------------------------------------------------------------------------- tensors
def _quantize_connection(incoming: _Incoming, scale: float) -> tuple[FixedConnection, TensorError]:
    connection = incoming.connection
    effective = incoming.effective
    exponent = incoming.exponent(scale)
    step = scale * 2.0**exponent
    mantissa = _even_round(effective / step).astype(np.int64)
    restored = mantissa * (step / incoming.unit)
    synapse = connection.synapse
    conv = synapse if isinstance(synapse, Conv) else None
    sparse = synapse if isinstance(synapse, Sparse) else None
    fixed = FixedConnection(
        connection.source, connection.target, mantissa, exponent, connection.delay_steps, conv, sparse
    )
    weight = connection.synapse.weight
    shift = f" << {exponent}" if exponent >= 0 else f", W·x >> {-exponent} (floor)"
    error = _error(f"{incoming.label}.weight", weight, restored, note=f"8-bit even mantissa{shift}")
    return fixed, error


def _quantize_neurons(
    name: str, neurons: Neurons, bias: _Bias, inputs: list[_Incoming], scale: float, tensors: list[TensorError]
) -> FixedPopulation:
    vth = round(neurons.threshold / scale)
    if vth == 0 and neurons.threshold > 0:
        raise NetSpecError(
            f"population {name!r}: the threshold {neurons.threshold:.3g} rounds to zero at scale {scale:.3g} (one "
            f"a_in LSB, coarsened for the bias or the largest input), so every neuron would fire at any input. "
            f"{RESCALE}"
        )
    tensors.append(
        _error(f"{name}.threshold", np.array([neurons.threshold]), np.array([vth * scale]), note="vth, 17-bit unsigned")
    )
    bias_mant, bias_exp = _quantize_bias(bias, _bias_units(bias, neurons, inputs, scale), scale)
    restored_bias = bias_mant * (2.0**bias_exp * scale / (1 << ACTIVATION_SHIFT))
    note = f"13-bit mantissa << {bias_exp}"
    if bias.clipped:
        note += (
            f"; spike-preserving clip: {np.count_nonzero(bias.low)} never fire, {np.count_nonzero(bias.high)} fire "
            f"every step, for any input (errors vs the clipped values)"
        )
    tensors.append(_error(f"{name}.bias", bias.values, restored_bias, clipped=bias.clipped, note=note))
    dv, dv_clipped = _decay_code(neurons.voltage_decay, offset=0)
    tensors.append(
        _error(
            f"{name}.voltage_decay",
            np.array([neurons.voltage_decay]),
            np.array([dv / DECAY_UNITY]),
            clipped=dv_clipped,
            note="dv/4096" + (", 1.0 is beyond 12 bits" if dv_clipped else ""),
        )
    )
    common = {
        "size": neurons.size,
        "vth": vth,
        "dv": dv,
        "bias_mant": bias_mant,
        "bias_exp": bias_exp,
        "scale": scale,
        "shape": tuple(neurons.shape),
    }
    kind = kind_of(neurons)
    fields, values = kind.fixed_fields(name, neurons, scale)  # soft reset: subtraction; cuba: du
    for value in values:
        tensors.append(
            _error(f"{name}.{value.field}", value.original, value.restored, clipped=value.clipped, note=value.note)
        )
    return FixedPopulation(kind=kind.name, **fields, **common)


def _bias_units(bias: _Bias, neurons: Neurons, inputs: list[_Incoming], scale: float) -> np.ndarray:
    """The bias in 24-bit voltage units (1/64 of an a_in LSB) at ``scale``, float64.

    A clipped neuron's value is pushed past the integer form of its bound, computed on the integer weights,
    threshold, subtraction and decay, so that it never fires (or fires at every step) in fixed point too. On
    integers, with the voltage left by a step r, decay(r) ≤ 0 for r ≤ 0 and decay(r) ≥ λ̂·m for r ≥ m, m ≤ 0
    (decay rounds toward zero), and saturation keeps v on the same side of vth << 6, so the float proof of
    ``spike_preserving_bias_range`` carries over: never fires if b ≤ −64·P̂ − 1; fires at every step if
    b − 64·N̂ ≥ 64·vth + λ̂·64·max(subtraction − vth, 0), λ̂ = (4096 − dv) / 4096. The push is a rounding-sized
    step (P̂·scale and N̂·scale differ from P and N by the weights' rounding only), and it makes every clipped
    neuron silent or firing in fixed point exactly as it is in float, whatever the rounding.
    """
    units = bias.values * ((1 << ACTIVATION_SHIFT) / scale)
    if not bias.clipped:
        return units
    positive, negative = _integer_input_bounds(inputs, scale, neurons.size)
    integer_bounds = kind_of(neurons).integer_bias_bounds(neurons, positive, negative, scale)
    if integer_bounds is None:  # only a kind with a spike-preserving range clips its biases
        raise NetSpecError(f"neuron kind {kind_of(neurons).name!r} clipped a bias but has no integer bound for it")
    silent, firing = integer_bounds
    units = units.copy()
    units[bias.low] = np.minimum(units[bias.low], silent[bias.low])
    units[bias.high] = np.maximum(units[bias.high], firing[bias.high])
    return units


def _bias_mantissas(bias: _Bias, units: np.ndarray, exponent: int) -> np.ndarray:
    """round(units / 2^exponent), rounded away from the range for clipped neurons so they keep their bound."""
    step = 2.0**exponent
    mantissa = np.rint(units / step)
    mantissa[bias.low] = np.floor(units[bias.low] / step)
    mantissa[bias.high] = np.ceil(units[bias.high] / step)
    return mantissa


def _bias_excess(bias: _Bias, neurons: Neurons, inputs: list[_Incoming], scale: float) -> float:
    """How far the bias mantissas at the largest exponent exceed 13 bits at ``scale`` (≤ 1: they fit)."""
    mantissa = _bias_mantissas(bias, _bias_units(bias, neurons, inputs, scale), BIAS_EXP_MAX)
    return float(np.abs(mantissa).max(initial=0)) / BIAS_MANT_MAX


def _quantize_bias(bias: _Bias, units: np.ndarray, scale: float) -> tuple[np.ndarray, int]:
    """bias_mant << bias_exp in 24-bit voltage units (1/64 of an a_in LSB), with the smallest exponent that fits."""
    for exponent in range(BIAS_EXP_MAX + 1):
        mantissa = _bias_mantissas(bias, units, exponent)
        if np.abs(mantissa).max(initial=0) <= BIAS_MANT_MAX:
            return mantissa.astype(np.int64), exponent
    # _choose_scale bounds the bias, so this is reached only by a broken invariant
    largest = float(np.abs(units).max(initial=0))
    raise NetSpecError(f"bias {largest:.3g} (24-bit units) exceeds 13 + 7 bits at scale {scale:.3g}")


_decay_code = decay_code  # Lava's 12-bit decay codes, shared with the kinds (models.kinds.base)


def _error(name: str, original: np.ndarray, restored: np.ndarray, *, clipped: int = 0, note: str = "") -> TensorError:
    original = np.asarray(original, dtype=np.float64)
    difference = np.abs(original - restored)
    largest = float(np.abs(original).max(initial=0))
    max_abs = float(difference.max(initial=0))
    zeroed = int(np.count_nonzero((original != 0) & (restored == 0)))
    return TensorError(name, int(original.size), max_abs, max_abs / largest if largest else 0.0, clipped, zeroed, note)


# --------------------------------------------------------------------------------------------------- helpers
def _label(index: int, connection: Connection) -> str:
    return f"connection {index} ({connection.source} → {connection.target})"


def _row_sums(weight: np.ndarray, connection: Connection) -> np.ndarray:
    """Σ of ``weight`` per target neuron; for a conv, the kernel sum of each output channel at every position
    (an upper bound: zero padding only removes terms). A grouped kernel (C_out, C_in/groups, kH, kW) holds exactly
    the taps of each output channel, so the same sum holds for any groups and dilation. A sparse weight holds its
    non-zeros, summed per row."""
    synapse = connection.synapse
    if isinstance(synapse, Sparse):
        return np.bincount(synapse.rows, weights=weight, minlength=synapse.out_size)
    if not isinstance(synapse, Conv):
        return weight.sum(axis=1)
    per_channel = weight.reshape(weight.shape[0], -1).sum(axis=1)
    return np.repeat(per_channel, connection.synapse.out_size // weight.shape[0])
