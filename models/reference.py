"""Reference simulator: steps a NetSpec in float64 or a FixedNetSpec in bit-accurate integers, with numpy.

It imports no Lava, so it is a second implementation and the oracle of the parity tests: Lava's floating_pt models
must match float mode spike for spike, Lava's fixed_pt models must match fixed mode bit for bit. It is also the
raw-numpy baseline of the Lava throughput benchmark, so the inner loop only calls BLAS and in-place ufuncs.

Each step t = 1..T follows the NetSpec time semantics (models.netspec) in Lava's order. For each population in
NetSpec order: a_in = Σ_c W_c·x_c, summed over incoming connections in NetSpec order, where x_c is this step's input
(delay 0) or the source's spikes ``delay_steps`` ago (a ring buffer per source; zero before the first step); then
the neuron update of models.neurons (float: decay, add a_in, add bias, fire, reset) or of models.fixed (integers).

Fixed mode keeps the neuron state in int64 and checks every value against its Lava bit width, raising where
Lava's own integers would silently overflow; only Lava's documented current wrap and voltage saturation are
replicated. Synaptic sums W·x are computed in float64 by BLAS: every product and partial sum is an integer below
2^53 (|W| ≤ 256, x ≤ 255, fan-in < 2^36), so float64 is exact and much faster than numpy's int64 matmul.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as functional

from lavaflow.models.errors import ConfigError, DataError, NetSpecError
from lavaflow.models.fixed import (
    ACTIVATION_MAX,
    ACTIVATION_MIN,
    ACTIVATION_SHIFT,
    BIAS_EXP_MAX,
    BIAS_MANT_MAX,
    BIAS_MANT_MIN,
    CURRENT_WRAP,
    DECAY_BITS,
    DECAY_MAX,
    DECAY_UNITY,
    PAYLOAD_MAX,
    STATE_MAX,
    SUBTRACTION_MAX,
    THRESHOLD_MAX,
    THRESHOLD_SHIFT,
    WEIGHT_MAX,
    WEIGHT_MIN,
    FixedConnection,
    FixedNetSpec,
    FixedPopulation,
)
from lavaflow.models.netspec import INPUT, Conv, CubaNeurons, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.neurons import SoftResetParams, rate_normaliser

FIXED_KINDS = ("soft_reset", "cuba")
INT32_MAX = (1 << 31) - 1  # Lava's Dense accumulates W·x and shifts it in int32
MAX_DELAY_STEPS = 1 << 16  # a sanity bound: the ring buffer holds delay + 1 steps of spikes


@dataclass(frozen=True)
class SimulationResult:
    """What one batch produced. B is the batch size, T the number of steps.

    Attributes:
        counts: population name → (B, n) int64 spike counts over the T steps.
        rates: (B, n_source) λ-weighted rates of the readout source, Σ_t λ^{T−t} s[t] / Σ_k λ^k.
        logits: (B, classes) float64, readout.weight @ rates + readout.bias.
        predictions: (B,) int64 arg-max of the logits.
        records: "population.variable" → (T, B, n) per-step values after the reset: "v" (float64, or int64
            in 24-bit LSBs in fixed mode), "u" (CUBA current, same units) and "spikes" (uint8).
    """

    counts: dict[str, np.ndarray]
    rates: np.ndarray
    logits: np.ndarray
    predictions: np.ndarray
    records: dict[str, np.ndarray] = field(default_factory=dict)


def simulate(spec: NetSpec | FixedNetSpec, inputs: np.ndarray, *, record: Sequence[str] = ()) -> SimulationResult:
    """Run a batch through ``spec`` for its ``time_steps`` steps; float64 for a NetSpec, integers for a FixedNetSpec.

    Args:
        spec: the network; its type picks the mode.
        inputs: (T, B, *input_shape) as the data pipeline encodes it: intensities (current encoding, repeated T
            times), 0/1 spikes (rate) or event counts (events). Any real dtype; values are used exactly.
        record: "population.variable" names ("v", "spikes", and "u" for CUBA populations) to keep per step.

    Returns:
        Spike counts, readout rates, logits, predictions and the requested records.

    Raises:
        DataError: ``inputs`` do not match the input shape or ``time_steps``, or hold non-finite values (or
            fixed-mode spikes/events outside 0..255).
        ConfigError: an unknown record name.
        NetSpecError: an invalid FixedNetSpec, or a fixed-mode a_in outside its 18-bit range during the run.
    """
    if isinstance(spec, FixedNetSpec):
        check_fixed_spec(spec)
        drive = input_payload(spec, inputs).astype(np.float64)  # exact: payloads are 0..255
        return _run(_fixed_network(spec, drive.shape[1]), spec.readout, drive, record)
    if isinstance(spec, NetSpec):
        drive = checked_inputs(spec.input.shape, spec.time_steps, inputs)
        return _run(_float_network(spec, drive.shape[1]), spec.readout, drive, record)
    raise TypeError(f"simulate expects a NetSpec or FixedNetSpec, got {type(spec).__name__}")


def input_payload(spec: FixedNetSpec, inputs: np.ndarray) -> np.ndarray:
    """The integer payloads a fixed-point network receives, (T, B, *input_shape) int64 in 0..255.

    Current encoding: round(x / input_scale), half to even, clipped to 0..255: intensities beyond the quantiser's
    input range saturate, as an 8-bit graded spike must. Spikes and event counts are already integers and are
    checked, not clipped: a count above 255 cannot be sent and raises. The Lava exporter calls this function too,
    so both simulators see the same payloads.

    Raises:
        DataError: wrong shape, non-finite values, or spikes/events that are not integers in 0..255.
    """
    values = checked_inputs(spec.input.shape, spec.time_steps, inputs)
    if spec.input.encoding == "current":
        return np.clip(np.rint(values / spec.input_scale), 0, PAYLOAD_MAX).astype(np.int64)
    if np.any(values != np.rint(values)) or values.min(initial=0) < 0 or values.max(initial=0) > PAYLOAD_MAX:
        raise DataError(
            f"{spec.input.encoding} input must hold integers in 0..{PAYLOAD_MAX} (spikes or event counts), got "
            f"values in [{values.min()}, {values.max()}]; re-bin the events so a count fits 8 bits"
        )
    return values.astype(np.int64)


def checked_inputs(input_shape: tuple[int, ...], time_steps: int, inputs: np.ndarray) -> np.ndarray:
    """Return ``inputs`` as C-contiguous float64 (exact for any integer or float dtype) after checking its shape.

    A broadcast (stride-0) array, such as a current-encoded image repeated over T steps, becomes a dense copy:
    ``astype`` would keep the broadcast layout and make every matmul over it several times slower. A C-contiguous
    float64 array is returned as is, not copied; nothing downstream writes to it.
    """
    if not isinstance(inputs, np.ndarray) or inputs.dtype.kind not in "buif":
        raise DataError(f"inputs must be a real numpy array, got {type(inputs).__name__}")
    expected = (time_steps, "B", *input_shape)
    if inputs.ndim != len(expected) or inputs.shape[0] != time_steps or inputs.shape[2:] != tuple(input_shape):
        raise DataError(f"inputs have shape {inputs.shape}; the network expects {expected} (time first)")
    if inputs.shape[1] == 0:
        raise DataError("inputs hold an empty batch")
    values = np.ascontiguousarray(inputs, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise DataError("inputs hold NaN or inf values")
    return values


# ------------------------------------------------------------------------------------------- fixed-spec checks
def check_fixed_spec(spec: FixedNetSpec) -> None:
    """Raise NetSpecError unless every integer of ``spec`` fits its Lava bit width (see models.fixed).

    FixedNetSpec is a plain container, so this is where a hand-built or corrupted one is caught before Lava
    could clip or truncate a value silently (an odd weight, −256 in an inhibitory matrix, an 18-bit vth).
    """
    if not isinstance(spec.time_steps, int) or spec.time_steps < 1:
        raise NetSpecError(f"time_steps must be a positive integer, got {spec.time_steps!r}")
    if not (np.isfinite(spec.input_scale) and spec.input_scale > 0):
        raise NetSpecError(f"input_scale must be a positive finite number, got {spec.input_scale!r}")
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


def _check_integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise NetSpecError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")


def _check_integer_array(name: str, values: object, shape: tuple[int, ...], low: int, high: int) -> None:
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iu":
        raise NetSpecError(f"{name}: expected an integer numpy array, got {getattr(values, 'dtype', type(values))}")
    if values.shape != shape:
        raise NetSpecError(f"{name}: expected shape {shape}, got {values.shape}")
    if values.size and (values.min() < low or values.max() > high):
        raise NetSpecError(f"{name}: values in [{values.min()}, {values.max()}] leave the range [{low}, {high}]")


def _check_population(name: str, population: FixedPopulation) -> None:
    if population.kind not in FIXED_KINDS:
        raise NetSpecError(f"population {name!r}: kind {population.kind!r} is not one of {FIXED_KINDS}")
    _check_integer(f"{name}.size", population.size, 1, np.iinfo(np.int64).max)
    if population.shape and int(np.prod(population.shape)) != population.size:
        raise NetSpecError(f"population {name!r}: shape {population.shape} does not hold {population.size} neurons")
    _check_integer(f"{name}.vth (17-bit unsigned)", population.vth, 0, THRESHOLD_MAX)
    _check_integer(f"{name}.dv (12-bit unsigned)", population.dv, 0, DECAY_MAX)
    _check_integer(f"{name}.bias_exp (3-bit)", population.bias_exp, 0, BIAS_EXP_MAX)
    mantissa_name = f"{name}.bias_mant (13-bit signed)"
    _check_integer_array(mantissa_name, population.bias_mant, (population.size,), BIAS_MANT_MIN, BIAS_MANT_MAX)
    if population.kind == "soft_reset":
        _check_integer(f"{name}.subtraction (a spike must remove charge)", population.subtraction, 1, SUBTRACTION_MAX)
    else:
        _check_integer(f"{name}.du (12-bit unsigned)", population.du, 0, DECAY_MAX)


def _check_connection(spec: FixedNetSpec, index: int, connection: FixedConnection) -> None:
    name = f"connection {index} ({connection.source} → {connection.target})"
    if connection.target not in spec.populations:
        raise NetSpecError(f"{name}: unknown target population {connection.target!r}")
    if connection.source == INPUT:
        n_in, delay_low, delay_high = spec.input.size, 0, 0
    elif connection.source in spec.populations:
        n_in, delay_low, delay_high = spec.populations[connection.source].size, 1, MAX_DELAY_STEPS
    else:
        raise NetSpecError(f"{name}: unknown source {connection.source!r}")
    _check_integer(f"{name}: delay_steps", connection.delay_steps, delay_low, delay_high)
    _check_integer(f"{name}: weight_exp", connection.weight_exp, -31, 31)
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


# ------------------------------------------------------------------------------------------------ synapses
class _DenseSynapse:
    """y = x @ Wᵀ into a preallocated output; fixed mode then applies Lava's weight_exp (see ``_shift``)."""

    def __init__(self, weight: np.ndarray, exponent: int | None, int32_guard: str | None = None) -> None:
        self.weight_t = np.ascontiguousarray(weight.T, dtype=np.float64)
        self.exponent = exponent  # None in float mode
        self.int32_guard = int32_guard  # the connection's name where W·x might overflow Lava's int32, else None

    def apply(self, source: np.ndarray, out: np.ndarray) -> None:
        np.matmul(source, self.weight_t, out=out)
        _shift(out, self.exponent, self.int32_guard)


