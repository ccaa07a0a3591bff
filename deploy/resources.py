"""Loihi 2 resource report: what each layer of a FixedNetSpec needs, a partition into neurocores, cores and chips.

What a Loihi 2 user wants to know before booking hardware: will it fit, on how many cores and chips. Per layer
(a population and its incoming connections) the report counts

- neurons, and synapses as a core stores them: a dense (n_out, n_in) matrix stores all n_out·n_in entries (Lava's
  Dense hands the compiler the whole matrix, zeros included), a sparse one its non-zeros, a convolution every
  (output neuron, in-bounds kernel tap) pair, i.e. the unrolled connections without the zero padding (the open
  repos do not document kernel sharing on Loihi 2, so a conv is counted as a Loihi 1 core stores it);
- fan-in (input axons of one neuron) and fan-out (synapses one source neuron drives), weight bits, synaptic memory
  and axon routing (output-axon entries: one per source neuron and destination core, as Loihi routes a spike once
  per core that holds one of its targets);
- a partition: each layer's neurons in contiguous blocks of its partition order (flat, or pixel by pixel with all
  channels together for a (C, H, W) layer, so that a core holds a spatial tile: ``partition_order``), one block per
  core, as few blocks as the per-core limits allow (``CoreLimits``), and cores packed onto chips in order (Lava's
  mapper: chip = core // 128). Blocks differ in size by at most one neuron; a real compiler may balance better.

Synaptic memory per synapse = weight bits + delay bits (+ target-index bits for a sparse connection):

- weight bits: the narrowest integer field holding every mantissa once the power of two common to all of them has
  moved into the exponent, signed where the signs are mixed (Lava's ``optimize_weight_bits`` does the same; shared
  sign modes store excitatory or inhibitory weights without a sign bit). A quantised 8-bit mixed-sign layer needs 8.
- delay bits: bit_length(synaptic delay) for a connection with a synaptic delay, where synaptic delay = delay_steps
  − 1 (Lava's Dense adds one step of its own); 0 otherwise.

Entry headers and neuron state are not counted: their sizes on Loihi 2 are not published. The per-core budget
(``SYNAPTIC_MEMORY_BITS``) is calibrated on the same measure (see ``LIMIT_SOURCES``), so the two stay consistent.

Fit checks (``check_fit``, raising ``DoesNotFitError`` naming every layer at fault and its fix): weight precision
(≤ 8 bits), weight exponent (−8..7), synaptic delay (0..62 steps, i.e. delay_steps 1..63), fan-in (one neuron's
input axons and synaptic memory must fit one core) and fan-out (one neuron's routing entries must fit one core).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse

from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import WEIGHT_EXP_MAX, WEIGHT_EXP_MIN, FixedConnection, FixedNetSpec, FixedPopulation
from lavaflow.models.netspec import INPUT, Conv

# ------------------------------------------------------------------------------------------------ the limits
NEURONS_PER_CORE = 8192
SYNAPTIC_MEMORY_BITS = 48 * 1024 * 8  # 393,216 bits of synapse payload per core (derived, see LIMIT_SOURCES)
INPUT_AXONS_PER_CORE = 4096
OUTPUT_AXONS_PER_CORE = 4096
CORES_PER_CHIP = 128
MAX_WEIGHT_BITS = 8
MAX_SYNAPTIC_DELAY = 62

LIMIT_SOURCES: dict[str, str] = {
    "neurons_per_core": (
        "documented: Loihi 2 holds up to 1,048,576 neurons in 128 neurocores, i.e. 8,192 per core (Intel, 'Taking "
        "Neuromorphic Computing to the Next Level with Loihi 2', technology brief, 2021; research/lava.md §5). "
        "The real count depends on the neuron model's state; Loihi 1 had 1,024 compartments per core."
    ),
    "synaptic_memory_bits": (
        "derived, not documented: Intel's compiler placed lava-dl's trained MNIST netx network (784-128-64-10 "
        "CUBA, 8-bit weights) on 3 + 1 + 1 cores of a real Loihi 2. With 8 bits per synapse the 784×128 layer "
        "(802,816 bits) on 3 cores but not 2 brackets the per-core budget in [267,606, 401,407] bits, and the "
        "128×64 layer (65,536 bits) on 1 core agrees. We take 48 KiB = 393,216 bits inside that bracket: a quarter "
        "of the 192 KB per core Intel quotes for Loihi 2, which is shared with neuron state and axon tables. "
        "(Loihi 1: 16,384 words of 64 bits = 128 KiB of synaptic memory per core, NxTF's ExclusionCriteria, "
        "intel-nrc-ecosystem/models nxsdk_modules_ncl/dnn.)"
    ),
    "input_axons_per_core": (
        "Loihi 1's figure, not documented for Loihi 2: 4,096 input axons per core (NxTF's ExclusionCriteria."
        "maxNumAxons, intel-nrc-ecosystem/models nxsdk_modules_ncl/dnn; Davies et al., IEEE Micro 38(1), 2018)."
    ),
    "output_axons_per_core": (
        "Loihi 1's figure, not documented for Loihi 2: 4,096 output-axon routing entries per core (NxTF's "
        "OutputAxonGroup, intel-nrc-ecosystem/models nxsdk_modules_ncl/dnn/src/data_structures.py)."
    ),
    "cores_per_chip": (
        "documented: 128 neurocores per Loihi 2 chip (Intel's brief; Lava's mapper NUM_VIRTUAL_CORES_L2 = 128, "
        "lava/magma/compiler/subcompilers/constants.py)."
    ),
    "max_weight_bits": (
        "documented: 8-bit weight mantissas with a shared sign mode and exponent (Lava's Dense, "
        "lava/proc/dense/process.py and lava/utils/weightutils.py)."
    ),
    "weight_exp": "documented: Loihi's 4-bit signed weight exponent, −8..7 (Lava's Dense, weightutils).",
    "max_synaptic_delay": (
        "documented: 6-bit synaptic delays, 0..62 on Loihi 2 (lava-dl netx/utils.py num_delay_bits refuses 63; "
        "netx/hdf5.py clips to 62); a NetSpec delay d between populations is Dense's own step plus d − 1."
    ),
}


@dataclass(frozen=True)
class CoreLimits:
    """The per-core and per-chip limits the partition assumes; each is cited or derived in ``LIMIT_SOURCES``."""

    neurons_per_core: int = NEURONS_PER_CORE
    synaptic_memory_bits: int = SYNAPTIC_MEMORY_BITS
    input_axons_per_core: int = INPUT_AXONS_PER_CORE
    output_axons_per_core: int = OUTPUT_AXONS_PER_CORE
    cores_per_chip: int = CORES_PER_CHIP
    max_weight_bits: int = MAX_WEIGHT_BITS
    weight_exp: tuple[int, int] = (WEIGHT_EXP_MIN, WEIGHT_EXP_MAX)
    max_synaptic_delay: int = MAX_SYNAPTIC_DELAY

    def to_dict(self) -> dict[str, object]:
        values = asdict(self)
        values["weight_exp"] = list(self.weight_exp)
        return {name: {"value": value, "source": LIMIT_SOURCES[name]} for name, value in values.items()}


LOIHI2 = CoreLimits()


# ------------------------------------------------------------------------------------------------ fit errors
@dataclass(frozen=True)
class FitProblem:
    """One reason a network cannot be placed on Loihi 2: the layer at fault, what is wrong and how to fix it."""

    layer: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"layer {self.layer!r}: {self.problem}; fix: {self.fix}"


class DoesNotFitError(NetSpecError):
    """The network cannot be placed on Loihi 2; ``problems`` lists each layer at fault with its fix."""

    def __init__(self, problems: list[FitProblem]) -> None:
        self.problems = tuple(problems)
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        super().__init__(f"the network does not fit Loihi 2 ({count}): " + " | ".join(map(str, problems)))


# ------------------------------------------------------------------------------------------------ report records
@dataclass(frozen=True)
class ConnectionResources:
    """One connection as a core stores it. ``macs`` is what the equivalent ANN layer computes per forward pass."""

    label: str
    source: str
    target: str
    kind: str  # "dense", "conv" or "sparse"
    synapses: int
    parameters: int  # distinct weights held in the spec (a conv kernel's size)
    weight_bits: int
    synaptic_delay: int  # steps on top of Dense's own one
    delay_bits: int
    index_bits: int
    bits_per_synapse: int
    synaptic_memory_bits: int
    max_fan_in: int  # most synapses one target neuron receives over this connection
    max_fan_out: int  # most synapses one source neuron drives over this connection
    macs: int


@dataclass(frozen=True)
class Core:
    """One neurocore: a contiguous block of one layer's neurons and what it holds."""

    index: int
    chip: int
    layer: str
    neurons: tuple[int, int]  # [start, stop) of the layer's partition order (``partition_order``)
    synaptic_memory_bits: int
    input_axons: int
    output_axons: int


