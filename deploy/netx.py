"""lava-dl netx HDF5 ↔ FixedNetSpec: read a network slayer's ``export_hdf5`` wrote, write one netx runs.

A netx file (lava-dl's ``lava.lib.dl.netx.hdf5.Network`` reads it) holds Loihi integers in numbered groups
``layer/0, layer/1, …``, each with a ``type``. The mapping onto a FixedNetSpec, per block:

- ``input``: its ``shape`` is the network input, (C, H, W) or (n,) in the file (netx reverses it to (x, y, f)).
  With a ``neuron`` group it is also a CUBA population fed one-to-one by the input, each payload weighted by the
  block's ``weight`` (slayer's scale: 64 is 1.0, a whole threshold at vThMant 64; default 64, netx's too). netx
  cannot run such a file on Lava's CPU simulator (its Input block model has no sub-compiler), so this follows
  slayer's Input block, whose forward pass the tests compare against.
- ``dense``: ``weight`` (n_out, n_in) → a Dense connection; per-neuron ``delay`` (netx: one delay per output
  neuron, or per input when only that length fits, or a full (n_out, n_in) matrix) → one connection per distinct
  delay d with delay_steps d + 1 (Lava's DelayDense delivers a delay-0 spike one step later, as Dense does).
- ``conv``: ``weight`` (C_out, C_in/groups, kH, kW) and stride / padding / dilation in (H, W) order → a Conv
  (torch's cross-correlation on (C, H, W); netx flips the kernel into Lava's (x, y, f) convolution, the same map).
- ``pool``: slayer's pooling block, one (kH, kW) kernel applied to every channel → a depthwise Conv (groups = C)
  with that kernel. netx.hdf5.Network does not implement it (NotImplementedError); slayer's forward pass does.
- ``flatten``: C·H·W order (netx transposes (x, y, f) to (f, y, x) before flattening), so nothing to store.
- ``average`` (last block only): slayer's population average, a readout that averages groups of the last spiking
  block's counts; netx does not implement it either.

Neurons (``type`` CUBA or LOIHI): vth = vThMant, du = iDecay − 1, dv = vDecay, bias_mant = bias with bias_exp 6
(netx's constants); kind "cuba", or "cuba_refractory" with refractory = refDelay − 1 when refDelay > 1
(Loihi's refractory delay counts the spike step: 1 is no hold; netx runs Lava's LIF, which ignores refDelay, so
such a file runs differently there). Graded spikes (``gradedSpike`` true or ``messageBits`` > 0) are refused: a
NetSpec population sends 0/1 spikes.

Weights are what netx makes of them: netx rescales each dense matrix (its ``optimize_weight_bits``) and Lava's
Dense clips and truncates the result (``clip_weights``, ``truncate_weights``); ``effective_dense_weights`` repeats
that arithmetic, so the spec holds the integers Lava multiplies with. Each matrix is then stored as even weights
in [−256, 254] with an exponent (models.fixed's contract): as is, doubled with exponent −1, or halved with a
positive exponent, whichever is exact; none exact raises.

Input units. netx adds a graded payload p as p·W: one payload unit is one spike, 1.0 in slayer's units, so
event counts and 0/1 spikes (encodings "rate", "events") read as they are. slayer trains on real-valued input
currents x (W·x, its state kept in 1/4096 of a unit), which no integer payload at that unit can carry: read with
input_scale 1, a digit intensity of 0.4375 becomes payload 0, 0.5625 becomes 1. For current encoding
(``current_input``, or ``read_netx(..., encoding="current")``) the populations the input feeds are re-expressed in
a unit m = 2^k times finer (vth·m, bias·m, payload round(x·m), weights unchanged), m as large as the payloads'
8 bits and the 24-bit states allow. That is exact scaling of the same dynamics except for Lava's truncating
decays, which now cut at 1/(4096·m) instead of 1/4096; slayer truncates at 1/4096, so its spikes can differ in
rare ties, and a power of two keeps the spec dyadic like the float network it was trained as. Lava's a_in enters u
shifted by 6, so no integer spec reproduces slayer's 1/4096 state for real-valued input bit for bit.

Timing: netx's first block receives the input through a Dense, one step late; a NetSpec input connection has
delay 0. On the same input, spike t (1..T) of the spec's population equals spike t + 1 of netx's block, for a
netx run started from rest; counts over the spec's T steps equal netx's over steps 2..T + 1. A bias is the
exception: netx integrates it from step 1, before the input arrives. With a bias on the first layer only, the
spec equals netx run with ``reset_interval`` and ``reset_offset=1`` (LIFReset zeroes layer i at step 2 + i, when
the sample's first input reaches it; pipeline.lava.run.run_netx does this); a bias on a deeper layer drives it in
the spec from step 1 but in netx only from its reset, so those runs differ in the first steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lavaflow.deploy.imported import ImportedNetwork
from lavaflow.models.errors import ConfigError, NetSpecError
from lavaflow.models.fixed import (
    ACTIVATION_MAX,
    ACTIVATION_SHIFT,
    BIAS_MANT_MAX,
    BIAS_MANT_MIN,
    DECAY_UNITY,
    PAYLOAD_MAX,
    THRESHOLD_MAX,
    FixedConnection,
    FixedNetSpec,
    FixedPopulation,
    activation_bounds,
    check_fixed_spec,
)
from lavaflow.models.kinds.cuba_refractory import REFRACTORY_MAX
from lavaflow.models.netspec import INPUT, Conv, Input, NetSpec, Readout

FORMAT = "netx"
BLOCK_TYPES = ("input", "dense", "conv", "pool", "flatten", "average")
NEURON_TYPES = ("CUBA", "LOIHI")  # netx maps both onto Lava's LIF
NETX_BIAS_EXP = 6  # netx hard-codes bias_exp = 6 for CUBA neurons
NETX_MAX_DELAY = 62  # netx clamps larger delays to 62 (Lava's DelayDense max_delay)
INPUT_WEIGHT_UNITY = 64  # slayer's Input block weight 1.0 (weights are exported ×64), netx's default
ENCODINGS = ("rate", "events", "current")  # 0/1 spikes, graded payloads 0..255, real-valued input currents
INPUT_UNIT_KEY = "netx_input_unit"  # metadata: m, payloads per netx input unit (current encoding; absent: 1)
STATE_LIMIT = (1 << 23) - 1  # Lava's u wraps and v saturates beyond this (models.fixed)
_LOW, _HIGH = -256, 254  # models.fixed: even weights in [WEIGHT_MIN, WEIGHT_MAX]


# ------------------------------------------------------------------------------------------------ weights
def netx_weight_pipeline(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """(Lava's integer weights, weight_exp) for a netx dense ``weight``: Lava computes shift(W @ s, weight_exp).

    netx (lava.lib.dl.netx.utils.optimize_weight_bits) scales the matrix up by 2^b so that it fills 8 bits, sets
    weight_exp = −b and a bit count; Lava's Dense (PyDenseModelBitAcc, on its first step) then infers the sign mode
    again, clips to 8 bits and drops the LSBs that bit count leaves out. Repeated here step by step because a
    weight can change on the way (an all-negative matrix whose minimum is −256 loses it to the clip).

    Raises:
        NetSpecError: a matrix netx cannot scale (positive weights above 255 with no negative one).
    """
    weight = weight.astype(np.int64)
    if weight.size == 0 or not np.any(weight):  # netx divides by zero here; Lava sends zeros anyway
        return np.zeros_like(weight), 0
    high, low = int(weight.max()), int(weight.min())
    if (high > 254 and low < 0) or (low < -256 and high > 0):  # netx clips mixed matrices, with a printed warning
        weight = np.clip(weight, -256, 254)
        high, low = int(weight.max()), int(weight.min())
    if high < 0:
        signed, scale = 0, -256 / low
    elif low >= 0:
        signed, scale = 0, 255 / high
    else:
        signed, scale = 1, min(127 / high, -128 / low)
    shift = int(np.floor(np.log2(scale))) + signed
    if shift < 0:
        raise NetSpecError(f"weights up to {high} exceed the 8 bits netx can scale (at most 255)")
    trailing = 8
    while trailing > 0 and np.any(weight % (1 << trailing)):
        trailing -= 1
    num_bits = 8 - shift - (trailing - signed)
    scaled = weight << shift
    # Lava's Dense: sign mode from the scaled values, clip to 8 bits, truncate to num_bits
    if scaled.min(initial=0) >= 0:
        mode_low, mode_high, negate, mixed = 0, 255, False, 0
    elif scaled.max(initial=0) <= 0:
        mode_low, mode_high, negate, mixed = 0, 255, True, 0
    else:
        mode_low, mode_high, negate, mixed = -256, 255, False, 1
    values = -scaled if negate else scaled
    values = np.clip(values, mode_low, mode_high)
    dropped = 8 - num_bits + mixed
    values = (values >> dropped) << dropped
    return (-values if negate else values), -shift


def exact_integer_weights(lava_weight: np.ndarray, weight_exp: int) -> np.ndarray | None:
    """W such that shift(lava_weight @ s, weight_exp) = W @ s for every spike vector s, or None if none exists.

    A right shift floors the sum, so it is exact only when every weight is a multiple of 2^−weight_exp.
    """
    if weight_exp >= 0:
        return lava_weight << weight_exp
    divisor = 1 << -weight_exp
    if np.any(lava_weight % divisor):
        return None
    return lava_weight // divisor


def encode_weights(weight: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """(even weights in [−256, 254], weight_exp) whose shifted products equal ``weight @ s`` exactly.

    Tried in order: as is (exponent 0), doubled (exponent −1: (2W·s) >> 1 = W·s), halved k times (exponent k,
    for multiples of 2^(k+1) beyond 8 bits).

    Raises:
        NetSpecError: naming ``where``: no exact representation (e.g. odd weights beyond ±127).
    """
    weight = weight.astype(np.int64)

    def fits(values: np.ndarray) -> bool:
        if values.size == 0:
            return True
        if np.any(values & 1) or values.min() < _LOW or values.max() > _HIGH:
            return False
        return not (values.min() == _LOW and values.max() <= 0)  # Lava would infer inhibitory and clip −256

    if fits(weight):
        return weight, 0
    if fits(weight * 2):
        return weight * 2, -1
    for exponent in range(1, 8):
        if not np.any(weight % (1 << (exponent + 1))) and fits(weight >> exponent):
            return weight >> exponent, exponent
    raise NetSpecError(
        f"{where}: weights in [{weight.min()}, {weight.max()}] have no exact 8-bit form (even values in "
        f"[{_LOW}, {_HIGH}] times a power of two); re-export them within 8 bits (slayer's quantize_8bit does)"
    )


# ------------------------------------------------------------------------------------------------ reading
class _File:
    """The open HDF5 file and its name, for error messages that say where and what to do."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path, self.handle = path, handle

    def fail(self, block: int | None, message: str, fix: str) -> NetSpecError:
        where = f"{self.path}" if block is None else f"{self.path}, layer {block}"
        return NetSpecError(f"{where}: {message}. {fix}")


def _text(value: Any) -> str:
    raw = value[()]
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1)[0] if raw.size else b""
    return raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)


