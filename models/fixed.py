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

import os
from dataclasses import dataclass, field

import numpy as np

# Lava's bit widths live in models.bit_widths; re-exported here, their old home (deploy and tests read them here).
from lavaflow.models.bit_widths import ACTIVATION_BITS as ACTIVATION_BITS
from lavaflow.models.bit_widths import ACTIVATION_MAX as ACTIVATION_MAX
from lavaflow.models.bit_widths import ACTIVATION_MIN as ACTIVATION_MIN
from lavaflow.models.bit_widths import ACTIVATION_SHIFT as ACTIVATION_SHIFT
from lavaflow.models.bit_widths import BIAS_EXP_MAX as BIAS_EXP_MAX
from lavaflow.models.bit_widths import BIAS_MANT_BITS as BIAS_MANT_BITS
from lavaflow.models.bit_widths import BIAS_MANT_MAX as BIAS_MANT_MAX
from lavaflow.models.bit_widths import BIAS_MANT_MIN as BIAS_MANT_MIN
from lavaflow.models.bit_widths import CURRENT_WRAP as CURRENT_WRAP
from lavaflow.models.bit_widths import DECAY_BITS as DECAY_BITS
from lavaflow.models.bit_widths import DECAY_MAX as DECAY_MAX
from lavaflow.models.bit_widths import DECAY_UNITY as DECAY_UNITY
from lavaflow.models.bit_widths import PAYLOAD_MAX as PAYLOAD_MAX
from lavaflow.models.bit_widths import STATE_BITS as STATE_BITS
from lavaflow.models.bit_widths import STATE_MAX as STATE_MAX
from lavaflow.models.bit_widths import SUBTRACTION_MAX as SUBTRACTION_MAX
from lavaflow.models.bit_widths import THRESHOLD_BITS as THRESHOLD_BITS
from lavaflow.models.bit_widths import THRESHOLD_MAX as THRESHOLD_MAX
from lavaflow.models.bit_widths import THRESHOLD_SHIFT as THRESHOLD_SHIFT
from lavaflow.models.bit_widths import WEIGHT_EXP_MAX as WEIGHT_EXP_MAX
from lavaflow.models.bit_widths import WEIGHT_EXP_MIN as WEIGHT_EXP_MIN
from lavaflow.models.bit_widths import WEIGHT_MAX as WEIGHT_MAX
from lavaflow.models.bit_widths import WEIGHT_MIN as WEIGHT_MIN
from lavaflow.models.checks import store_integer
from lavaflow.models.errors import DataError, NetSpecError
from lavaflow.models.kinds import KINDS, kind_named
from lavaflow.models.netspec import (
    INPUT,
    Conv,
    Input,
    Readout,
    Sparse,
    check_integer,
    check_real,
    read_spec,
    write_spec,
)

FIXED_KINDS = tuple(KINDS)  # the FixedPopulation kinds: the registry's names
MAX_DELAY_STEPS = 1 << 16  # a sanity bound: the reference's ring buffer holds delay + 1 steps of spikes


@dataclass(frozen=True, eq=False)
class FixedPopulation:
    """A population in integer units; ``kind`` names its entry in models.kinds.KINDS ("soft_reset", "cuba").
    Checked by the FixedNetSpec holding it, which knows its name and its connections."""

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
    refractory: int = 0  # cuba_refractory: steps v is held after a spike (new fields last: positional order)
    v_reset: int = 0  # lif_potential: reset potential in a_in LSBs (used << 6)
    leak: int = 0  # lif_potential: dv·v_leak per step, 24-bit units
    reset_mode: int = 0  # lif_potential: 0 v ← v_reset, 1 v −= vth − v_reset


@dataclass(frozen=True, eq=False)
class FixedConnection:
    """A connection in integer units; checked by the FixedNetSpec holding it (its shape depends on the ends)."""

    source: str
    target: str
    weight: np.ndarray  # int64: (n_out, n_in) dense, (C_out, C_in/g, kH, kW) conv, (nnz,) sparse; even, [−256, 254]
    weight_exp: int
    delay_steps: int
    conv: Conv | None = None  # geometry of a convolution (its float weight is kept for reference only)
    sparse: Sparse | None = None  # where the non-zeros of a sparse weight sit; ``weight`` is then (nnz,)