@dataclass(frozen=True)
class LayerResources:
    """One population and its incoming connections, with its share of the partition."""

    name: str
    kind: str
    neurons: int
    cores: int
    synapses: int
    max_fan_in: int  # input axons of the neuron that reads the most
    max_fan_out: int  # synapses driven by the neuron that drives the most (over all its outgoing connections)
    weight_bits: int  # the widest incoming connection's
    synaptic_memory_bits: int
    max_core_memory_bits: int
    max_core_input_axons: int
    max_core_output_axons: int
    routing_entries: int  # output-axon entries of the whole layer
    order: str = "flat"  # how its neurons are cut into cores: "flat", or "position-major" for a (C, H, W) layer


@dataclass(frozen=True, eq=False)
class ResourceReport:
    """The resource report of a FixedNetSpec: ``str()`` gives the table, ``to_dict()`` the JSON."""

    layers: tuple[LayerResources, ...]
    connections: tuple[ConnectionResources, ...]
    cores: tuple[Core, ...]
    input_neurons: int
    input_routing_entries: int  # spikes the host/embedded cores send into the neurocores, per input neuron and core
    limits: CoreLimits = field(default_factory=CoreLimits)
    # Per source neuron ("input" and each population): synapses it drives over all its outgoing connections, and
    # the destination cores its spikes are routed to. For the energy estimate; not in the JSON.
    fan_out: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    routing: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_cores(self) -> int:
        return len(self.cores)

    @property
    def num_chips(self) -> int:
        return max(1, math.ceil(self.num_cores / self.limits.cores_per_chip))

    @property
    def synapses(self) -> int:
        return sum(c.synapses for c in self.connections)

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.connections)

    def cores_per_layer(self) -> dict[str, int]:
        return {layer.name: layer.cores for layer in self.layers}

    def to_dict(self) -> dict[str, object]:
        return {
            "target": "loihi2",
            "cores": self.num_cores,
            "chips": self.num_chips,
            "cores_per_layer": self.cores_per_layer(),
            "neurons": sum(layer.neurons for layer in self.layers),
            "synapses": self.synapses,
            "ann_macs_per_step": self.macs,
            "input": {"neurons": self.input_neurons, "routing_entries": self.input_routing_entries},
            "layers": [asdict(layer) for layer in self.layers],
            "connections": [asdict(connection) for connection in self.connections],
            "partition": [{**asdict(core), "neurons": list(core.neurons)} for core in self.cores],
            "limits": self.limits.to_dict(),
            "not_counted": (
                "synapse-entry headers, neuron state and axon-table sizes (unpublished for Loihi 2); tile hops"
            ),
        }

    def __str__(self) -> str:
        header = (f"{'layer':<14}{'kind':<16}{'neurons':>8}{'cores':>6}{'synapses':>11}{'fan-in':>8}{'fan-out':>8}"
                  f"{'w bits':>7}{'syn mem KiB':>12}{'in axons':>9}{'out axons':>10}")
        lines = [header, "-" * len(header)]
        lines.append(f"{INPUT:<14}{'(host)':<16}{self.input_neurons:>8}{'-':>6}{'-':>11}{'-':>8}"
                     f"{_input_fan_out(self):>8}{'-':>7}{'-':>12}{'-':>9}{self.input_routing_entries:>10}")
        for layer in self.layers:
            lines.append(
                f"{layer.name[:13]:<14}{layer.kind[:15]:<16}{layer.neurons:>8}{layer.cores:>6}{layer.synapses:>11,}"
                f"{layer.max_fan_in:>8}{layer.max_fan_out:>8}{layer.weight_bits:>7}"
                f"{layer.synaptic_memory_bits / 8192:>12.1f}{layer.max_core_input_axons:>9}"
                f"{layer.max_core_output_axons:>10}"
            )
        limits = self.limits
        lines += [
            f"total: {self.num_cores} neurocores on {self.num_chips} Loihi 2 chip{'s' if self.num_chips > 1 else ''} "
            f"({' + '.join(str(layer.cores) for layer in self.layers)}); {self.synapses:,} synapses; the equivalent "
            f"ANN computes {self.macs:,} MACs per step",
            f"per-core limits assumed: {limits.neurons_per_core} neurons, {limits.synaptic_memory_bits // 8192} KiB "
            f"synaptic memory (derived from a published partition), {limits.input_axons_per_core} input axons, "
            f"{limits.output_axons_per_core} output axons (Loihi 1 figures); {limits.cores_per_chip} cores per chip",
            "in/out axons: the largest per core; syn mem: synapse payload bits (headers are not published)",
        ]
        return "\n".join(lines)