def _array(file: _File, block: int | None, group: Any, key: str, *, integer: bool = True) -> np.ndarray:
    """A dataset as an int64 (or float) array, refusing NaN/inf; netx truncates reals to integers (astype(int))."""
    import h5py

    item = group.get(key)
    if not isinstance(item, h5py.Dataset):
        raise file.fail(block, f"no {key!r} dataset", "re-export the network with slayer's export_hdf5")
    values = np.asarray(item[()])
    if values.dtype.kind not in "biuf":
        raise file.fail(block, f"{key!r} holds {values.dtype} values, not numbers", "re-export the network")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise file.fail(
            block, f"{key!r} holds NaN or inf values",
            "the training run diverged (netx would cast them to integers and run silently): retrain or re-export",
        )
    if not integer:
        return values.astype(np.float64)
    if values.size and np.abs(values).max() >= 2**31:
        raise file.fail(block, f"{key!r} holds values beyond 32 bits", "re-export the network with Loihi integers")
    return np.trunc(values).astype(np.int64)


def _scalar(file: _File, block: int, group: Any, key: str, default: int | None = None) -> int:
    if key not in group and default is not None:
        return default
    values = _array(file, block, group, key).reshape(-1)
    if values.size != 1:
        raise file.fail(block, f"{key!r} should hold one number, got {values.size}", "re-export the network")
    return int(values[0])


