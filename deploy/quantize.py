"""Quantisation: a float NetSpec becomes a FixedNetSpec in Loihi 2 integer units, with a report of what was lost.

The scheme, per population p (integer rules in models.fixed):

- One ``scale`` (the float value of one a_in LSB) is shared by everything that adds into p's voltage, since Loihi
  sums all incoming connections in one integer state. It starts at min_c max|W_c| / 254 over incoming
  connections c: the connection with the smallest weights uses the full even mantissa range [−254, 254] at
  weight_exp 0, and every other connection gets the smallest weight_exp e ≥ 0 that fits its mantissas, so each
  keeps at least 7 significant bits. A finer scale would need e < 0 for that connection, whose right shift floors
  its W·x every step (a bias of −½ LSB per step); a coarser one wastes its bits.
- The scale is coarsened only as far as the threshold, the reset subtraction (17 bits), the bias (13-bit
  mantissa << up to 7) and the largest possible input require. That last bound makes fixed-point simulation
  safe: payloads are never negative, so |a_in| is at most the larger of the positive and negative row sums of the
  integer weights times the largest payload, and the scale is chosen so that this fits a_in's 18 bits. It is a
  worst case, not a typical one: on 64 current-encoded inputs it costs the input weights about 3 bits, the price
  of a guarantee that no data can overflow. If coarsening wipes out every weight of a connection, the network
  cannot be represented (its topology would change) and NetSpecError says which value is at fault.
- Weights become even mantissas m = 2·round(w / (2·scale·2^e)) (Lava drops the LSB of mixed-sign weights), so the
  error is at most scale·2^e, half a step. Input connections quantise w·input_scale: one payload unit is
  input_scale intensity (current encoding: input_range/255) or one spike or event.
- The mantissas stay in [−254, 254]: −256 would turn into −255 where Lava infers the inhibitory sign mode.
- Decays become 12-bit: dv = round(voltage_decay·4096), CUBA du = round(current_decay·4096) − 1 (Lava adds 1),
  both clipped to 0..4095 and reported when clipped.

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
    DECAY_MAX,
    DECAY_UNITY,
    PAYLOAD_MAX,
    SUBTRACTION_MAX,
    THRESHOLD_MAX,
    FixedConnection,
    FixedNetSpec,
    FixedPopulation,
)
from lavaflow.models.netspec import (
    INPUT,
    Connection,
    Conv,
    CubaNeurons,
    Dense,
    NetSpec,
    Neurons,
    SoftResetNeurons,
)

MANTISSA_LIMIT = 254  # the quantiser's symmetric even range [−254, 254] (see the module docstring)
RESCALE = "Rescale the population (divide its threshold, reset potential, bias and incoming weights alike)."
MAX_WEIGHT_EXP = 24  # beyond this, one weight would outweigh the 18-bit a_in range on its own


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
        The FixedNetSpec and a report of the error introduced in every tensor.

    Raises:
        NetSpecError: non-finite values, a bad ``input_range``, or a value that cannot be represented at any
            scale that keeps the weights (a threshold beyond 17 bits, a bias beyond 13 + 7 bits, inputs whose
            worst case spans more than 18 bits, a reset subtraction that rounds to zero).
    """
    _check_finite(spec)
    if not (isinstance(input_range, (int, float)) and math.isfinite(input_range) and input_range > 0):
        raise NetSpecError(f"input_range must be a positive finite number, got {input_range!r}")
    input_scale = input_range / PAYLOAD_MAX if spec.input.encoding == "current" else 1.0
    input_payload_max = {"current": PAYLOAD_MAX, "rate": 1, "events": max(1, math.floor(input_range))}
    tensors: list[TensorError] = []
    notes: list[str] = []
    populations: dict[str, FixedPopulation] = {}
    connections: dict[int, FixedConnection] = {}
    exponents: dict[str, int] = {}
    for name, neurons in spec.populations.items():
        inputs = []
        for index, connection in enumerate(spec.connections):
            if connection.target == name:
                from_input = connection.source == INPUT
                unit = input_scale if from_input else 1.0
                payload_max = input_payload_max[spec.input.encoding] if from_input else 1
                inputs.append(_Incoming(index, connection, _label(index, connection), unit, payload_max))
        scale = _choose_scale(name, neurons, inputs, notes)
        populations[name] = _quantize_neurons(name, neurons, scale, tensors)
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