@dataclass(frozen=True, eq=False)
class FixedNetSpec:
    """The deploy artifact: a NetSpec in Loihi 2 integers, validated when built (``validate``), saved like a NetSpec.

    A FixedNetSpec that exists fits Lava's bit widths, so Lava cannot clip or truncate one of its values silently.
    Its arrays stay mutable: every simulator checks again (``input_payload``).
    """

    input: Input
    input_scale: float  # current encoding: payload = round(x / input_scale); 1.0 for spike and event input
    populations: dict[str, FixedPopulation]
    connections: tuple[FixedConnection, ...]
    readout: Readout  # stays in float: evaluated on the host from integer spike counts
    time_steps: int
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise NetSpecError, naming the field, unless every integer fits its Lava bit width and the shapes fit
        the populations and connections; the one place for these rules (``check_fixed_spec`` calls it).

        Scalars are stored back as Python int and float (numpy scalars included on input), so that the spec
        saves losslessly; the records are frozen, hence ``object.__setattr__``.
        """
        object.__setattr__(self, "time_steps", check_integer("time_steps", self.time_steps, 1))
        input_scale = check_real("input_scale", self.input_scale, 0.0)
        if input_scale <= 0:
            raise NetSpecError(f"input_scale must be positive, got {self.input_scale!r}")
        object.__setattr__(self, "input_scale", input_scale)
        if not isinstance(self.input, Input) or not isinstance(self.readout, Readout):
            raise NetSpecError(f"a FixedNetSpec needs an Input and a Readout, got {self.input!r} and {self.readout!r}")
        self.input.__post_init__()
        self.readout.__post_init__()  # the readout stays in float: finite values
        if not isinstance(self.populations, dict):
            kind = type(self.populations).__name__
            raise NetSpecError(f"populations: expected a dict of FixedPopulation, got {kind}")
        if not isinstance(self.connections, (tuple, list)):
            kind = type(self.connections).__name__
            raise NetSpecError(f"connections: expected a tuple of FixedConnection, got {kind}")
        object.__setattr__(self, "connections", tuple(self.connections))
        if INPUT in self.populations:
            raise NetSpecError(f"{INPUT!r} is reserved for the input node; rename that population")
        for name, population in self.populations.items():
            _check_population(name, population)
        for index, connection in enumerate(self.connections):
            _check_connection(self, index, connection)
        readout = self.readout
        if readout.source not in self.populations:
            raise NetSpecError(f"readout reads unknown population {readout.source!r}")
        if readout.weight.shape[1] != self.populations[readout.source].size:
            raise NetSpecError(
                f"readout weight {readout.weight.shape} does not match population {readout.source!r} "
                f"of {self.populations[readout.source].size} neurons"
            )

    def save(self, path: str | os.PathLike) -> None:
        """Write the spec file NetSpec.save writes (one serialiser), recording the kind; atomic."""
        write_spec(self, path, FIXED_NODE_TYPES)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FixedNetSpec:
        """Read a file written by ``save``, validated as when built; never unpickles.

        Raises:
            NetSpecError: naming ``path``: damaged, of another format version, holding a NetSpec, or out of range.
        """
        return read_spec(path, cls, FIXED_NODE_TYPES, "quantise the NetSpec again (deploy.quantize) to rewrite it")


# The node classes a FixedNetSpec file may hold: the float Input, Readout and Conv geometry, and the fixed records.
FIXED_NODE_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Input, Readout, Conv, Sparse, FixedPopulation, FixedConnection, FixedNetSpec)
}


# ------------------------------------------------------------------------------------------- the one gate
def input_payload(spec: FixedNetSpec, inputs: np.ndarray, dtype: type | None = np.int64) -> np.ndarray:
    """The integer payloads ``spec`` receives for ``inputs``, (T, B, *input_shape) of ``dtype`` (int64; any type
    that holds 0..255; None: spikes and counts in the inputs' own dtype, integer-valued, not copied), after every
    check.

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
    if spec.input.encoding == "current":
        values = spec.input.checked(inputs, spec.time_steps)
        payloads = np.clip(np.rint(values / spec.input_scale), 0, PAYLOAD_MAX).astype(dtype or np.int64)
        check_payloads(spec, payloads, values_checked=True)
        return payloads
    values = spec.input.checked(inputs, spec.time_steps, dtype=None)  # spikes and counts: any real dtype
    check_payloads(spec, values, values_checked=True)  # before the cast: 256.5 or 1e30 must be refused
    return values if dtype is None else values.astype(dtype, copy=False)


def check_payloads(spec: FixedNetSpec, payloads: np.ndarray, *, values_checked: bool = False) -> None:
    """Raise unless ``payloads`` are integers the input can send and no step's a_in can leave its 18 bits.

    ``payloads`` is (T, B, *input_shape) or (N, T, n_input): the first two axes are time and samples in either
    order. The a_in bound is the worst case over every step in which each input element takes any payload up to
    its largest in ``payloads`` and every population spikes as it may (``activation_bounds``): the quantiser's
    guarantee, checked for the data at hand, since Lava would let the CUBA current wrap silently. ``spec`` must
    have passed ``check_fixed_spec``; ``values_checked``: ``payloads`` have just passed ``Input.check_values``.
    """
    if not values_checked:
        spec.input.check_values(payloads)  # rate input: 0/1 only, which are integers in range
    low, high = payloads.min(initial=0), payloads.max(initial=0)
    exact = spec.input.encoding == "rate" or payloads.dtype.kind in "biu"
    integers = exact or np.array_equal(payloads, np.rint(payloads))
    if not integers or low < 0 or high > PAYLOAD_MAX:
        raise DataError(
            f"{spec.input.encoding} input must hold integers in 0..{PAYLOAD_MAX} (spikes or event counts), got "
            f"values in [{low:g}, {high:g}]; re-bin the events so a count fits 8 bits"
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
            if connection.sparse is not None:
                sparse = connection.sparse
                positive = sparse.matrix(np.maximum(weight, 0)) @ payload
                negative = sparse.matrix(np.maximum(-weight, 0)) @ payload
            elif connection.conv is None:
                positive, negative = np.maximum(weight, 0) @ payload, np.maximum(-weight, 0) @ payload
            else:  # (C_out, C_in/groups, kH, kW): each input channel at its largest, each output channel everywhere
                groups = int(connection.conv.groups)
                channel_max = payload.reshape(weight.shape[1] * groups, -1).max(axis=1)
                # the input channels each output channel reads: those of its group, (C_out, C_in/groups)
                seen = np.repeat(channel_max.reshape(groups, weight.shape[1]), weight.shape[0] // groups, axis=0)
                positive = (np.maximum(weight, 0).sum(axis=(2, 3)) * seen).sum(axis=1)
                negative = (np.maximum(-weight, 0).sum(axis=(2, 3)) * seen).sum(axis=1)
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
    """Raise NetSpecError unless ``spec`` is a FixedNetSpec that still passes ``FixedNetSpec.validate``.

    A FixedNetSpec is validated when built, but its arrays are mutable: every simulator calls this before it runs
    (``input_payload``, the Lava export), so a value written in afterwards (an odd weight, −256 in an inhibitory
    matrix) is caught before Lava could clip or truncate it silently.
    """
    if not isinstance(spec, FixedNetSpec):
        raise NetSpecError(f"expected a FixedNetSpec, got {type(spec).__name__}")
    spec.validate()


def _check_integer_array(name: str, values: object, shape: tuple[int, ...], low: int, high: int) -> None:
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iu":
        raise NetSpecError(f"{name}: expected an integer numpy array, got {getattr(values, 'dtype', type(values))}")
    if values.shape != shape:
        raise NetSpecError(f"{name}: expected shape {shape}, got {values.shape}")
    if values.size and (values.min() < low or values.max() > high):
        raise NetSpecError(f"{name}: values in [{values.min()}, {values.max()}] leave the range [{low}, {high}]")


_store_integer = store_integer  # the short name the checks below use


def _check_population(name: str, population: FixedPopulation) -> None:
    if not isinstance(population, FixedPopulation):
        raise NetSpecError(f"population {name!r}: expected a FixedPopulation, got {type(population).__name__}")
    try:
        kind = kind_named(population.kind)
    except NetSpecError as error:
        raise NetSpecError(f"population {name!r}: {error}") from None
    size = _store_integer(population, "size", f"{name}.size", 1)
    if not isinstance(population.shape, (tuple, list)):
        raise NetSpecError(f"population {name!r}: shape must be a tuple, got {population.shape!r}")
    shape = tuple(check_integer(f"{name}.shape", d, 1) for d in population.shape)
    if shape and int(np.prod(shape)) != size:
        raise NetSpecError(f"population {name!r}: shape {shape} does not hold {size} neurons")
    object.__setattr__(population, "shape", shape)
    object.__setattr__(population, "scale", check_real(f"{name}.scale", population.scale, 0.0))
    _store_integer(population, "vth", f"{name}.vth (17-bit unsigned)", 0, THRESHOLD_MAX)
    _store_integer(population, "dv", f"{name}.dv (12-bit unsigned)", 0, DECAY_MAX)
    _store_integer(population, "bias_exp", f"{name}.bias_exp (3-bit)", 0, BIAS_EXP_MAX)
    mantissa_name = f"{name}.bias_mant (13-bit signed)"
    _check_integer_array(mantissa_name, population.bias_mant, (size,), BIAS_MANT_MIN, BIAS_MANT_MAX)
    kind.check_fixed(name, population)  # the kind's own fields (soft reset: subtraction; cuba: du)


def _check_connection(spec: FixedNetSpec, index: int, connection: FixedConnection) -> None:
    if not isinstance(connection, FixedConnection):
        raise NetSpecError(f"connection {index}: expected a FixedConnection, got {type(connection).__name__}")
    name = f"connection {index} ({connection.source} → {connection.target})"
    if connection.conv is not None:
        if not isinstance(connection.conv, Conv):
            raise NetSpecError(f"{name}: conv must be a Conv or None, got {type(connection.conv).__name__}")
        connection.conv.__post_init__()  # its geometry sets the weight shape
    if connection.sparse is not None:
        if not isinstance(connection.sparse, Sparse) or connection.conv is not None:
            kind = type(connection.sparse).__name__
            raise NetSpecError(f"{name}: sparse must be a Sparse (and conv None), got {kind}")
        connection.sparse.__post_init__()
    if connection.target not in spec.populations:
        raise NetSpecError(f"{name}: unknown target population {connection.target!r}")
    if connection.source == INPUT:
        n_in, delay_low, delay_high = spec.input.size, 0, 0
    elif connection.source in spec.populations:
        n_in, delay_low, delay_high = spec.populations[connection.source].size, 1, MAX_DELAY_STEPS
    else:
        raise NetSpecError(f"{name}: unknown source {connection.source!r}")
    _store_integer(connection, "delay_steps", f"{name}: delay_steps", delay_low, delay_high)
    label = f"{name}: weight_exp (Loihi's 4-bit signed exponent)"
    _store_integer(connection, "weight_exp", label, WEIGHT_EXP_MIN, WEIGHT_EXP_MAX)
    n_out = spec.populations[connection.target].size
    if connection.sparse is not None:
        shape = connection.sparse.weight.shape
        if connection.sparse.shape != (n_out, n_in):
            raise NetSpecError(
                f"{name}: sparse weight is {connection.sparse.shape} but the source has {n_in} and the target {n_out}"
            )
    elif connection.conv is None:
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