def _pair(file: _File, block: int, group: Any, key: str, default: int) -> tuple[int, int]:
    """A (height, width) pair from a scalar or a 2-vector (slayer writes (H, W); netx reverses it to (x, y))."""
    if key not in group:
        return (default, default)
    values = _array(file, block, group, key).reshape(-1)
    if values.size == 1:
        return (int(values[0]), int(values[0]))
    if values.size != 2:
        raise file.fail(block, f"{key!r} should hold one or two numbers, got {values.size}", "re-export the network")
    return (int(values[0]), int(values[1]))


def _neuron(file: _File, block: int, group: Any, shape: tuple[int, ...], bias: np.ndarray) -> FixedPopulation:
    """The CUBA population of a block: netx's get_neuron_params, onto kinds "cuba" / "cuba_refractory"."""
    import h5py

    neuron = group.get("neuron")
    if not isinstance(neuron, h5py.Group):
        raise file.fail(
            block, "no 'neuron' group", "netx would run the block as a non-spiking integrator whose output never "
            "spikes; export the block with its neurons (slayer blocks do)",
        )
    kind = _text(neuron["type"]) if "type" in neuron else "?"
    if kind not in NEURON_TYPES:
        raise file.fail(
            block, f"neuron type {kind!r} is not supported (lavaflow reads {', '.join(NEURON_TYPES)})",
            "SDNN, RF and other netx neurons have no lavaflow kind; export a CUBA network",
        )
    graded = bool(_scalar(file, block, neuron, "gradedSpike", 0))
    message_bits = _scalar(file, block, neuron, "messageBits", 0)
    if graded or message_bits > 0:
        raise file.fail(
            block, "graded spikes (gradedSpike or messageBits > 0) are unsupported",
            "a NetSpec population sends 0/1 spikes; export the network with graded_spike=False",
        )
    i_decay = _scalar(file, block, neuron, "iDecay")
    v_decay = _scalar(file, block, neuron, "vDecay")
    threshold = _scalar(file, block, neuron, "vThMant")
    refractory = _scalar(file, block, neuron, "refDelay", 1)
    if not 1 <= i_decay <= 4096:
        raise file.fail(
            block, f"iDecay {i_decay} is outside 1..4096 (Lava's du = iDecay − 1 must fit 12 bits; iDecay 0, a "
            f"current that never decays, is outside the cuba kind's du range)",
            "train with a current decay in (0, 1]",
        )
    if not 0 <= v_decay <= 4095:
        raise file.fail(block, f"vDecay {v_decay} is outside 0..4095 (12 bits)", "train with a voltage decay < 1")
    if not 0 <= threshold < (1 << 17):
        raise file.fail(block, f"vThMant {threshold} is outside 0..131071 (17 bits)", "re-export the network")
    if not 0 <= refractory - 1 <= REFRACTORY_MAX:
        raise file.fail(block, f"refDelay {refractory} is outside 1..{REFRACTORY_MAX + 1}", "re-export the network")
    size = int(np.prod(shape))
    return FixedPopulation(
        kind="cuba" if refractory <= 1 else "cuba_refractory",
        size=size,
        vth=threshold,
        dv=v_decay,
        bias_mant=bias,
        bias_exp=NETX_BIAS_EXP,
        scale=1.0 / 64,  # slayer's units: vThMant 64 is a threshold of 1.0
        du=i_decay - 1,
        shape=tuple(shape) if len(shape) > 1 else (),
        refractory=max(refractory - 1, 0),
    )