class _ConvSynapse:
    """Cross-correlation with torch's conv2d in float64 (exact on the integer operands of fixed mode)."""

    def __init__(self, weight: np.ndarray, conv: Conv, exponent: int | None, int32_guard: str | None = None) -> None:
        self.weight = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float64))
        self.conv = conv
        self.exponent = exponent
        self.int32_guard = int32_guard

    def apply(self, source: np.ndarray, out: np.ndarray) -> None:
        images = torch.from_numpy(source).reshape(source.shape[0], *self.conv.input_shape)
        result = functional.conv2d(images, self.weight, stride=self.conv.stride, padding=self.conv.padding)
        np.copyto(out, result.reshape(source.shape[0], -1).numpy())
        if self.exponent is not None:
            np.rint(out, out=out)  # integer operands: removes any rounding a fast conv algorithm might add
        _shift(out, self.exponent, self.int32_guard)


def _shift(values: np.ndarray, exponent: int | None, int32_guard: str | None) -> None:
    """Lava's weight_exp in place on float64 integers: << e is ×2^e, arithmetic >> e is floor(x / 2^e); both exact.

    Lava's Dense holds W·x and its shift in int32. Where the largest possible row sum could overflow it
    (``int32_guard`` names the connection), both are checked, so an overflow raises instead of wrapping.
    """
    if exponent is None:
        return
    if int32_guard is not None:
        _check_int32(int32_guard, values)
    if exponent == 0:
        return
    np.multiply(values, 2.0**exponent, out=values)
    if exponent < 0:
        np.floor(values, out=values)
    elif int32_guard is not None:
        _check_int32(int32_guard, values)