def _input_fan_out(report: ResourceReport) -> int:
    return max([c.max_fan_out for c in report.connections if c.source == INPUT] + [0])


# ------------------------------------------------------------------------------------------------ counting
def weight_bits(weight: np.ndarray) -> int:
    """Bits per stored weight: the narrowest field for the mantissas once their common power of two has moved into
    the exponent (as Lava's ``optimize_weight_bits``), signed only where the signs are mixed. All zero: 1 bit.

    >>> weight_bits(np.array([2, -2, 4, 6, -8]))  # /2 → 1, −1, 2, 3, −4: signed 3 bits
    3
    """
    values = np.asarray(weight).astype(np.int64).ravel()
    values = values[values != 0]
    if values.size == 0:
        return 1
    lowest = np.bitwise_and(np.abs(values), -np.abs(values))  # each value's lowest set bit
    mantissas = values >> (int(lowest.min()).bit_length() - 1)
    high, low = int(mantissas.max()), int(mantissas.min())
    if low < 0 < high:
        return max(high.bit_length(), (-low - 1).bit_length()) + 1
    return max(abs(high), abs(low)).bit_length()


def delay_bits(synaptic_delay: int) -> int:
    """Bits of a per-synapse delay field able to hold ``synaptic_delay`` (0 when there is none)."""
    return int(synaptic_delay).bit_length()