def dequantize(spec: FixedNetSpec) -> NetSpec:
    """The float NetSpec whose values are exactly the integers of ``spec`` times their units (for tests, reports).

    Where the float products are exact (dyadic scales), ``quantize(dequantize(spec))`` gives back ``spec``.
    """
    populations: dict[str, Neurons] = {}
    for name, p in spec.populations.items():
        threshold = p.vth * p.scale
        bias = p.bias_mant.astype(np.float64) * 2.0**p.bias_exp * p.scale / (1 << ACTIVATION_SHIFT)
        if p.kind == "soft_reset":
            populations[name] = SoftResetNeurons(
                bias=bias,
                threshold=threshold,
                reset_potential=threshold - p.subtraction * p.scale,
                voltage_decay=p.dv / DECAY_UNITY,
                shape=p.shape,
            )
        else:
            populations[name] = CubaNeurons(
                bias=bias,
                threshold=threshold,
                current_decay=(p.du + 1) / DECAY_UNITY,
                voltage_decay=p.dv / DECAY_UNITY,
                shape=p.shape,
            )
    connections = []
    for c in spec.connections:
        unit = spec.input_scale if c.source == INPUT else 1.0
        weight = c.weight.astype(np.float64) * (spec.populations[c.target].scale * 2.0**c.weight_exp / unit)
        synapse: Dense | Conv
        if c.conv is None:
            synapse = Dense(weight)
        else:
            synapse = Conv(weight, c.conv.input_shape, c.conv.stride, c.conv.padding)
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


def _choose_scale(name: str, neurons: Neurons, inputs: list[_Incoming], notes: list[str]) -> float:
    """The finest scale at which weights, threshold, subtraction, bias and the largest a_in all fit."""
    largest = [(float(np.abs(i.effective).max(initial=0)), i.label) for i in inputs]
    nonzero = [(value, label) for value, label in largest if value > 0]
    fine = min(value for value, _ in nonzero) / MANTISSA_LIMIT if nonzero else 0.0
    # Each bound is value / integer limit: round(value / scale) then never exceeds the limit.
    bias = float(np.abs(neurons.bias).max(initial=0)) * (1 << ACTIVATION_SHIFT)
    input_reason = f"largest possible a_in (≤ {ACTIVATION_MAX}, 18 bits)"
    input_advice = "Lower input_range, or shrink the largest incoming weights (e.g. feedback) relative to the others."
    bounds = [
        (
            f"threshold {neurons.threshold:g} (vth ≤ {THRESHOLD_MAX}, 17 bits)",
            RESCALE,
            neurons.threshold / THRESHOLD_MAX,
        ),
        ("bias (bias_mant ≤ 4095 << 7)", RESCALE, bias / (BIAS_MANT_MAX << BIAS_EXP_MAX)),
        (input_reason, input_advice, _largest_input(inputs) / ACTIVATION_MAX),
    ]
    if isinstance(neurons, SoftResetNeurons):
        subtraction = neurons.threshold - neurons.reset_potential
        bounds.append(
            (
                f"reset subtraction {subtraction:g} (≤ {SUBTRACTION_MAX}, 17 bits)",
                RESCALE,
                subtraction / SUBTRACTION_MAX,
            )
        )
    reason, advice, bound = max(bounds, key=lambda item: item[2])
    scale = max(fine, bound)
    # The float bound on a_in ignores mantissa rounding (up to 1 LSB per weight): confirm on the integers, and
    # coarsen in steps of at least 0.1% so that rounding boundaries are crossed.
    for _ in range(256):
        excess = _largest_integer_input(inputs, scale) / ACTIVATION_MAX
        if excess <= 1.0:
            break
        reason, advice, scale = input_reason, input_advice, scale * max(excess, 1.001)
    else:
        raise NetSpecError(f"population {name!r}: no scale keeps the largest possible a_in in 18 bits. {input_advice}")
    if scale == 0.0:
        return 1.0  # nothing to represent: no weights, threshold, subtraction or bias
    if fine == 0.0 or scale <= fine:
        return scale
    for value, label in nonzero:  # a connection that vanishes entirely changes the network: refuse
        if _even_round(value / scale) == 0:
            raise NetSpecError(
                f"population {name!r}: the {reason} needs one a_in LSB to be worth at least {scale:.3g}, but then "
                f"every weight of {label} rounds to zero (the largest is {value:.3g}): the population's values span "
                f"more than its integers can hold. {advice}"
            )
    notes.append(
        f"{name}: scale coarsened ×{scale / fine:.3g} so the {reason} fits; weights lose "
        f"{math.log2(scale / fine):.1f} bits"
    )
    return scale