def _check_int32(name: str, values: np.ndarray) -> None:
    if values.min() < -INT32_MAX - 1 or values.max() > INT32_MAX:
        raise NetSpecError(
            f"{name}: W·x reaches [{values.min():.0f}, {values.max():.0f}] and would overflow the "
            f"int32 accumulator of Lava's Dense; quantise with a coarser scale"
        )


def _int32_guard(connection: FixedConnection, name: str, max_payload: int) -> str | None:
    """``name`` where the largest row sum Σ|W|·max payload (before or after << e) could exceed int32, else None."""
    weight = connection.weight
    fan_in = weight[0].size
    scale = max_payload * 2.0 ** max(connection.weight_exp, 0)
    if -WEIGHT_MIN * fan_in * scale <= INT32_MAX:  # the crude bound settles it for most layers, without a pass
        return None
    row_sum = float(np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max(initial=0))
    return name if row_sum * scale > INT32_MAX else None


Synapse = _DenseSynapse | _ConvSynapse


def _synapse(weight: np.ndarray, conv: Conv | None, exponent: int | None, int32_guard: str | None = None) -> Synapse:
    if conv is None:
        return _DenseSynapse(weight, exponent, int32_guard)
    return _ConvSynapse(weight, conv, exponent, int32_guard)


# ------------------------------------------------------------------------------------------------ neurons
class _FloatSoftReset:
    """soft_reset_step of models.neurons in float64, in Lava's order: v ← λ·v + a_in + bias; s = [v ≥ θ]; v −= s·D.

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


class _FloatCuba:
    """Lava's LIF floating_pt: u ← (1−du)·u + a_in; v ← (1−dv)·v + u + bias; s = [v > θ]; v ← v·(1 − s)."""

    def __init__(self, neurons: CubaNeurons, batch: int) -> None:
        self.current_keep, self.voltage_keep = 1.0 - neurons.current_decay, 1.0 - neurons.voltage_decay
        self.threshold = neurons.threshold
        self.bias = neurons.bias.astype(np.float64)
        self.state = {"u": np.zeros((batch, neurons.size)), "v": np.zeros((batch, neurons.size))}
        self.scratch = np.zeros((batch, neurons.size))

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
        current, voltage = self.state["u"], self.state["v"]
        np.multiply(current, self.current_keep, out=current)
        current += a_in
        np.multiply(voltage, self.voltage_keep, out=voltage)
        voltage += current
        voltage += self.bias
        np.greater(voltage, self.threshold, out=spikes)
        np.subtract(1.0, spikes, out=self.scratch)
        voltage *= self.scratch