def _bias(file: _File, block: int, group: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Per-neuron bias_mant in C·H·W order: netx accepts one per neuron in (x, y, f) layout, one per channel, or
    (dense) a scalar or a vector."""
    size = int(np.prod(shape))
    if "bias" not in group:
        return np.zeros(size, dtype=np.int64)
    bias = _array(file, block, group, "bias")
    if len(shape) == 1:
        if bias.size == 1:
            return np.full(size, int(bias.reshape(-1)[0]), dtype=np.int64)
        if bias.size == size:
            return bias.reshape(-1)
    elif list(bias.shape) == list(shape[::-1]):  # per neuron, netx's (x, y, f)
        return np.ascontiguousarray(bias.transpose(2, 1, 0)).reshape(-1)
    elif bias.ndim == 1 and bias.size == shape[0]:  # per channel
        return np.repeat(bias, size // shape[0])
    raise file.fail(
        block, f"bias of shape {bias.shape} fits neither the block's {size} neurons nor its channels",
        "re-export the network",
    )


def _check_bias(file: _File, block: int, bias: np.ndarray) -> None:
    if bias.size and (bias.min() < -4096 or bias.max() > 4095):
        raise file.fail(
            block, f"bias in [{bias.min()}, {bias.max()}] leaves Lava's 13-bit bias_mant", "re-export the network"
        )


def _delays(file: _File, block: int, group: Any, weight: np.ndarray) -> np.ndarray | None:
    """netx's (n_out, n_in) delay matrix of a dense block (None without delays)."""
    if "delay" not in group:
        return None
    delay = _array(file, block, group, "delay")
    if delay.size and (delay.min() < 0 or delay.max() > NETX_MAX_DELAY):
        raise file.fail(
            block, f"delays in [{delay.min()}, {delay.max()}] leave 0..{NETX_MAX_DELAY}",
            f"netx clamps them to {NETX_MAX_DELAY} silently; re-export with delays of at most {NETX_MAX_DELAY} steps",
        )
    n_out, n_in = weight.shape
    if delay.size == 1:
        return np.full(weight.shape, int(delay.reshape(-1)[0]), dtype=np.int64)
    if delay.ndim == 1 and delay.size == n_out:  # axonal: one per output neuron (netx checks this first)
        return np.repeat(delay.reshape(-1, 1), n_in, axis=1)
    if delay.ndim == 1 and delay.size == n_in:
        return np.repeat(delay.reshape(1, -1), n_out, axis=0)
    if delay.shape == weight.shape:
        return delay
    raise file.fail(block, f"delay of shape {delay.shape} does not fit weight {weight.shape}", "re-export the network")


def read_netx(
    path: str | os.PathLike, *, time_steps: int = 32, encoding: str = "rate", input_range: float = 1.0
) -> ImportedNetwork:
    """Read a lava-dl netx HDF5 file into a FixedNetSpec holding its Loihi integers (the module says how).

    Args:
        path: the file (slayer's ``export_hdf5``, or ``write_netx``).
        time_steps: T, the steps per sample the spec runs (netx files do not say).
        encoding: "rate" for 0/1 input spikes (netx's input_message_bits 0), "events" for graded input payloads
            (one payload unit is one spike), "current" for real-valued input currents as slayer trains on them
            (``current_input``).
        input_range: current encoding only: the largest input value to expect (larger ones are clipped).

    Returns:
        An ImportedNetwork: the FixedNetSpec (readout: the last block's spike counts, or a file's ``average`` block,
        or the readout ``write_netx`` stored), format "netx", neuron model "CUBA", reset mode "zero".

    Raises:
        NetSpecError: one paragraph naming the file, the block and the fix: not HDF5, no ``layer`` group, an unknown
            or unsupported block or neuron, NaN/inf values, shapes that do not chain from block to block.
        ConfigError: current encoding with an input_range outside (0, 255].
    """
    import h5py

    if encoding not in ENCODINGS:
        raise NetSpecError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    path = Path(path)
    if not path.is_file():
        raise NetSpecError(f"{path}: no such file; export the network with a slayer network's export_hdf5")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise NetSpecError(
            f"{path} is not an HDF5 file ({error}); netx networks are the HDF5 files slayer's export_hdf5 writes"
        ) from None
    with handle:
        try:
            spec = _read(_File(path, handle), time_steps, encoding)
        except NetSpecError as error:
            message = str(error)
            raise NetSpecError(message if str(path) in message else f"{path}: {message}") from None
        except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            raise NetSpecError(
                f"{path}: not a readable netx network ({type(error).__name__}: {error}); re-export it with "
                f"slayer's export_hdf5"
            ) from None
    if encoding == "current":
        spec = current_input(spec, input_range)
    return ImportedNetwork(spec=spec, format=FORMAT, neuron_model="CUBA", reset_mode="zero")


def current_input(spec: FixedNetSpec, input_range: float = 1.0) -> FixedNetSpec:
    """``spec`` (read from a netx file) driven by real-valued input currents in [0, input_range], as slayer was.

    netx's payload unit is a whole spike, so a current-encoded x would be rounded to an integer (with input_scale 1,
    every digit intensity below 0.5 vanishes). This re-expresses each population the input feeds in a unit
    m = 2^k times finer: vth·m, bias·m, scale/m, input_scale 1/m, so a payload round(x·m) adds exactly W·x of the
    file's units. k is the largest for which round(input_range·m) fits the 8-bit payload and, for every input
    within the range, a_in fits its 18 bits and Lava's 24-bit u and v can neither wrap nor saturate (worst cases
    over ``spec.time_steps``); the result's metadata holds m (``INPUT_UNIT_KEY``), and a spec already converted is
    converted again from its netx units. Where k must be below the data's own grid (1/16 for sklearn digits), the
    payloads round.

    Raises:
        ConfigError: input_range not a positive finite number up to 255.
        NetSpecError: a population fed by the input and by another population (netx chains have none), or one
            whose threshold or bias cannot be represented even at m = 1.
    """
    if not (isinstance(input_range, (int, float)) and np.isfinite(input_range) and 0 < input_range <= PAYLOAD_MAX):
        raise ConfigError(
            f"input_range {input_range!r} must be a positive number up to {PAYLOAD_MAX} (the largest input current; "
            f"netx payloads are 8 bits of whole spikes)"
        )
    spec = _netx_units(spec)
    fed = sorted({c.target for c in spec.connections if c.source == INPUT})
    for name in fed:
        others = [c.source for c in spec.connections if c.target == name and c.source != INPUT]
        if others:
            raise NetSpecError(
                f"population {name!r} is fed by the input and by {others[0]!r}; a finer input unit would need those "
                f"weights rescaled too, and netx chains have no such population"
            )
    shift = int(np.floor(np.log2(PAYLOAD_MAX / float(input_range))))
    for k in range(max(shift, 0), -1, -1):
        candidate = _in_input_unit(spec, fed, 1 << k)
        if k == 0 or _fits(candidate, fed, round(float(input_range) * (1 << k))):
            return candidate
    raise AssertionError("unreachable")  # k = 0 returns above


def _netx_units(spec: FixedNetSpec) -> FixedNetSpec:
    """``spec`` with a previous ``current_input`` undone (exact: its values were multiplied by an integer)."""
    unit = int(spec.metadata.get(INPUT_UNIT_KEY, "1"))
    if unit == 1:
        return spec
    populations = dict(spec.populations)
    for name in {c.target for c in spec.connections if c.source == INPUT}:
        p = populations[name]
        populations[name] = replace(p, vth=p.vth // unit, bias_mant=p.bias_mant // unit, scale=p.scale * unit)
    metadata = {key: value for key, value in spec.metadata.items() if key != INPUT_UNIT_KEY}
    return replace(spec, populations=populations, input_scale=1.0, metadata=metadata)


def _in_input_unit(spec: FixedNetSpec, fed: list[str], unit: int) -> FixedNetSpec:
    populations = dict(spec.populations)
    for name in fed:
        p = populations[name]
        populations[name] = replace(
            p, vth=p.vth * unit, bias_mant=np.asarray(p.bias_mant, dtype=np.int64) * unit, scale=p.scale / unit
        )
    metadata = dict(spec.metadata)
    if unit > 1:
        metadata[INPUT_UNIT_KEY] = str(unit)
    return replace(
        spec, input=Input(spec.input.shape, "current"), input_scale=1.0 / unit, populations=populations,
        metadata=metadata,
    )


def _fits(spec: FixedNetSpec, fed: list[str], largest: int) -> bool:
    """Whether every population fed by the input keeps its integers in range for any payloads up to ``largest``.

    Worst cases: a_in within [low, high] (``activation_bounds``); u, which wraps, sums at most
    S_u = min(T, 4096/(du+1)) such steps (its decay keeps a fraction 1 − (du+1)/4096); v stays below its threshold
    plus one step's u + bias (it resets when it crosses), so it never saturates upwards. Downwards v may saturate at
    −(2^23 − 1) where slayer's would go on falling; bounding that too (S_v = min(T, 4096/dv) steps of the lowest
    u) would leave the bptt demo m = 2 instead of 32, and it cannot change a spike while the input current is
    constant (current encoding repeats one intensity): u then moves monotonically towards a_in's sign, so a
    neuron whose v reached the floor keeps falling.
    """
    if largest > PAYLOAD_MAX:
        return False
    bounds = activation_bounds(spec, np.full(spec.input.size, largest, dtype=np.int64))
    steps = spec.time_steps
    for name in fed:
        p = spec.populations[name]
        bias = np.asarray(p.bias_mant, dtype=np.int64)
        if p.vth > THRESHOLD_MAX or bias.min(initial=0) < BIAS_MANT_MIN or bias.max(initial=0) > BIAS_MANT_MAX:
            return False
        low, high = bounds[name]
        if max(-low, high) > ACTIVATION_MAX:
            return False
        held_u = min(steps, DECAY_UNITY / (p.du + 1))
        u_low, u_high = (low << ACTIVATION_SHIFT) * held_u, (high << ACTIVATION_SHIFT) * held_u
        b_high = int(bias.max(initial=0)) << p.bias_exp
        if max(-u_low, u_high) > STATE_LIMIT:
            return False
        if (p.vth << ACTIVATION_SHIFT) + u_high + b_high > STATE_LIMIT:
            return False
    return True


def _read(file: _File, time_steps: int, encoding: str) -> FixedNetSpec:
    import h5py

    layers = file.handle.get("layer")
    if not isinstance(layers, h5py.Group) or len(layers) == 0:
        raise file.fail(None, "no 'layer' group", "this is not a netx network description (slayer export_hdf5)")
    keys = sorted(layers, key=lambda key: int(key) if str(key).isdigit() else -1)
    if keys != [str(i) for i in range(len(keys))]:
        raise file.fail(None, f"layers {keys} are not numbered 0..{len(keys) - 1}", "re-export the network")
    input_shape: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None  # the previous block's output shape
    source = INPUT
    populations: dict[str, FixedPopulation] = {}
    connections: list[FixedConnection] = []
    readout: Readout | None = None
    for index, key in enumerate(keys):
        group = layers[key]
        if not isinstance(group, h5py.Group) or "type" not in group:
            raise file.fail(index, "not a netx block (a group with a 'type')", "re-export the network")
        kind = _text(group["type"])
        if kind not in BLOCK_TYPES:
            raise file.fail(
                index, f"block type {kind!r} is not supported (lavaflow reads {', '.join(BLOCK_TYPES)})",
                "export the network without it",
            )
        if readout is not None:
            raise file.fail(index, f"a {kind!r} block follows the 'average' block", "average must be the last block")
        if kind == "input":
            if index != 0:
                raise file.fail(index, "an 'input' block after the first", "put the input block first")
            input_shape = tuple(int(n) for n in _array(file, index, group, "shape").reshape(-1))
            shape = input_shape
            if "neuron" in group:
                source = _read_input_neurons(file, index, group, input_shape, populations, connections)
            continue
        if kind == "flatten":
            if shape is None:
                raise file.fail(index, "flatten before any block with a shape", "start with an input or conv block")
            shape = (int(np.prod(shape)),)
            continue
        if kind == "average":
            if source == INPUT:
                raise file.fail(index, "average without a spiking block before it", "average the last block")
            outputs = int(np.prod(_array(file, index, group, "shape")))
            size = populations[source].size
            if outputs < 1 or size % outputs:
                raise file.fail(index, f"{size} neurons do not split into {outputs} groups", "re-export the network")
            weight = np.kron(np.eye(outputs), np.full((1, size // outputs), outputs / size))
            readout = Readout(source, weight, np.zeros(outputs))
            continue
        block_shape = tuple(int(n) for n in _array(file, index, group, "shape").reshape(-1))
        if shape is None:
            if kind == "dense":
                weight = _array(file, index, group, "weight")
                shape = (int(weight.reshape(int(np.prod(block_shape)), -1).shape[1]),)
            else:
                raise file.fail(
                    index, f"the first block is a {kind} without an input block giving its input shape",
                    "export the network with an input block first (netx needs its shape too)",
                )
            input_shape = shape
        name = f"{kind}{index}"
        reader = _BLOCK_READERS[kind]
        population, new = reader(file, index, group, name, source, shape, block_shape)
        populations[name] = population
        connections.extend(new)
        source, shape = name, block_shape
    if source == INPUT:
        raise file.fail(None, "no spiking block (dense, conv or pool)", "export a network with at least one layer")
    if readout is None:
        readout = _stored_readout(file, source, populations[source].size)
    return FixedNetSpec(
        input=Input(input_shape or shape, "rate" if encoding == "rate" else "events"),  # current: read_netx
        input_scale=1.0,
        populations=populations,
        connections=tuple(connections),
        readout=readout,
        time_steps=time_steps,
        metadata={"format": FORMAT, "source_file": file.path.name},
    )


def _read_input_neurons(
    file: _File, index: int, group: Any, shape: tuple[int, ...], populations: dict, connections: list
) -> str:
    """slayer's Input block with neurons: the input, weighted one-to-one, drives a CUBA population."""
    if "bias" in group and np.any(_array(file, index, group, "bias")):
        raise file.fail(
            index, "an input block with a bias is unsupported (netx keeps it as a transform it never applies)",
            "export the input block without a bias",
        )
    weight = _scalar(file, index, group, "weight", INPUT_WEIGHT_UNITY)  # a payload of 1 adds weight to a_in
    name = "input_neurons"
    size = int(np.prod(shape))
    population = _neuron(file, index, group, shape, np.zeros(size, dtype=np.int64))
    populations[name] = population
    matrix, exponent = encode_weights(np.eye(size, dtype=np.int64) * weight, "input block")
    connections.append(FixedConnection(INPUT, name, matrix, exponent, 0))
    return name


def _read_dense(
    file: _File, index: int, group: Any, name: str, source: str, shape: tuple[int, ...], block_shape: tuple[int, ...]
) -> tuple[FixedPopulation, list[FixedConnection]]:
    if "weight/imag" in group or "weight_rec" in group:
        raise file.fail(index, "complex or recurrent dense weights are unsupported", "export a plain dense block")
    size = int(np.prod(block_shape))
    weight = _array(file, index, group, "weight")
    if weight.ndim == 1:
        weight = weight.reshape(size, -1) if size and weight.size % size == 0 else weight.reshape(1, -1)
    n_in = int(np.prod(shape))
    if weight.shape != (size, n_in):
        raise file.fail(
            index, f"weight {weight.shape} does not map the previous block's {n_in} outputs onto its {size} neurons",
            "the blocks do not chain: re-export the network",
        )
    bias = _bias(file, index, group, (size,))
    _check_bias(file, index, bias)
    population = _neuron(file, index, group, block_shape, bias)
    lava_weight, exponent = netx_weight_pipeline(weight)
    exact = exact_integer_weights(lava_weight, exponent)
    if exact is None:  # netx's scaling keeps multiples of 2^b, so this would be a netx change
        raise file.fail(index, "netx's weight scaling leaves a remainder", "re-export the weights within 8 bits")
    delays = _delays(file, index, group, weight)
    if delays is None:
        delays = np.zeros(weight.shape, dtype=np.int64)
    elif source == INPUT and np.any(delays[exact != 0]):
        raise file.fail(
            index, "delays on the first block's input synapses cannot be expressed (a NetSpec input connection has "
            "delay 0)", "train the first block without delays",
        )
    connections = []
    for delay in np.unique(delays):
        part = np.where(delays == delay, exact, 0)
        if len(connections) and not np.any(part):
            continue
        matrix, weight_exp = encode_weights(part, f"layer {index} ({name})")
        steps = 0 if source == INPUT else int(delay) + 1
        connections.append(FixedConnection(source, name, matrix, weight_exp, steps))
    return population, connections


def _read_conv(
    file: _File, index: int, group: Any, name: str, source: str, shape: tuple[int, ...], block_shape: tuple[int, ...]
) -> tuple[FixedPopulation, list[FixedConnection]]:
    if "weight/imag" in group:
        raise file.fail(index, "complex conv weights are unsupported", "export a plain conv block")
    if "delay" in group:
        raise file.fail(index, "conv delays are unsupported (netx ignores them)", "train the conv without delays")
    weight = _array(file, index, group, "weight")
    if weight.ndim == 5 and weight.shape[-1] == 1:
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise file.fail(index, f"conv weight of shape {weight.shape} is not (C_out, C_in/groups, kH, kW)",
                        "re-export the network")
    groups = _scalar(file, index, group, "groups", 1)
    return _conv_block(file, index, group, name, source, shape, block_shape, weight, groups)


def _read_pool(
    file: _File, index: int, group: Any, name: str, source: str, shape: tuple[int, ...], block_shape: tuple[int, ...]
) -> tuple[FixedPopulation, list[FixedConnection]]:
    if "delay" in group:
        raise file.fail(index, "pool delays are unsupported", "train the pool block without delays")
    weight = _array(file, index, group, "weight")
    kernel = weight.reshape(weight.shape[-2:]) if weight.ndim >= 2 else None
    if kernel is None or weight.size != kernel.size or len(shape) != 3:
        raise file.fail(index, f"pool weight {weight.shape} on input {shape} is not one (kH, kW) kernel over "
                        "(C, H, W)", "re-export the network")
    channels = shape[0]
    depthwise = np.repeat(kernel[None, None], channels, axis=0)
    return _conv_block(file, index, group, name, source, shape, block_shape, depthwise, channels)


def _conv_block(
    file: _File, index: int, group: Any, name: str, source: str, shape: tuple[int, ...],
    block_shape: tuple[int, ...], weight: np.ndarray, groups: int,
) -> tuple[FixedPopulation, list[FixedConnection]]:
    if len(shape) != 3 or len(block_shape) != 3:
        raise file.fail(index, f"a convolution from {shape} to {block_shape}; both must be (C, H, W)",
                        "put conv and pool blocks before the flatten block")
    geometry = Conv(
        weight.astype(np.float64), shape, _pair(file, index, group, "stride", 1),
        _pair(file, index, group, "padding", 0), _pair(file, index, group, "dilation", 1), groups,
    )
    if geometry.output_shape != block_shape:
        raise file.fail(
            index, f"the kernel {weight.shape} on input {shape} gives {geometry.output_shape}, but the block says "
            f"{block_shape}", "the blocks do not chain: re-export the network",
        )
    bias = _bias(file, index, group, block_shape)
    _check_bias(file, index, bias)
    population = _neuron(file, index, group, block_shape, bias)
    matrix, exponent = encode_weights(weight, f"layer {index} ({name})")  # Lava's Conv: raw weights, no exponent
    steps = 0 if source == INPUT else 1
    return population, [FixedConnection(source, name, matrix, exponent, steps, geometry)]


_BLOCK_READERS: dict[str, Callable[..., tuple[FixedPopulation, list[FixedConnection]]]] = {
    "dense": _read_dense,
    "conv": _read_conv,
    "pool": _read_pool,
}


def _stored_readout(file: _File, source: str, size: int) -> Readout:
    """The readout write_netx stored beside the layers (netx ignores it), else the identity on the counts."""
    import h5py

    group = file.handle.get("lavaflow_readout")
    if isinstance(group, h5py.Group):
        weight = _array(file, None, group, "weight", integer=False)
        bias = _array(file, None, group, "bias", integer=False)
        decay = float(_array(file, None, group, "rate_decay", integer=False).reshape(-1)[0])
        if weight.ndim == 2 and weight.shape[1] == size:
            return Readout(source, weight, bias, decay)
        raise file.fail(None, f"the stored readout {weight.shape} does not read the last block's {size} neurons",
                        "write the file again with write_netx")
    return Readout(source, np.eye(size), np.zeros(size))


# ------------------------------------------------------------------------------------------------ writing
_EXACT_KINDS = ("cuba", "cuba_refractory")
_APPROXIMATIONS = {
    "soft_reset": "resets to 0 instead of subtracting the threshold, and fires at v > θ instead of v ≥ θ",
    "lif_potential": "drops the leak and reset potentials (leaks to 0, resets to 0)",
    "li": "becomes a CUBA integrator with the largest threshold, which never spikes",
}


def write_netx(spec: FixedNetSpec | NetSpec, path: str | os.PathLike, *, approximate: bool = False) -> None:
    """Write ``spec`` as a netx HDF5 file that lava-dl's ``netx.hdf5.Network`` loads; atomic.

    The spec must be a feed-forward chain (input → p0 → p1 → …; several connections between two populations only
    as delays of one dense matrix) of CUBA populations ("cuba", "cuba_refractory"). A NetSpec is quantised first
    (deploy.quantize). Each connection's weights must be expressible as netx's plain integer weights (netx picks
    its own exponent): weight_exp ≥ 0 as W·2^e within 8 bits, weight_exp < 0 only where every weight is a
    multiple of 2^−e; biases as bias_mant·2^(bias_exp − 6) integers. The readout is stored in a
    ``lavaflow_readout`` group that netx ignores and read_netx reads back.

    Args:
        spec: the network.
        path: the file to write.
        approximate: accept neurons without an exact netx counterpart and inexact weights or biases instead of
            refusing them. What changes: soft-reset neurons reset to 0 instead of subtracting the threshold and
            fire at v > θ instead of v ≥ θ; LIF with leak/reset potentials loses both (leaks and resets to 0);
            a leaky integrator (li) becomes a CUBA population with the largest threshold (it never spikes, as
            before, but netx reads no voltage out); weights and biases are rounded to netx's integers, so
            a_in is rounded where Lava would floor each connection's sum.

    Raises:
        NetSpecError: naming the population or connection and the reason, for anything netx cannot hold exactly
            (unless ``approximate``) or at all (recurrent or skip connections, conv delays).
    """
    if isinstance(spec, NetSpec):
        from lavaflow.deploy.quantize import quantize

        spec, _ = quantize(spec)
    spec = _netx_units(spec)  # a read_netx import driven by currents goes back to the file's units
    check_fixed_spec(spec)
    blocks = _blocks(spec, approximate)
    import h5py

    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(temporary, "w") as handle:
            layers = handle.create_group("layer")
            for index, block in enumerate(blocks):
                group = layers.create_group(str(index))
                for key, value in block.items():
                    if key == "type":
                        group.create_dataset("type", (1,), "S10", [value.encode("ascii")])
                    else:
                        group.create_dataset(key, data=value)
            readout = handle.create_group("lavaflow_readout")
            readout.create_dataset("weight", data=spec.readout.weight.astype(np.float64))
            readout.create_dataset("bias", data=spec.readout.bias.astype(np.float64))
            readout.create_dataset("rate_decay", data=np.array([spec.readout.rate_decay]))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _blocks(spec: FixedNetSpec, approximate: bool) -> list[dict[str, Any]]:
    """The netx blocks of ``spec``, in order: an input block with the shape, then one per population."""
    names = list(spec.populations)
    blocks: list[dict[str, Any]] = [{"type": "input", "shape": np.array(spec.input.shape, dtype=np.int64)}]
    for position, name in enumerate(names):
        source = INPUT if position == 0 else names[position - 1]
        incoming = [c for c in spec.connections if c.target == name]
        for connection in incoming:
            if connection.source != source:
                raise NetSpecError(
                    f"connection {connection.source} → {name}: netx holds a feed-forward chain, each population fed "
                    f"by the one before it ({source}); recurrent and skip connections cannot be written"
                )
        if not incoming:
            raise NetSpecError(f"population {name!r} has no incoming connection; netx blocks each have a synapse")
        population = spec.populations[name]
        neuron, threshold = _neuron_fields(name, population, approximate)
        bias = _netx_bias(name, population, approximate)
        source_shape = spec.input.shape if source == INPUT else (spec.populations[source].shape or
                                                                 (spec.populations[source].size,))
        if incoming[0].conv is None:
            if len(source_shape) > 1:
                blocks.append({"type": "flatten", "shape": np.array([int(np.prod(source_shape))])})
            block = _dense_block(name, incoming, population, approximate)
            block["bias"] = bias
        else:
            block = _conv_write_block(name, incoming, population, approximate)
            shape = population.shape
            per_channel = bias.reshape(shape[0], -1)
            uniform = np.all(per_channel == per_channel[:, :1])
            block["bias"] = per_channel[:, 0] if uniform else bias.reshape(shape).transpose(2, 1, 0)
        if not np.any(bias):
            del block["bias"]
        for key, value in neuron.items():
            block[f"neuron/{key}"] = value
        block["neuron/vThMant"] = threshold
        blocks.append(block)
    return blocks


def _neuron_fields(name: str, population: FixedPopulation, approximate: bool) -> tuple[dict[str, Any], int]:
    kind = population.kind
    if kind not in _EXACT_KINDS:
        if kind not in _APPROXIMATIONS:
            raise NetSpecError(f"population {name!r}: kind {kind!r} has no netx counterpart")
        if not approximate:
            raise NetSpecError(
                f"population {name!r}: kind {kind!r} has no exact netx counterpart (netx runs Lava's CUBA LIF, "
                f"which resets to 0 and fires at v > θ); as CUBA it {_APPROXIMATIONS[kind]}. Pass approximate=True "
                f"to write it anyway"
            )
    du = population.du if kind in _EXACT_KINDS else 4095  # soft reset / li / lif_potential: no synaptic current
    threshold = (1 << 17) - 1 if kind == "li" else population.vth
    fields = {
        "type": np.bytes_(b"CUBA"),
        "iDecay": np.int64(du + 1),
        "vDecay": np.int64(population.dv),
        "refDelay": np.int64(population.refractory + 1 if kind == "cuba_refractory" else 1),
        "gradedSpike": np.bool_(False),
    }
    return fields, int(threshold)


def _netx_bias(name: str, population: FixedPopulation, approximate: bool) -> np.ndarray:
    """bias_mant·2^bias_exp as netx's bias (bias_exp 6), exactly, or rounded under ``approximate``."""
    shift = population.bias_exp - NETX_BIAS_EXP
    mantissa = population.bias_mant.astype(np.int64)
    if shift >= 0:
        bias = mantissa << shift
    else:
        bias = mantissa >> -shift
        if np.any(bias << -shift != mantissa):
            if not approximate:
                raise NetSpecError(
                    f"population {name!r}: bias_mant·2^{population.bias_exp} is not a multiple of 2^{NETX_BIAS_EXP} "
                    f"(netx's fixed bias_exp); pass approximate=True to round it"
                )
            bias = np.rint(mantissa / float(1 << -shift)).astype(np.int64)
    if bias.size and (bias.min() < -4096 or bias.max() > 4095):
        raise NetSpecError(f"population {name!r}: bias in netx units [{bias.min()}, {bias.max()}] leaves 13 bits")
    return bias


def _plain_weights(label: str, connection: FixedConnection, approximate: bool) -> np.ndarray:
    """The integers netx must hold so that Lava computes shift(W·s, weight_exp) exactly (or rounded)."""
    weight = connection.weight.astype(np.int64)
    exact = exact_integer_weights(weight, int(connection.weight_exp))
    if exact is None:
        if not approximate:
            raise NetSpecError(
                f"{label}: weights {weight.min()}..{weight.max()} with weight_exp {connection.weight_exp} are not "
                f"all multiples of 2^{-connection.weight_exp}; netx chooses its own exponent and holds plain "
                f"integers, so Lava's floor of each sum cannot be reproduced. Pass approximate=True to round them"
            )
        exact = np.rint(weight / float(1 << -int(connection.weight_exp))).astype(np.int64)
    return exact


def _check_netx_roundtrip(label: str, weight: np.ndarray) -> None:
    """Refuse weights netx's own scaling would change (e.g. −256 in a matrix without positive weights)."""
    if weight.size and (weight.min() < -256 or weight.max() > 255):
        raise NetSpecError(f"{label}: weights in [{weight.min()}, {weight.max()}] leave netx's 8 bits")
    lava_weight, exponent = netx_weight_pipeline(weight)
    if not np.array_equal(exact_integer_weights(lava_weight, exponent), weight):
        raise NetSpecError(f"{label}: netx's weight scaling would change these weights (Lava clips or truncates them)")


def _dense_block(
    name: str, incoming: list[FixedConnection], population: FixedPopulation, approximate: bool
) -> dict[str, Any]:
    label = f"connection {incoming[0].source} → {name}"
    weight = np.zeros(incoming[0].weight.shape, dtype=np.int64)
    delay = np.zeros(weight.shape, dtype=np.int64)
    taken = np.zeros(weight.shape, dtype=bool)
    for connection in incoming:
        part = _plain_weights(label, connection, approximate)
        used = part != 0
        if np.any(taken & used):
            raise NetSpecError(f"{label}: two delays on one synapse; a netx dense block holds one delay per synapse")
        weight[used] = part[used]
        delay[used] = max(int(connection.delay_steps) - 1, 0)
        taken |= used
    _check_netx_roundtrip(label, weight)
    block: dict[str, Any] = {
        "type": "dense",
        "shape": np.array([population.size]),
        "inFeatures": np.int64(weight.shape[1]),
        "outFeatures": np.int64(weight.shape[0]),
        "weight": weight.astype(np.float32),
    }
    if np.any(delay):
        rows_uniform = np.all(np.where(taken, delay, delay.max(axis=1, keepdims=True)) ==
                              delay.max(axis=1, keepdims=True))
        block["delay"] = delay.max(axis=1).astype(np.float32) if rows_uniform else delay.astype(np.float32)
    return block


def _conv_write_block(
    name: str, incoming: list[FixedConnection], population: FixedPopulation, approximate: bool
) -> dict[str, Any]:
    label = f"connection {incoming[0].source} → {name}"
    if len(incoming) != 1 or (incoming[0].source != INPUT and incoming[0].delay_steps != 1):
        raise NetSpecError(f"{label}: a delayed or split convolution; netx convs have no delays")
    connection = incoming[0]
    geometry = connection.conv
    assert geometry is not None
    weight = _plain_weights(label, connection, approximate)
    if weight.size and (weight.min() < -256 or weight.max() > 255):
        raise NetSpecError(f"{label}: kernel weights in [{weight.min()}, {weight.max()}] leave 8 bits")
    return {
        "type": "conv",
        "shape": np.array(population.shape),
        "inChannels": np.int64(geometry.input_shape[0]),
        "outChannels": np.int64(weight.shape[0]),
        "kernelSize": np.array(weight.shape[2:]),
        "stride": np.array(geometry.stride),
        "padding": np.array(geometry.padding),
        "dilation": np.array(geometry.dilation),
        "groups": np.int64(geometry.groups),
        "weight": weight.astype(np.float32),
    }
