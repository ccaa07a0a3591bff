"""FixedNetSpec: a NetSpec in Loihi 2 integer units, as the quantiser (deploy.quantize) produces it.

The integer dynamics mirror Lava's bit-accurate LIF and Dense models (lava.proc.lif.models.PyLifModelBitAcc,
lava.proc.dense.models.PyDenseModelBitAcc, lava-nc 0.10), extended with reset by subtraction and v ≥ θ for
soft-reset neurons. Per step, for a population p (all arithmetic in int64, then range-checked):

    a_in = Σ_c shift(W_c @ s_c, weight_exp_c)      # per connection, then summed (Lava's InPort adds its Dense outputs)
                                                   # shift: << e for e ≥ 0, arithmetic >> −e (floor) for e < 0
    a_in must lie in [ACTIVATION_MIN, ACTIVATION_MAX] (18-bit signed); checked before any run (below)
    soft reset:  v = saturate(decay(v, dv) + (a_in << 6) + (bias_mant << bias_exp))
                 s = [v ≥ vth << 6];   v = v − s·(subtraction << 6)
    cuba:        u = wrap(decay(u, du + 1) + (a_in << 6))
                 v = saturate(decay(v, dv) + u + (bias_mant << bias_exp));   s = [v > vth << 6];   v = 0 where s

    decay(x, d) = sign(x)·((|x|·(4096 − d)) >> 12)           # rounds toward zero; d = 0 keeps x
    saturate(x) = clip(x, −(2^23 − 1), 2^23 − 1)               # Lava's 24-bit voltage saturates
    wrap(x)     = x − 2^24 if x > 2^23;  x + 2^24 if x ≤ −2^23  # Lava's current wraps once, into (−2^23, 2^23]

The spike test reads the saturated voltage; a recorded ``v`` is the value after the reset (Lava's Var ``v`` at
the end of the step). The bias enters v unshifted: one bias LSB is 1/64 of an a_in LSB (netx uses bias_exp = 6 to
align the two).

Checked against Lava's source (lava/proc/lif/models.py, lava/proc/dense/models.py, lava/utils/weightutils.py):

- ``du`` gets a hidden +1 (``ds_offset``), ``dv`` none (``dm_offset = 0``): du = 4095 empties u every step, du = 0
  still leaks 1/4096 of it, dv = 0 keeps v.
- Lava's wrap is one conditional ±2^24, not a two's-complement wrap: +2^23 survives and −2^23 becomes +2^23. Both
  are exact wraps only while |decay(u) + (a_in << 6)| < 2^24 + 2^23, which the a_in range guarantees: |a_in << 6|
  ≤ 2^23 and |decay(u)| ≤ 2^23.
- Lava types a_in (and Dense's a_out) as 16-bit, but its Python models neither saturate nor wrap it (an a_in of
  65024 reaches u intact). The 18-bit bound here is ours: the widest input for which a_in << 6 fits the 24-bit
  state, Lava's single conditional wrap is exact and Lava's int32 arithmetic cannot overflow. deploy.quantize
  picks scales so that no input data within its input range can exceed it. Lava cannot check it while running,
  so ``input_payload`` (every simulator's gate) refuses a spec and payloads whose worst case could exceed it.
- weight_exp is Loihi's 4-bit signed exponent, −8..7 (Lava's Py model would shift by anything).
- Dense clips weights to 8 bits by a sign mode it infers from the values unless given ``sign_mode``: MIXED keeps
  [−256, 255] and then drops the LSB with an arithmetic shift, so an odd weight w silently becomes 2·floor(w/2);
  INHIBITORY (no positive weight) clips to [−255, 0], so −256 silently becomes −255. Hence the contract: weights
  are even values in [WEIGHT_MIN, WEIGHT_MAX], and −256 only in a matrix that also holds a positive weight (or
  exported with ``sign_mode=SignMode.MIXED``); the quantiser emits [−254, 254] only.
- vth is unsigned 17-bit and compared after << 6; bias_mant is signed 13-bit; bias_exp is 0..7 (Lava right-shifts
  for a negative bias_exp, which we never emit).

One a_in LSB is worth ``scale`` float units of population p, so a float weight w maps to round(w / (scale·2^e))
and θ to round(θ / scale). Input payloads are integers: 0/1 spikes, event counts in 0..255, or current-encoded
intensities x mapped to round(x / input_scale) (half to even) clipped to 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lavaflow.models.errors import DataError, NetSpecError
from lavaflow.models.netspec import INPUT, Conv, Input, Readout, check_integer, check_real

# Bit widths and shifts of Lava's bit-accurate LIF (lava/proc/lif/models.py) and Dense (lava/proc/dense/models.py).
ACTIVATION_SHIFT = 6  # a_in << 6 aligns the synaptic input with the 24-bit state (Lava: act_shift)
THRESHOLD_SHIFT = 6  # vth << 6 (Lava: vth_shift)
DECAY_BITS = 12  # decays are fractions of 4096 (Lava: decay_shift)
DECAY_UNITY = 1 << DECAY_BITS
STATE_BITS = 24  # u and v are 24-bit signed
STATE_MAX = (1 << (STATE_BITS - 1)) - 1  # v saturates to ±STATE_MAX
CURRENT_WRAP = 1 << STATE_BITS  # u wraps by ±2^24 into (−2^23, 2^23]
ACTIVATION_BITS = 18  # a_in bound (ours, see the module docstring): a_in << 6 must fit the 24-bit state
ACTIVATION_MIN, ACTIVATION_MAX = -(1 << (ACTIVATION_BITS - 1)), (1 << (ACTIVATION_BITS - 1)) - 1
THRESHOLD_BITS = 17  # vth is 17-bit unsigned
THRESHOLD_MAX = (1 << THRESHOLD_BITS) - 1
SUBTRACTION_MAX = THRESHOLD_MAX  # soft reset (ours): as wide as vth, so v − (subtraction << 6) stays in 24 bits
BIAS_MANT_BITS = 13  # bias_mant is 13-bit signed
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << (BIAS_MANT_BITS - 1)), (1 << (BIAS_MANT_BITS - 1)) - 1
BIAS_EXP_MAX = 7  # bias_exp is a 3-bit shift
WEIGHT_MIN, WEIGHT_MAX = -256, 254  # 8-bit mixed-sign weights: Lava drops the LSB, so values are even
DECAY_MAX = DECAY_UNITY - 1  # du and dv are 12-bit unsigned
PAYLOAD_MAX = 255  # graded input payloads are 8-bit unsigned
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7  # Loihi's weight exponent is 4-bit signed
FIXED_KINDS = ("soft_reset", "cuba")
MAX_DELAY_STEPS = 1 << 16  # a sanity bound: the reference's ring buffer holds delay + 1 steps of spikes


@dataclass(frozen=True, eq=False)
class FixedPopulation:
    """A population in integer units; ``kind`` is "soft_reset" or "cuba"."""

    kind: str
    size: int
    vth: int
    dv: int  # 0..4095
    bias_mant: np.ndarray  # (size,) int64
    bias_exp: int
    scale: float  # float value of one a_in LSB (for reports and de-quantisation)
    subtraction: int = 0  # soft reset: charge a spike removes, in a_in LSBs (before << 6)
    du: int = 4095  # cuba: 0..4095 (Lava adds 1 internally, so 4095 empties u every step)
    shape: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class FixedConnection:
    source: str
    target: str
    weight: np.ndarray  # int64, (n_out, n_in) for dense; (C_out, C_in, kH, kW) for conv; even values in [−256, 254]
    weight_exp: int
    delay_steps: int
    conv: Conv | None = None  # geometry of a convolution (its float weight is kept for reference only)


@dataclass(frozen=True, eq=False)
class FixedNetSpec:
    input: Input
    input_scale: float  # current encoding: payload = round(x / input_scale); 1.0 for spike and event input
    populations: dict[str, FixedPopulation]
    connections: tuple[FixedConnection, ...]
    readout: Readout  # stays in float: evaluated on the host from integer spike counts
    time_steps: int
    metadata: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- the one gate
def input_payload(spec: FixedNetSpec, inputs: np.ndarray) -> np.ndarray:
    """The integer payloads ``spec`` receives for ``inputs``, (T, B, *input_shape) int64, after every check.

    This is the one gate of fixed point: the reference's integer mode and the Lava export call it before anything
    runs, so every backend accepts and refuses the same specs and data. It checks the spec (``check_fixed_spec``),
    the data (shape, finite, encoding) and that no step's a_in can leave its 18 bits (``check_payloads``).

    Current encoding: round(x / input_scale), half to even, clipped to 0..255: intensities beyond the quantiser's
    input range saturate, as an 8-bit graded spike must. Spikes and event counts are already integers and are
    checked, not clipped: a count above 255 cannot be sent and raises.

    Raises:
        NetSpecError: an invalid spec, or one whose a_in could leave 18 bits with these payloads.
        DataError: wrong shape, non-finite values, rate input other than 0/1, events that are not integers in
            0..255.
    """
    check_fixed_spec(spec)
    values = spec.input.checked(inputs, spec.time_steps)
    if spec.input.encoding == "current":
        payloads = np.clip(np.rint(values / spec.input_scale), 0, PAYLOAD_MAX).astype(np.int64)
        check_payloads(spec, payloads)
        return payloads
    check_payloads(spec, values)  # before the cast: 256.5 or 1e30 must be refused, not truncated
    return values.astype(np.int64)


def check_payloads(spec: FixedNetSpec, payloads: np.ndarray) -> None:
    """Raise unless ``payloads`` are integers the input can send and no step's a_in can leave its 18 bits.

    ``payloads`` is (T, B, *input_shape) or (N, T, n_input): the first two axes are time and samples in either
    order. The a_in bound is the worst case over every step in which each input element takes any payload up to
    its largest in ``payloads`` and every population spikes as it may (``activation_bounds``): the quantiser's
    guarantee, checked for the data at hand, since Lava would let the CUBA current wrap silently. ``spec`` must
    have passed ``check_fixed_spec``.
    """
    spec.input.check_values(payloads)
    if np.any(payloads != np.rint(payloads)) or payloads.min(initial=0) < 0 or payloads.max(initial=0) > PAYLOAD_MAX:
        raise DataError(
            f"{spec.input.encoding} input must hold integers in 0..{PAYLOAD_MAX} (spikes or event counts), got "
            f"values in [{payloads.min():g}, {payloads.max():g}]; re-bin the events so a count fits 8 bits"
        )
    largest = payloads.reshape(*payloads.shape[:2], -1).max(axis=(0, 1)).astype(np.int64)
    for name, (low, high) in activation_bounds(spec, largest).items():
        if low < ACTIVATION_MIN or high > ACTIVATION_MAX:
            raise NetSpecError(
                f"population {name!r}: with these inputs (largest payload {largest.max(initial=0)}) a_in can reach "
                f"[{low}, {high}], beyond the 18-bit range [{ACTIVATION_MIN}, {ACTIVATION_MAX}] where a_in << 6 fits "
                f"Lava's 24-bit state (Lava would let the current wrap silently). The spec was quantised for "
                f"smaller inputs or built by hand: quantise with an input_range that covers the data (events: the "
                f"largest count), or use a coarser scale"
            )


def activation_bounds(spec: FixedNetSpec, largest_payload: np.ndarray) -> dict[str, tuple[int, int]]:
    """Per population, the lowest and highest a_in any step can reach when input element j sends at most
    ``largest_payload[j]`` (a vector of input.size) and the populations spike as they may.

    Payloads and spikes are never negative, so a_in is highest with every positive weight's source at its largest
    and every negative one's at 0, and lowest the other way round: per connection W⁺·P and W⁻·P (P: the largest
    payloads, 1 for spikes), shifted by weight_exp; a right shift floors, so the low end is rounded down. A conv
    takes each input channel at its largest payload over the whole channel and each output channel's whole kernel
    (zero padding only removes terms).
    """
    largest_payload = np.asarray(largest_payload, dtype=np.int64).reshape(-1)
    bounds = {}
    for name, population in spec.populations.items():
        low = np.zeros(population.size, dtype=np.int64)
        high = np.zeros(population.size, dtype=np.int64)
        for connection in spec.connections:
            if connection.target != name:
                continue
            weight = connection.weight.astype(np.int64)
            if connection.source == INPUT:
                payload = largest_payload
            else:
                payload = np.ones(spec.populations[connection.source].size, dtype=np.int64)
            if connection.conv is None:
                positive, negative = np.maximum(weight, 0) @ payload, np.maximum(-weight, 0) @ payload
            else:  # (C_out, C_in, kH, kW) kernel: each input channel at its largest, each output channel everywhere
                channel_max = payload.reshape(weight.shape[1], -1).max(axis=1)
                positive = np.maximum(weight, 0).sum(axis=(2, 3)) @ channel_max
                negative = np.maximum(-weight, 0).sum(axis=(2, 3)) @ channel_max
                positions = population.size // weight.shape[0]  # C·H·W order: channel-major
                positive, negative = np.repeat(positive, positions), np.repeat(negative, positions)
            exponent = int(connection.weight_exp)
            if exponent >= 0:
                high += positive << exponent
                low -= negative << exponent
            else:
                high += positive >> -exponent
                low += (-negative) >> -exponent  # floor(−n / 2^k)
        bounds[name] = (int(low.min(initial=0)), int(high.max(initial=0)))
    return bounds


# ------------------------------------------------------------------------------------------- spec checks
def check_fixed_spec(spec: FixedNetSpec) -> None:
    """Raise NetSpecError unless every integer of ``spec`` fits its Lava bit width.

    FixedNetSpec is a plain container (and its arrays are mutable), so this is where a hand-built or corrupted
    one is caught before Lava could clip or truncate a value silently (an odd weight, −256 in an inhibitory
    matrix, an 18-bit vth, a weight exponent Loihi does not have).
    """
    if not isinstance(spec, FixedNetSpec):
        raise NetSpecError(f"expected a FixedNetSpec, got {type(spec).__name__}")
    check_integer("time_steps", spec.time_steps, 1)
    check_real("input_scale", spec.input_scale, 0.0)
    if spec.input_scale <= 0:
        raise NetSpecError(f"input_scale must be positive, got {spec.input_scale!r}")
    if not isinstance(spec.input, Input) or not isinstance(spec.readout, Readout):
        raise NetSpecError("a FixedNetSpec needs an Input and a Readout")
    spec.input.__post_init__()
    spec.readout.__post_init__()  # the readout stays in float: finite values
    if INPUT in spec.populations:
        raise NetSpecError(f"{INPUT!r} is reserved for the input node; rename that population")
    for name, population in spec.populations.items():
        _check_population(name, population)
    for index, connection in enumerate(spec.connections):
        _check_connection(spec, index, connection)
    readout = spec.readout
    if readout.source not in spec.populations:
        raise NetSpecError(f"readout reads unknown population {readout.source!r}")
    if readout.weight.shape[1] != spec.populations[readout.source].size:
        raise NetSpecError(
            f"readout weight {readout.weight.shape} does not match population {readout.source!r} "
            f"of {spec.populations[readout.source].size} neurons"
        )


def _check_integer_array(name: str, values: object, shape: tuple[int, ...], low: int, high: int) -> None:
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iu":
        raise NetSpecError(f"{name}: expected an integer numpy array, got {getattr(values, 'dtype', type(values))}")
    if values.shape != shape:
        raise NetSpecError(f"{name}: expected shape {shape}, got {values.shape}")
    if values.size and (values.min() < low or values.max() > high):
        raise NetSpecError(f"{name}: values in [{values.min()}, {values.max()}] leave the range [{low}, {high}]")


def _check_population(name: str, population: FixedPopulation) -> None:
    if not isinstance(population, FixedPopulation) or population.kind not in FIXED_KINDS:
        kind = getattr(population, "kind", type(population).__name__)
        raise NetSpecError(f"population {name!r}: kind {kind!r} is not one of {FIXED_KINDS}")
    check_integer(f"{name}.size", population.size, 1)
    if population.shape and int(np.prod(population.shape)) != population.size:
        raise NetSpecError(f"population {name!r}: shape {population.shape} does not hold {population.size} neurons")
    check_real(f"{name}.scale", population.scale, 0.0)
    check_integer(f"{name}.vth (17-bit unsigned)", population.vth, 0, THRESHOLD_MAX)
    check_integer(f"{name}.dv (12-bit unsigned)", population.dv, 0, DECAY_MAX)
    check_integer(f"{name}.bias_exp (3-bit)", population.bias_exp, 0, BIAS_EXP_MAX)
    mantissa_name = f"{name}.bias_mant (13-bit signed)"
    _check_integer_array(mantissa_name, population.bias_mant, (population.size,), BIAS_MANT_MIN, BIAS_MANT_MAX)
    if population.kind == "soft_reset":
        check_integer(f"{name}.subtraction (a spike must remove charge)", population.subtraction, 1, SUBTRACTION_MAX)
    else:
        check_integer(f"{name}.du (12-bit unsigned)", population.du, 0, DECAY_MAX)


def _check_connection(spec: FixedNetSpec, index: int, connection: FixedConnection) -> None:
    if not isinstance(connection, FixedConnection):
        raise NetSpecError(f"connection {index}: expected a FixedConnection, got {type(connection).__name__}")
    name = f"connection {index} ({connection.source} → {connection.target})"
    if connection.target not in spec.populations:
        raise NetSpecError(f"{name}: unknown target population {connection.target!r}")
    if connection.source == INPUT:
        n_in, delay_low, delay_high = spec.input.size, 0, 0
    elif connection.source in spec.populations:
        n_in, delay_low, delay_high = spec.populations[connection.source].size, 1, MAX_DELAY_STEPS
    else:
        raise NetSpecError(f"{name}: unknown source {connection.source!r}")
    check_integer(f"{name}: delay_steps", connection.delay_steps, delay_low, delay_high)
    check_integer(f"{name}: weight_exp (Loihi's 4-bit signed exponent)", connection.weight_exp, WEIGHT_EXP_MIN,
                  WEIGHT_EXP_MAX)
    n_out = spec.populations[connection.target].size
    if connection.conv is None:
        shape = (n_out, n_in)
    else:
        shape = connection.conv.weight.shape
        if connection.conv.in_size != n_in or connection.conv.out_size != n_out:
            raise NetSpecError(
                f"{name}: conv maps {connection.conv.in_size} → {connection.conv.out_size} neurons "
                f"but the source has {n_in} and the target {n_out}"
            )
    weight = connection.weight
    _check_integer_array(f"{name}: weight (8-bit mixed sign)", weight, shape, WEIGHT_MIN, WEIGHT_MAX)
    if np.bitwise_and(weight, 1).any():
        raise NetSpecError(f"{name}: odd weights; Lava's Dense drops the LSB of mixed-sign weights, so use even ones")
    if weight.size and weight.min() == WEIGHT_MIN and weight.max() <= 0:
        raise NetSpecError(
            f"{name}: {WEIGHT_MIN} in a matrix with no positive weight; Lava infers the inhibitory "
            f"sign mode and clips it to −255"
        )