class _FixedNeurons:
    """Shared integer machinery of both fixed-point kinds: a_in conversion, bias, decay, saturation."""

    def __init__(self, population: FixedPopulation, batch: int, names: tuple[str, ...]) -> None:
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


class _FixedSoftReset(_FixedNeurons):
    """v = saturate(decay(v, dv) + (a_in << 6) + bias); s = [v ≥ vth << 6]; v −= s·(subtraction << 6)."""

    def __init__(self, population: FixedPopulation, batch: int) -> None:
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


class _FixedCuba(_FixedNeurons):
    """Lava's PyLifModelBitAcc: u = wrap(decay(u, du + 1) + (a_in << 6)); v = saturate(decay(v, dv) + u + bias)."""

    def __init__(self, population: FixedPopulation, batch: int) -> None:
        super().__init__(population, batch, ("u", "v"))
        self.current_keep = DECAY_UNITY - (population.du + 1)  # Lava's ds_offset = 1

    def step(self, a_in: np.ndarray, spikes: np.ndarray) -> None:
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
        np.less_equal(voltage, self.threshold, out=self.fired)  # fired holds "did not fire" here
        voltage *= self.fired
        np.logical_not(self.fired, out=self.fired)
        np.copyto(spikes, self.fired)


Neurons = _FloatSoftReset | _FloatCuba | _FixedSoftReset | _FixedCuba