def _largest_input(inputs: list[_Incoming]) -> float:
    """max over neurons of |a_in| in float units when every input sits at 0 or its largest payload.

    Payloads are never negative, so a_in is largest with every excitatory input at its maximum and every
    inhibitory one silent (or the reverse): the larger of the positive and negative row sums.
    """
    if not inputs:
        return 0.0
    positive = sum(_row_sums(np.maximum(i.effective, 0), i.connection) * i.payload_max for i in inputs)
    negative = sum(_row_sums(np.maximum(-i.effective, 0), i.connection) * i.payload_max for i in inputs)
    return float(np.maximum(positive, negative).max(initial=0))


def _largest_integer_input(inputs: list[_Incoming], scale: float) -> float:
    """As ``_largest_input``, on the integer weights (mantissa << exponent) quantised at ``scale``."""
    if not inputs:
        return 0.0
    positive, negative = 0.0, 0.0
    for incoming in inputs:
        exponent = _weight_exponent(float(np.abs(incoming.effective).max(initial=0)), scale, incoming.label)
        integer = _even_round(incoming.effective / (scale * 2.0**exponent)) * 2.0**exponent * incoming.payload_max
        positive = positive + _row_sums(np.maximum(integer, 0), incoming.connection)
        negative = negative + _row_sums(np.maximum(-integer, 0), incoming.connection)
    return float(np.maximum(positive, negative).max(initial=0))


def _even_round(values: np.ndarray | float) -> np.ndarray | float:
    """Nearest even integer (ties to the even half, as np.rint): Lava's mixed-sign weights have no LSB."""
    return 2.0 * np.rint(np.asarray(values, dtype=np.float64) / 2.0)


def _weight_exponent(largest: float, scale: float, label: str) -> int:
    """The smallest e ≥ 0 whose even mantissas of ``largest`` fit in [−254, 254]."""
    exponent = 0
    while _even_round(largest / (scale * 2.0**exponent)) > MANTISSA_LIMIT:
        exponent += 1
        if exponent > MAX_WEIGHT_EXP:
            raise NetSpecError(
                f"{label}: weights are 2^{MAX_WEIGHT_EXP} times larger than the population's other "
                f"inputs; one spike would exceed the 18-bit input range"
            )
    return exponent


# ------------------------------------------------------------------------------------------------- tensors
def _quantize_connection(incoming: _Incoming, scale: float) -> tuple[FixedConnection, TensorError]:
    connection = incoming.connection
    effective = incoming.effective
    exponent = _weight_exponent(float(np.abs(effective).max(initial=0)), scale, incoming.label)
    step = scale * 2.0**exponent
    mantissa = _even_round(effective / step).astype(np.int64)
    restored = mantissa * (step / incoming.unit)
    conv = connection.synapse if isinstance(connection.synapse, Conv) else None
    fixed = FixedConnection(connection.source, connection.target, mantissa, exponent, connection.delay_steps, conv)
    weight = connection.synapse.weight
    error = _error(f"{incoming.label}.weight", weight, restored, note=f"8-bit even mantissa << {exponent}")
    return fixed, error