def connection_kind(connection: FixedConnection) -> str:
    if connection.sparse is not None:
        return "sparse"
    return "conv" if connection.conv is not None else "dense"


def partition_order(population: FixedPopulation) -> np.ndarray:
    """The order in which a layer's neurons are cut into cores: position-major for a (C, H, W) population (all
    channels of a pixel together, so that a core holds a spatial tile and reads a compact receptive field, as
    convolution mappers tile feature maps), the flat order otherwise. Core blocks are ranges of this order."""
    shape = tuple(population.shape)
    if len(shape) == 3 and shape[0] > 1:
        return np.arange(population.size).reshape(shape).transpose(1, 2, 0).ravel()
    return np.arange(population.size)


class _Incidence:
    """Which source neurons reach which target neurons over one connection (sparse: no dense matrix of a conv).

    ``per_target[i]``: synapses stored for target i (its fan-in over this connection, every one a distinct source
    neuron), flat order; ``per_source[j]``: synapses source j drives; ``sources(start, stop)``: the flat indices
    of the source neurons with a synapse into the targets ``order[start:stop]`` (the target layer's partition order).
    """

    def __init__(self, connection: FixedConnection, n_in: int, n_out: int, order: np.ndarray) -> None:
        self.n_in = n_in
        self._rows: scipy.sparse.csr_matrix | None = None
        if connection.sparse is None and connection.conv is None:  # dense: every target reads every source
            self.per_target = np.full(n_out, n_in, dtype=np.int64)
            self.per_source = np.full(n_in, n_out, dtype=np.int64)
            return
        if connection.sparse is not None:
            rows, cols = connection.sparse.rows.astype(np.int64), connection.sparse.cols.astype(np.int64)
        else:
            rows, cols, _ = conv_synapses(connection.conv)
        matrix = scipy.sparse.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n_out, n_in))
        self.per_target = np.diff(matrix.indptr).astype(np.int64)
        self.per_source = np.bincount(matrix.indices, minlength=n_in).astype(np.int64)
        self._rows = matrix[order]

    def sources(self, start: int, stop: int) -> np.ndarray:
        if self._rows is None:
            return np.arange(self.n_in)
        pointers = self._rows.indptr
        return np.unique(self._rows.indices[pointers[start]:pointers[stop]])