# ------------------------------------------------------------------------------------------------ the loop
@dataclass
class _Incoming:
    source: str
    delay_steps: int
    synapse: Synapse


@dataclass
class _Population:
    name: str
    size: int
    neurons: Neurons
    incoming: list[_Incoming]


@dataclass
class _Network:
    populations: list[_Population]
    fixed: bool  # fixed mode checks a_in against its 18-bit range every step


def _float_network(spec: NetSpec, batch: int) -> _Network:
    populations = []
    for name, neurons in spec.populations.items():
        kernel: Neurons
        if isinstance(neurons, SoftResetNeurons):
            kernel = _FloatSoftReset(neurons, batch)
        else:
            kernel = _FloatCuba(neurons, batch)
        incoming = []
        for c in spec.incoming(name):
            conv = c.synapse if isinstance(c.synapse, Conv) else None
            incoming.append(_Incoming(c.source, c.delay_steps, _synapse(c.synapse.weight, conv, None)))
        populations.append(_Population(name, neurons.size, kernel, incoming))
    return _Network(populations, fixed=False)


def _fixed_network(spec: FixedNetSpec, batch: int) -> _Network:
    populations = []
    for name, population in spec.populations.items():
        kernel: Neurons
        if population.kind == "soft_reset":
            kernel = _FixedSoftReset(population, batch)
        else:
            kernel = _FixedCuba(population, batch)
        incoming = []
        for index, c in enumerate(spec.connections):
            if c.target == name:
                max_payload = PAYLOAD_MAX if c.source == INPUT else 1
                guard = _int32_guard(c, f"connection {index} ({c.source} → {c.target})", max_payload)
                synapse = _synapse(c.weight, c.conv, int(c.weight_exp), guard)
                incoming.append(_Incoming(c.source, c.delay_steps, synapse))
        populations.append(_Population(name, population.size, kernel, incoming))
    return _Network(populations, fixed=True)