def _quantize_neurons(name: str, neurons: Neurons, scale: float, tensors: list[TensorError]) -> FixedPopulation:
    vth = round(neurons.threshold / scale)
    tensors.append(
        _error(f"{name}.threshold", np.array([neurons.threshold]), np.array([vth * scale]), note="vth, 17-bit unsigned")
    )
    bias_mant, bias_exp = _quantize_bias(neurons.bias, scale)
    restored_bias = bias_mant * (2.0**bias_exp * scale / (1 << ACTIVATION_SHIFT))
    tensors.append(_error(f"{name}.bias", neurons.bias, restored_bias, note=f"13-bit mantissa << {bias_exp}"))
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
    if isinstance(neurons, SoftResetNeurons):
        subtraction_float = neurons.threshold - neurons.reset_potential
        subtraction = round(subtraction_float / scale)
        if subtraction == 0:
            raise NetSpecError(
                f"population {name!r}: the reset subtraction {subtraction_float:.3g} rounds to zero "
                f"at scale {scale:.3g} (one a_in LSB), so a spike would remove no charge"
            )
        tensors.append(
            _error(
                f"{name}.subtraction",
                np.array([subtraction_float]),
                np.array([subtraction * scale]),
                note="17-bit unsigned",
            )
        )
        return FixedPopulation(kind="soft_reset", subtraction=subtraction, **common)
    du, du_clipped = _decay_code(neurons.current_decay, offset=1)
    reason = ", 0 is not representable: Lava adds 1 to du" if du_clipped else ""
    tensors.append(
        _error(
            f"{name}.current_decay",
            np.array([neurons.current_decay]),
            np.array([(du + 1) / DECAY_UNITY]),
            clipped=du_clipped,
            note="(du+1)/4096" + reason,
        )
    )
    return FixedPopulation(kind="cuba", du=du, **common)


def _quantize_bias(bias: np.ndarray, scale: float) -> tuple[np.ndarray, int]:
    """bias_mant << bias_exp in 24-bit voltage units (1/64 of an a_in LSB), with the smallest exponent that fits."""
    voltage_units = bias.astype(np.float64) * ((1 << ACTIVATION_SHIFT) / scale)
    largest = float(np.abs(voltage_units).max(initial=0))
    for exponent in range(BIAS_EXP_MAX + 1):
        if np.rint(largest / 2.0**exponent) <= BIAS_MANT_MAX:
            return np.rint(voltage_units / 2.0**exponent).astype(np.int64), exponent
    # _choose_scale bounds the bias, so this is reached only by a broken invariant
    raise NetSpecError(f"bias {largest:.3g} (24-bit units) exceeds 13 + 7 bits at scale {scale:.3g}")


def _decay_code(decay: float, offset: int) -> tuple[int, int]:
    """round(decay·4096) − offset clipped to 0..4095, and 1 if it was clipped."""
    code = round(decay * DECAY_UNITY) - offset
    clipped = min(max(code, 0), DECAY_MAX)
    return clipped, int(clipped != code)


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
    (an upper bound: zero padding only removes terms)."""
    if not isinstance(connection.synapse, Conv):
        return weight.sum(axis=1)
    per_channel = weight.reshape(weight.shape[0], -1).sum(axis=1)
    return np.repeat(per_channel, connection.synapse.out_size // weight.shape[0])


def _check_finite(spec: NetSpec) -> None:
    """NetSpec validates when built, but its arrays are mutable: check again before trusting them."""
    arrays: list[tuple[str, np.ndarray]] = []
    for index, connection in enumerate(spec.connections):
        arrays.append((f"{_label(index, connection)}.weight", connection.synapse.weight))
    for name, neurons in spec.populations.items():
        arrays.append((f"{name}.bias", neurons.bias))
        scalars = [neurons.threshold, neurons.voltage_decay]
        scalars += [neurons.reset_potential] if isinstance(neurons, SoftResetNeurons) else [neurons.current_decay]
        arrays.append((f"{name} parameters", np.array(scalars, dtype=np.float64)))
    arrays += [("readout.weight", spec.readout.weight), ("readout.bias", spec.readout.bias)]
    for name, values in arrays:
        if not np.all(np.isfinite(values)):
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            raise NetSpecError(f"{name}: {bad} non-finite value(s) (NaN or inf); the training run diverged")