def conv_synapses(conv: Conv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target, source, kernel entry) flat indices of every synapse a conv stores: each output neuron with each
    in-bounds kernel tap of the input channels of its group (zero padding stores nothing); the kernel entry indexes
    ``conv.weight.ravel()``. torch's conv2d geometry."""
    c_out, out_h, out_w = conv.output_shape
    c_in, height, width = conv.input_shape
    per_group_in, per_group_out = c_in // conv.groups, c_out // conv.groups
    channels_out = np.arange(c_out)[:, None]
    channels_in = (channels_out // per_group_out) * per_group_in + np.arange(per_group_in)[None, :]  # (C_out, C_in/g)
    rows, cols, entries = [], [], []
    k_h, k_w = conv.weight.shape[2:]
    for tap_h in range(k_h):
        in_h = np.arange(out_h) * conv.stride[0] - conv.padding[0] + tap_h * conv.dilation[0]
        valid_h = (in_h >= 0) & (in_h < height)
        for tap_w in range(k_w):
            in_w = np.arange(out_w) * conv.stride[1] - conv.padding[1] + tap_w * conv.dilation[1]
            valid_w = (in_w >= 0) & (in_w < width)
            out_pos = (np.flatnonzero(valid_h)[:, None] * out_w + np.flatnonzero(valid_w)[None, :]).ravel()
            in_pos = (in_h[valid_h][:, None] * width + in_w[valid_w][None, :]).ravel()
            if out_pos.size == 0:
                continue
            target = channels_out[:, :, None] * (out_h * out_w) + out_pos[None, None, :]
            source = channels_in[:, :, None] * (height * width) + in_pos[None, None, :]
            entry = ((np.arange(c_out)[:, None] * per_group_in + np.arange(per_group_in)[None, :]) * (k_h * k_w)
                     + tap_h * k_w + tap_w)
            rows.append(np.broadcast_to(target, source.shape).ravel())
            cols.append(source.ravel())
            entries.append(np.broadcast_to(entry[:, :, None], source.shape).ravel())
    if not rows:
        return (np.zeros(0, dtype=np.int64),) * 3
    return tuple(np.concatenate(part).astype(np.int64) for part in (rows, cols, entries))  # type: ignore[return-value]


def fan_outs(weight: np.ndarray, source_size: int, *, conv: Conv | None = None,
             nonzero_only: bool = False) -> np.ndarray:
    """Per source neuron of a dense or conv connection, the synapses it drives: every stored one (what Loihi
    stores and processes), or with ``nonzero_only`` those whose weight is not zero (the accumulates a spike really
    triggers: the count set against an ANN's multiply-accumulates)."""
    weight = np.asarray(weight)
    if conv is None:  # dense (n_out, n_in): every target reads every source
        return (weight != 0).sum(0) if nonzero_only else np.full(source_size, weight.shape[0], dtype=np.int64)
    _, sources, entries = conv_synapses(conv)
    if nonzero_only:
        sources = sources[weight.ravel()[entries] != 0]
    return np.bincount(sources, minlength=source_size).astype(np.int64)


@dataclass
class _Layer:
    name: str
    kind: str
    size: int
    order: np.ndarray  # partition order (``partition_order``): blocks are ranges of it
    incoming: list[tuple[int, _Incidence, int]]  # (connection index, incidence, bits per synapse)
    memory: np.ndarray  # (size,) synaptic memory bits per neuron, in partition order
    axons: np.ndarray  # (size,) input axons per neuron, in partition order
    cores: int = 1

    def blocks(self) -> list[tuple[int, int]]:
        """The ranges (of the partition order) of its ``cores`` blocks: sizes differ by at most one, larger first."""
        base, extra = divmod(self.size, self.cores)
        bounds = [0]
        for block in range(self.cores):
            bounds.append(bounds[-1] + base + (1 if block < extra else 0))
        return list(itertools.pairwise(bounds))


# ------------------------------------------------------------------------------------------------ checks
def _connection_problems(spec: FixedNetSpec, limits: CoreLimits) -> list[FitProblem]:
    """Weight precision, weight exponent and delay range, connection by connection."""
    problems = []
    for index, connection in enumerate(spec.connections):
        label = f"connection {index} ({connection.source} → {connection.target})"
        weight = np.asarray(connection.weight)
        integral = weight.dtype.kind in "iu" or (
            weight.dtype.kind == "f" and bool(np.all(np.isfinite(weight))) and bool(np.all(weight == np.rint(weight)))
        )
        if not integral:
            problems.append(FitProblem(
                connection.target, f"{label} holds weights that are not integers",
                "quantise the float network with deploy.quantize (lavaflow deploy does) instead of writing weights "
                "into the FixedNetSpec by hand"))
        else:
            bits = weight_bits(weight)
            if bits > limits.max_weight_bits:
                problems.append(FitProblem(
                    connection.target,
                    f"{label} needs {bits}-bit weights (values in [{int(weight.min())}, {int(weight.max())}]), more "
                    f"than the {limits.max_weight_bits}-bit mantissa a Loihi 2 synapse holds",
                    "quantise again with deploy.quantize (even mantissas in [−254, 254], a power of two moved into "
                    "weight_exp), or retrain with 8-bit weight quantisation (slayer's quantize_8bit)"))
        low, high = limits.weight_exp
        exponent = connection.weight_exp
        if not isinstance(exponent, (int, np.integer)) or not low <= int(exponent) <= high:
            problems.append(FitProblem(
                connection.target,
                f"{label} has weight_exp {exponent!r}, outside Loihi's 4-bit weight exponent {low}..{high}",
                "move the excess power of two into the population instead (scale its threshold, bias and every "
                "incoming weight alike), or quantise again with deploy.quantize, which keeps exponents in range"))
        if connection.source != INPUT:
            synaptic = int(connection.delay_steps) - 1
            if not 0 <= synaptic <= limits.max_synaptic_delay:
                problems.append(FitProblem(
                    connection.target,
                    f"{label} has a delay of {connection.delay_steps} steps, i.e. a synaptic delay of {synaptic} "
                    f"on top of Dense's own step, outside Loihi 2's 6-bit range 0..{limits.max_synaptic_delay} "
                    f"(delay_steps 1..{limits.max_synaptic_delay + 1})",
                    f"split the delay over a relay population (an identity layer that fires on every input spike) "
                    f"so that each hop is at most {limits.max_synaptic_delay + 1} steps, or shorten it"))
    return problems


def check_fit(spec: FixedNetSpec, limits: CoreLimits = LOIHI2) -> None:
    """Raise DoesNotFitError naming every layer that cannot be placed on Loihi 2 and its fix; None when it fits.

    Checks weight precision, weight exponent and delay range per connection, then fan-in and fan-out per neuron
    (``resource_report`` runs the same checks before it partitions).
    """
    resource_report(spec, limits)


def resource_report(spec: FixedNetSpec, limits: CoreLimits = LOIHI2) -> ResourceReport:
    """Count what each layer of ``spec`` needs on Loihi 2 and partition it into neurocores within ``limits``.

    Raises:
        DoesNotFitError: one or more layers cannot be placed (weight precision, weight exponent, delay range,
            fan-in, fan-out), each named with its fix.
        NetSpecError: ``spec`` is not a FixedNetSpec.
    """
    if not isinstance(spec, FixedNetSpec):
        raise NetSpecError(f"the resource report reads a FixedNetSpec (quantise first), got {type(spec).__name__}")
    problems = _connection_problems(spec, limits)
    if problems:
        raise DoesNotFitError(problems)
    sizes = {INPUT: spec.input.size, **{name: p.size for name, p in spec.populations.items()}}
    records, incidences = _connection_records(spec)
    layers = _layers(spec, incidences, records)
    problems = _neuron_problems(spec, layers, incidences, limits)
    if problems:
        raise DoesNotFitError(problems)
    routing = _partition(spec, layers, incidences, limits)
    cores = _cores(layers, routing, limits)
    fan_out = {name: np.zeros(size, dtype=np.int64) for name, size in sizes.items()}
    for connection, incidence in zip(spec.connections, incidences, strict=True):
        fan_out[connection.source] += incidence.per_source
    layer_records = []
    for name, layer in layers.items():
        own = [core for core in cores if core.layer == name]
        layer_records.append(LayerResources(
            name=name, kind=spec.populations[name].kind, neurons=layer.size, cores=layer.cores,
            synapses=sum(records[i].synapses for i, _, _ in layer.incoming),
            max_fan_in=int(layer.axons.max(initial=0)), max_fan_out=int(fan_out[name].max(initial=0)),
            weight_bits=max([records[i].weight_bits for i, _, _ in layer.incoming] + [0]),
            synaptic_memory_bits=int(layer.memory.sum()),
            max_core_memory_bits=max(core.synaptic_memory_bits for core in own),
            max_core_input_axons=max(core.input_axons for core in own),
            max_core_output_axons=max(core.output_axons for core in own),
            routing_entries=int(routing[name].sum()),
            order="position-major" if len(spec.populations[name].shape) == 3 and spec.populations[name].shape[0] > 1
            else "flat",
        ))
    return ResourceReport(tuple(layer_records), tuple(records), tuple(cores), spec.input.size,
                          int(routing[INPUT].sum()), limits, fan_out, routing)


def _connection_records(spec: FixedNetSpec) -> tuple[list[ConnectionResources], list[_Incidence]]:
    records, incidences = [], []
    sizes = {INPUT: spec.input.size, **{name: p.size for name, p in spec.populations.items()}}
    for index, connection in enumerate(spec.connections):
        n_in, n_out = sizes[connection.source], sizes[connection.target]
        incidence = _Incidence(connection, n_in, n_out, partition_order(spec.populations[connection.target]))
        kind = connection_kind(connection)
        bits = weight_bits(connection.weight)
        synaptic = 0 if connection.source == INPUT else int(connection.delay_steps) - 1
        delay = delay_bits(synaptic)
        index_bits = max(1, (n_out - 1).bit_length()) if kind == "sparse" else 0
        per_synapse = bits + delay + index_bits
        synapses = int(incidence.per_target.sum())
        records.append(ConnectionResources(
            label=f"connection {index} ({connection.source} → {connection.target})", source=connection.source,
            target=connection.target, kind=kind, synapses=synapses, parameters=int(np.asarray(connection.weight).size),
            weight_bits=bits, synaptic_delay=synaptic, delay_bits=delay, index_bits=index_bits,
            bits_per_synapse=per_synapse, synaptic_memory_bits=synapses * per_synapse,
            max_fan_in=int(incidence.per_target.max(initial=0)), max_fan_out=int(incidence.per_source.max(initial=0)),
            macs=synapses,
        ))
        incidences.append(incidence)
    return records, incidences


def _layers(spec: FixedNetSpec, incidences: list[_Incidence],
            records: list[ConnectionResources]) -> dict[str, _Layer]:
    layers = {}
    for name, population in spec.populations.items():
        memory = np.zeros(population.size, dtype=np.int64)
        axons = np.zeros(population.size, dtype=np.int64)
        incoming = []
        for index, (connection, incidence) in enumerate(zip(spec.connections, incidences, strict=True)):
            if connection.target == name:
                incoming.append((index, incidence, records[index].bits_per_synapse))
                memory += incidence.per_target * records[index].bits_per_synapse
                axons += incidence.per_target  # every synapse of one neuron comes from a distinct source neuron
        order = partition_order(population)
        layers[name] = _Layer(name, population.kind, population.size, order, incoming, memory[order], axons[order])
    return layers


def _neuron_problems(spec: FixedNetSpec, layers: dict[str, _Layer], incidences: list[_Incidence],
                     limits: CoreLimits) -> list[FitProblem]:
    """Fan-in: one neuron alone must fit a core's input axons and synaptic memory."""
    problems = []
    fix = ("reduce the fan-in: replace the dense connection by a sparse or convolutional one, pool or downsample "
           "its source, or split the source population into smaller ones feeding separate target populations")
    for name, layer in layers.items():
        axons, memory = int(layer.axons.max(initial=0)), int(layer.memory.max(initial=0))
        if axons > limits.input_axons_per_core:
            problems.append(FitProblem(name, f"one neuron reads {axons} input axons, more than the "
                                             f"{limits.input_axons_per_core} one core receives", fix))
        elif memory > limits.synaptic_memory_bits:
            problems.append(FitProblem(name, f"one neuron needs {memory} bits of synaptic memory, more than the "
                                             f"{limits.synaptic_memory_bits} bits of one core", fix))
    return problems


# ------------------------------------------------------------------------------------------------ partition
def _block_usage(layer: _Layer, start: int, stop: int) -> tuple[int, int, int]:
    """(neurons, synaptic memory bits, input axons) of one block of ``layer``."""
    axons = sum(int(incidence.sources(start, stop).size) for _, incidence, _ in layer.incoming)
    return stop - start, int(layer.memory[start:stop].sum()), axons


def _routing(spec: FixedNetSpec, layers: dict[str, _Layer], incidences: list[_Incidence]) -> dict[str, np.ndarray]:
    """Per source neuron: output-axon entries, one per destination core holding at least one of its targets."""
    sizes = {INPUT: spec.input.size, **{name: layer.size for name, layer in layers.items()}}
    routing = {name: np.zeros(size, dtype=np.int64) for name, size in sizes.items()}
    for connection, incidence in zip(spec.connections, incidences, strict=True):
        for start, stop in layers[connection.target].blocks():
            routing[connection.source][incidence.sources(start, stop)] += 1
    return routing


def _worst_ratio(layer: _Layer, routing: np.ndarray, limits: CoreLimits) -> float:
    """The largest usage/limit over the blocks of ``layer`` at its current core count (≤ 1: it fits)."""
    worst = 0.0
    for start, stop in layer.blocks():
        neurons, memory, axons = _block_usage(layer, start, stop)
        worst = max(worst, neurons / limits.neurons_per_core, memory / limits.synaptic_memory_bits,
                    axons / limits.input_axons_per_core,
                    int(routing[layer.order[start:stop]].sum()) / limits.output_axons_per_core)
    return worst


def _partition(spec: FixedNetSpec, layers: dict[str, _Layer], incidences: list[_Incidence],
               limits: CoreLimits) -> dict[str, np.ndarray]:
    """Give each layer the fewest cores whose blocks fit every limit; returns the final routing per source neuron.

    A layer's block sizes set the routing of the layers that feed it, so the core counts are raised layer by
    layer until none changes (they only grow, and one neuron per core always fits once ``_neuron_problems`` and
    the routing check below passed, so this ends).
    """
    for layer in layers.values():
        lower = max(math.ceil(layer.size / limits.neurons_per_core),
                    math.ceil(int(layer.memory.sum()) / limits.synaptic_memory_bits), 1)
        layer.cores = min(layer.size, lower)
    while True:
        routing = _routing(spec, layers, incidences)
        _check_fan_out(layers, routing, limits)
        changed = False
        for name, layer in layers.items():
            ratio = _worst_ratio(layer, routing[name], limits)
            while ratio > 1 and layer.cores < layer.size:
                layer.cores = min(layer.size, max(layer.cores + 1, math.ceil(layer.cores * ratio)))
                ratio = _worst_ratio(layer, routing[name], limits)
                changed = True
        if not changed:
            return routing


def _check_fan_out(layers: dict[str, _Layer], routing: dict[str, np.ndarray], limits: CoreLimits) -> None:
    problems = []
    for name in layers:
        widest = int(routing[name].max(initial=0))
        if widest > limits.output_axons_per_core:
            problems.append(FitProblem(
                name, f"one neuron's spikes must reach {widest} cores, more than the {limits.output_axons_per_core} "
                      "output-axon entries one core holds",
                "let fewer cores hold its targets (smaller target layers), or relay its spikes through an "
                "intermediate population"))
    if problems:
        raise DoesNotFitError(problems)


def _cores(layers: dict[str, _Layer], routing: dict[str, np.ndarray], limits: CoreLimits) -> list[Core]:
    cores = []
    for name, layer in layers.items():
        for start, stop in layer.blocks():
            _, memory, axons = _block_usage(layer, start, stop)
            index = len(cores)
            cores.append(Core(index, index // limits.cores_per_chip, name, (start, stop), memory, axons,
                              int(routing[name][layer.order[start:stop]].sum())))
    return cores