def _run(network: _Network, readout: Readout, drive: np.ndarray, record: Sequence[str]) -> SimulationResult:
    """Step the network over ``drive`` (T, B, *input_shape) float64 and summarise."""
    time_steps, batch = drive.shape[:2]
    inputs = drive.reshape(time_steps, batch, -1)
    by_name = {p.name: p for p in network.populations}
    recorders = _recorders(by_name, record, time_steps, batch)
    # Ring buffers of spikes: slot t % length holds step t; a reader with delay d reads slot (t − d) % length.
    longest = {name: 0 for name in by_name}
    for population in network.populations:
        for connection in population.incoming:
            if connection.source != INPUT:
                longest[connection.source] = max(longest[connection.source], connection.delay_steps)
    history = {p.name: np.zeros((longest[p.name] + 1, batch, p.size)) for p in network.populations}
    a_in = {p.name: np.zeros((batch, p.size)) for p in network.populations}
    scratch = {p.name: np.zeros((batch, p.size)) for p in network.populations}
    counts = {p.name: np.zeros((batch, p.size)) for p in network.populations}
    leak = 1.0 - readout.rate_decay
    rate_weights = [leak ** (time_steps - 1 - t) for t in range(time_steps)]  # as neurons.weighted_rate
    weighted = np.zeros((batch, by_name[readout.source].size))

    for t in range(time_steps):
        for population in network.populations:
            total = a_in[population.name]
            for index, connection in enumerate(population.incoming):
                if connection.source == INPUT:
                    source = inputs[t]
                else:
                    buffer = history[connection.source]
                    source = buffer[(t - connection.delay_steps) % buffer.shape[0]]
                if index == 0:
                    connection.synapse.apply(source, total)
                else:
                    connection.synapse.apply(source, scratch[population.name])
                    total += scratch[population.name]
            if not population.incoming:
                total.fill(0.0)
            if network.fixed:
                _check_activation(population.name, t, total)
            buffer = history[population.name]
            spikes = buffer[t % buffer.shape[0]]
            population.neurons.step(total, spikes)
            counts[population.name] += spikes
            if population.name == readout.source:
                weighted += rate_weights[t] * spikes
            for variable, values in recorders.get(population.name, {}).items():
                values[t] = spikes if variable == "spikes" else population.neurons.state[variable]

    rates = weighted / rate_normaliser(time_steps, leak)
    logits = rates @ readout.weight.astype(np.float64).T + readout.bias.astype(np.float64)
    return SimulationResult(
        counts={name: values.astype(np.int64) for name, values in counts.items()},
        rates=rates,
        logits=logits,
        predictions=np.argmax(logits, axis=1).astype(np.int64),
        records={
            f"{name}.{variable}": values for name, group in recorders.items() for variable, values in group.items()
        },
    )


def _check_activation(name: str, step: int, a_in: np.ndarray) -> None:
    low, high = a_in.min(), a_in.max()
    if low < ACTIVATION_MIN or high > ACTIVATION_MAX:
        raise NetSpecError(
            f"population {name!r}, step {step + 1}: a_in reaches [{int(low)}, {int(high)}], beyond the 18-bit range "
            f"[{ACTIVATION_MIN}, {ACTIVATION_MAX}] where a_in << 6 fits Lava's 24-bit state; quantise with a coarser "
            f"scale (a larger threshold unit) or a smaller input range"
        )


def _recorders(
    populations: dict[str, _Population], record: Sequence[str], time_steps: int, batch: int
) -> dict[str, dict[str, np.ndarray]]:
    """Preallocated (T, B, n) arrays for each requested "population.variable"."""
    if isinstance(record, str):
        raise ConfigError(f"record must be a sequence of names, got the string {record!r}")
    recorders: dict[str, dict[str, np.ndarray]] = {}
    for item in record:
        name, _, variable = item.rpartition(".")
        population = populations.get(name)
        valid = ("spikes", *population.neurons.state) if population is not None else ()
        if variable not in valid:
            choices = sorted(f"{p.name}.{v}" for p in populations.values() for v in ("spikes", *p.neurons.state))
            raise ConfigError(f"cannot record {item!r}; choose from {choices}")
        dtype = np.uint8 if variable == "spikes" else population.neurons.state[variable].dtype
        recorders.setdefault(name, {})[variable] = np.zeros((time_steps, batch, population.size), dtype=dtype)
    return recorders
