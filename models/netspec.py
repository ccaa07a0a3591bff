"""NetSpec: the framework-neutral description of a trained spiking network.

Every trainer emits one; the exporter, quantiser, resource report and reference simulator read only this.
A NetSpec is an input, named neuron populations (in update order), weighted connections that carry their delay,
and a linear readout of one population: its λ-weighted average spike rate, or its final membrane potential.

Time semantics (the contract every simulator of a NetSpec honours, per sample of ``time_steps`` steps t = 1..T):

    I_p[t] = bias_p + Σ_{c: input→p} W_c · x[t] + Σ_{c: q→p} W_c · s_q[t − delay_c]      (s_q[t ≤ 0] = 0)

Input connections have delay 0 (the input current reaches the first layer in the same step, as in every trainer);
connections between populations have delay ≥ 1 (Lava's Dense sends the previous step's activation). States start at
zero for every sample. The readout sees rate_q = Σ_t λ^{T−t} s_q[t] / Σ_k λ^k (or v_q[T], see Readout) and computes
W·feature + b.

Weights are (n_out, n_in) as in ``torch.nn.Linear`` and Lava's Dense; conv kernels (C_out, C_in/groups, kH, kW) as in
torch (with torch's stride, padding, dilation and groups).
Populations hold flat vectors; ``shape`` records (C, H, W) where a conv reads or writes them.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import scipy.sparse

from lavaflow.models.atomic import atomic_write_bytes
from lavaflow.models.checks import check_array, check_integer, store_real
from lavaflow.models.checks import check_real as check_real  # re-exported: its old home
from lavaflow.models.errors import DataError, NetSpecError
from lavaflow.models.kinds import NODE_CLASSES, kind_of
from lavaflow.models.kinds.base import NeuronNode
from lavaflow.models.kinds.cuba import CubaNeurons as CubaNeurons  # re-exported: trainers and tests import them here
from lavaflow.models.kinds.soft_reset import SoftResetNeurons as SoftResetNeurons

FORMAT_VERSION = 1
INPUT = "input"  # the reserved name of the input node in connections


_array = check_array  # the short names the records below use
_finite = store_real


# ---------------------------------------------------------------------------------------------------- nodes
@dataclass(frozen=True, eq=False)
class Input:
    """The network input: one time step of one sample has ``shape``; ``encoding`` says how data becomes input."""

    shape: tuple[int, ...]
    encoding: str  # "current" (constant intensities), "rate" (Bernoulli spikes) or "events" (event frames)

    ENCODINGS: ClassVar[tuple[str, ...]] = ("current", "rate", "events")

    def __post_init__(self) -> None:
        if self.encoding not in self.ENCODINGS:
            raise NetSpecError(f"input encoding {self.encoding!r} is not one of {self.ENCODINGS}")
        if not isinstance(self.shape, (tuple, list)) or not self.shape:
            raise NetSpecError(f"input shape must be a non-empty tuple, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(check_integer("input shape", d, 1) for d in self.shape))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def checked(self, inputs: object, time_steps: int, dtype: type | None = np.float64) -> np.ndarray:
        """``inputs`` (T, B, *shape) as a C-contiguous ``dtype`` array (None: the inputs' own dtype), after the
        checks every simulator needs (one place).

        A broadcast (stride-0) array, such as a current-encoded image repeated over T steps, becomes a dense copy:
        ``astype`` would keep the broadcast layout and make every matmul over it several times slower. A
        C-contiguous array of the dtype asked for is returned as is, not copied; nothing downstream writes to it.

        Raises:
            DataError: not a real array, a shape other than (time_steps, B ≥ 1, *shape), or bad values
                (``check_values``).
        """
        if not isinstance(inputs, np.ndarray) or inputs.dtype.kind not in "buif":
            raise DataError(f"inputs must be a real numpy array, got {type(inputs).__name__}")
        expected = (time_steps, "B", *self.shape)
        if inputs.ndim != len(expected) or inputs.shape[0] != time_steps or inputs.shape[2:] != self.shape:
            raise DataError(f"inputs have shape {inputs.shape}; the network expects {expected} (time first)")
        if inputs.shape[1] == 0:
            raise DataError("inputs hold an empty batch")
        self.check_values(inputs)
        return np.ascontiguousarray(inputs, dtype=dtype)

    def check_values(self, values: np.ndarray) -> None:
        """Finite values; 0/1 for rate encoding, where Lava's binary synapse would send any non-zero value as 1
        while a float simulator would scale by it, so the backends would silently disagree.

        One pass or two over the data, whatever its dtype (integers are finite; a 0/1 array has every non-zero
        equal to 1), since every run of every backend goes through here."""
        integers = values.dtype.kind in "biu"
        if self.encoding != "rate":
            if not integers and not np.isfinite(values).all():
                raise DataError("inputs hold NaN or inf values")
            return
        if integers:
            binary = values.size == 0 or (values.min() >= 0 and values.max() <= 1)
        else:
            binary = np.count_nonzero(values != 0) == np.count_nonzero(values == 1)  # NaN, inf: non-zero, ≠ 1
        if not binary:
            if not integers and not np.isfinite(values).all():
                raise DataError("inputs hold NaN or inf values")
            raise DataError(
                f"rate-encoded input must hold 0/1 spikes, got values in [{values.min():g}, {values.max():g}]; "
                f"encode intensities as Bernoulli spikes, or build the NetSpec with the current encoding"
            )


# Neuron populations: one node class per kind, defined with the rest of its kind in models.kinds (KINDS lists them).
Neurons = NeuronNode


# ---------------------------------------------------------------------------------------------------- synapses
@dataclass(frozen=True, eq=False)
class Dense:
    """y = weight @ x; weight is (n_out, n_in), as in torch.nn.Linear and Lava's Dense."""

    weight: np.ndarray

    def __post_init__(self) -> None:
        _array("Dense.weight", self.weight, 2)

    @property
    def in_size(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_size(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d) from (C_in, H, W) to (C_out, H', W').

    ``dilation`` spaces the kernel taps (torch's dilation); ``groups`` splits the channels into independent blocks,
    so the kernel is (C_out, C_in/groups, kH, kW) and C_in, C_out are both divisible by it (groups = C_in = C_out:
    depthwise). Files written before these fields existed load with the defaults (1, 1) and 1. Pooling is a
    depthwise Conv with a constant kernel: see ``pool_conv``.
    """

    weight: np.ndarray  # (C_out, C_in/groups, kH, kW)
    input_shape: tuple[int, int, int]  # (C_in, H, W)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        _array("Conv.weight", self.weight, 4)
        for name, low in (("stride", 1), ("padding", 0), ("dilation", 1)):
            pair = getattr(self, name)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise NetSpecError(f"Conv.{name}: expected two integers (height, width), got {pair!r}")
            object.__setattr__(self, name, tuple(check_integer(f"Conv.{name}", n, low) for n in pair))
        object.__setattr__(self, "groups", check_integer("Conv.groups", self.groups, 1))
        c_out, c_in_per_group = (int(n) for n in self.weight.shape[:2])
        if len(self.input_shape) != 3 or self.input_shape[0] != c_in_per_group * self.groups:
            raise NetSpecError(
                f"Conv input shape {self.input_shape} does not match kernel in-channels {c_in_per_group} "
                f"× groups {self.groups}"
            )
        if c_out % self.groups:
            raise NetSpecError(f"Conv out-channels {c_out} are not divisible by groups {self.groups}")
        if min(self.output_shape) <= 0:
            raise NetSpecError(f"Conv with kernel {self.weight.shape} gives an empty output on {self.input_shape}")

    @property
    def output_shape(self) -> tuple[int, int, int]:
        _, height, width = self.input_shape
        k_h, k_w = self.weight.shape[2:]
        span_h = self.dilation[0] * (k_h - 1) + 1
        span_w = self.dilation[1] * (k_w - 1) + 1
        out_h = (height + 2 * self.padding[0] - span_h) // self.stride[0] + 1
        out_w = (width + 2 * self.padding[1] - span_w) // self.stride[1] + 1
        return (int(self.weight.shape[0]), int(out_h), int(out_w))

    @property
    def in_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def out_size(self) -> int:
        return int(np.prod(self.output_shape))


POOL_KINDS = ("sum", "avg")


def pool_conv(
    kind: str,
    input_shape: tuple[int, int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int] | None = None,
    padding: tuple[int, int] = (0, 0),
) -> Conv:
    """SumPool2d / AvgPool2d as a NetSpec synapse: a depthwise Conv (groups = C) with a constant kernel.

    This is how NIR's SumPool2d and AvgPool2d (and torch's pooling layers) map onto a NetSpec: a "sum" pool has
    kernel entries 1, an "avg" pool 1/(kH·kW) (torch's AvgPool2d with count_include_pad=True: zero padding counts).
    ``stride`` defaults to ``kernel``, as in torch. Being an ordinary Conv, it is simulated, quantised (its weights
    are quantised like any other kernel) and lowered to a native grouped convolution by every backend.

    Raises:
        NetSpecError: an unknown kind, or a geometry the Conv refuses.
    """
    if kind not in POOL_KINDS:
        raise NetSpecError(f"pool kind {kind!r} is not one of {POOL_KINDS}")
    if len(input_shape) != 3:
        raise NetSpecError(f"pool input shape must be (C, H, W), got {input_shape!r}")
    k_h, k_w = (check_integer("pool kernel", n, 1) for n in kernel)
    channels = check_integer("pool channels", input_shape[0], 1)
    value = 1.0 if kind == "sum" else 1.0 / (k_h * k_w)
    weight = np.full((channels, 1, k_h, k_w), value, dtype=np.float64)
    stride = (k_h, k_w) if stride is None else stride
    return Conv(weight, tuple(input_shape), tuple(stride), tuple(padding), groups=channels)


@dataclass(frozen=True, eq=False)
class Sparse:
    """y = W @ x for a W given by its non-zeros: ``weight[k]`` at (``rows[k]``, ``cols[k]``) of an (n_out, n_in)
    matrix; lowered to Lava's Sparse process, and counted by its non-zeros in resource reports. NIR's Scale (a
    diagonal) and pruned layers map onto it. Each (row, col) pair appears once.
    """

    weight: np.ndarray  # (nnz,)
    rows: np.ndarray  # (nnz,) target indices, 0..n_out−1
    cols: np.ndarray  # (nnz,) source indices, 0..n_in−1
    shape: tuple[int, int]  # (n_out, n_in)

    def __post_init__(self) -> None:
        _array("Sparse.weight", self.weight, 1)
        if not isinstance(self.shape, (tuple, list)) or len(self.shape) != 2:
            raise NetSpecError(f"Sparse.shape: expected (n_out, n_in), got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(check_integer("Sparse.shape", n, 1) for n in self.shape))
        for name, bound in (("rows", self.shape[0]), ("cols", self.shape[1])):
            index = getattr(self, name)
            if not isinstance(index, np.ndarray) or index.dtype.kind not in "iu" or index.shape != self.weight.shape:
                raise NetSpecError(
                    f"Sparse.{name}: expected an integer array of shape {self.weight.shape} (one per weight), got "
                    f"{getattr(index, 'dtype', type(index).__name__)} {getattr(index, 'shape', '')}"
                )
            if index.size and (index.min() < 0 or index.max() >= bound):
                raise NetSpecError(f"Sparse.{name}: indices must lie in 0..{bound - 1}")
        flat = self.rows.astype(np.int64) * self.shape[1] + self.cols.astype(np.int64)
        if np.unique(flat).size != flat.size:
            raise NetSpecError("Sparse: a (row, col) pair appears twice; sum the duplicates into one weight")

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> Sparse:
        """The non-zeros of an (n_out, n_in) matrix, row-major."""
        rows, cols = np.nonzero(matrix)
        return cls(matrix[rows, cols], rows.astype(np.int64), cols.astype(np.int64), tuple(matrix.shape))

    def dense(self, values: np.ndarray | None = None) -> np.ndarray:
        """The (n_out, n_in) matrix holding ``values`` (default: the weights) at the non-zeros: for small nets."""
        values = self.weight if values is None else values
        matrix = np.zeros(self.shape, dtype=values.dtype)
        matrix[self.rows, self.cols] = values
        return matrix

    def matrix(self, values: np.ndarray | None = None) -> scipy.sparse.csr_matrix:
        """``values`` (default: the weights) at the non-zeros as a CSR matrix (Lava's Sparse takes one)."""
        values = self.weight if values is None else values
        return scipy.sparse.csr_matrix((values, (self.rows, self.cols)), shape=self.shape)

    @property
    def in_size(self) -> int:
        return int(self.shape[1])

    @property
    def out_size(self) -> int:
        return int(self.shape[0])


Synapse = Dense | Conv | Sparse
SYNAPSES = (Dense, Conv, Sparse)


@dataclass(frozen=True, eq=False)
class Connection:
    """A weighted edge. ``delay_steps``: 0 for input connections, ≥ 1 between populations (Lava's Dense adds 1)."""

    source: str
    target: str
    synapse: Synapse
    delay_steps: int = 1


READOUT_QUANTITIES = ("rate", "potential")


@dataclass(frozen=True, eq=False)
class Readout:
    """logits = weight @ feature(source) + bias, where the feature is what ``quantity`` names:

    - "rate": the λ-weighted average spike rate Σ_t λ^{T−t} s[t] / Σ_k λ^k (the plain mean when rate_decay = 0; the
      identity weight over T reads spike counts);
    - "potential": the source's membrane potential v after the last step, in float units (a FixedNetSpec's integer
      v times its population's ``scale`` / 2^6): how conversion nets and NIR graphs ending in an LI node are read.
    """

    source: str
    weight: np.ndarray  # (n_classes, n_source); the identity matrix reads the feature directly
    bias: np.ndarray  # (n_classes,)
    rate_decay: float = 0.0  # 1 − λ used to weight the spikes in the rate (IDE LIF); 0 gives the plain mean
    quantity: str = "rate"  # "rate" or "potential" (READOUT_QUANTITIES); files without it read rates

    def __post_init__(self) -> None:
        _array("Readout.weight", self.weight, 2)
        _array("Readout.bias", self.bias, 1)
        _finite(self, "rate_decay", 0.0, 1.0)
        if self.bias.shape[0] != self.weight.shape[0]:
            raise NetSpecError(f"Readout bias {self.bias.shape} does not match weight {self.weight.shape}")
        if self.quantity not in READOUT_QUANTITIES:
            raise NetSpecError(f"Readout.quantity {self.quantity!r} is not one of {READOUT_QUANTITIES}")

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(B, n_source) features → (B, classes) float64 logits; the one place every simulator computes them."""
        weight, bias = self.weight.astype(np.float64), self.bias.astype(np.float64)
        return np.asarray(features, dtype=np.float64) @ weight.T + bias


# ---------------------------------------------------------------------------------------------------- network
@dataclass(frozen=True, eq=False)
class NetSpec:
    """A spiking network: input, populations (update order), connections, readout; validated when built."""

    input: Input
    populations: dict[str, Neurons]
    connections: tuple[Connection, ...]
    readout: Readout
    time_steps: int
    metadata: dict[str, str] = field(default_factory=dict)  # method, data set, ... (strings only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_steps", check_integer("time_steps", self.time_steps, 1))
        if not isinstance(self.input, Input) or not isinstance(self.readout, Readout):
            raise NetSpecError(f"a NetSpec needs an Input and a Readout, got {self.input!r} and {self.readout!r}")
        for name, neurons in self.populations.items():
            try:
                kind_of(neurons)
            except NetSpecError as error:
                raise NetSpecError(f"population {name!r}: {error}") from None
        if INPUT in self.populations:
            raise NetSpecError(f"{INPUT!r} is reserved for the input node; rename that population")
        for index, connection in enumerate(self.connections):
            self._check_connection(index, connection)
        if self.readout.source not in self.populations:
            raise NetSpecError(f"readout reads unknown population {self.readout.source!r}")
        n_source = self.populations[self.readout.source].size
        if self.readout.weight.shape[1] != n_source:
            raise NetSpecError(
                f"readout weight {self.readout.weight.shape} does not match population "
                f"{self.readout.source!r} of {n_source} neurons"
            )

    def validate(self) -> None:
        """Check everything again, as when built: the arrays are mutable, so a NaN can be written in afterwards.

        Every simulator calls this before it runs (models.reference, pipeline.lava.run), and so does deploy.quantize.

        Raises:
            NetSpecError: what building the spec would raise now.
        """
        self.__post_init__()  # node types and structure first: the node checks below rely on them
        nodes = [("input", self.input), *self.populations.items(), ("readout", self.readout)]
        nodes += [(f"connection {i} ({c.source} → {c.target})", c.synapse) for i, c in enumerate(self.connections)]
        for label, node in nodes:
            try:
                node.__post_init__()
            except NetSpecError as error:  # "Dense.weight: ..." becomes "connection 1 (h → out).weight: ..."
                message, prefix = str(error), f"{type(node).__name__}."
                where = f"{label}.{message[len(prefix):]}" if message.startswith(prefix) else f"{label}: {message}"
                raise NetSpecError(where) from None

    def _check_connection(self, index: int, connection: Connection) -> None:
        if not isinstance(connection, Connection) or not isinstance(connection.synapse, SYNAPSES):
            names = ", ".join(cls.__name__ for cls in SYNAPSES)
            raise NetSpecError(f"connection {index}: expected a Connection with a synapse of {names}")
        name = f"connection {index} ({connection.source} → {connection.target})"
        check_integer(f"{name}: delay_steps", connection.delay_steps)
        if connection.target not in self.populations:
            raise NetSpecError(f"{name}: unknown target population {connection.target!r}")
        if connection.source == INPUT:
            if connection.delay_steps != 0:
                raise NetSpecError(f"{name}: input connections have delay 0, got {connection.delay_steps}")
            n_in = self.input.size
        elif connection.source in self.populations:
            if connection.delay_steps < 1:
                raise NetSpecError(f"{name}: connections between populations need delay ≥ 1 (Lava's Dense adds one)")
            n_in = self.populations[connection.source].size
        else:
            raise NetSpecError(f"{name}: unknown source {connection.source!r}")
        synapse = connection.synapse
        n_out = self.populations[connection.target].size
        if synapse.in_size != n_in or synapse.out_size != n_out:
            raise NetSpecError(
                f"{name}: synapse maps {synapse.in_size} → {synapse.out_size} neurons but the source has {n_in} "
                f"and the target {n_out}"
            )

    @property
    def num_classes(self) -> int:
        return self.readout.num_classes

    def incoming(self, target: str) -> list[Connection]:
        return [c for c in self.connections if c.target == target]

    @property
    def num_parameters(self) -> int:
        total = sum(c.synapse.weight.size for c in self.connections)
        total += sum(p.bias.size for p in self.populations.values())
        return int(total + self.readout.weight.size + self.readout.bias.size)

    # ------------------------------------------------------------------------------------------ serialisation
    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz (arrays) with a JSON header (structure); atomic: a crash leaves the old file intact."""
        write_spec(self, path, NODE_TYPES)

    @classmethod
    def load(cls, path: str | os.PathLike) -> NetSpec:
        """Read a file written by ``save``; never unpickles (allow_pickle=False).

        Raises:
            NetSpecError: naming ``path``: damaged, of another format version, or holding a FixedNetSpec.
        """
        return read_spec(path, cls, NODE_TYPES, "train the run again to rewrite it")


NODE_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Input, *NODE_CLASSES, *SYNAPSES, Connection, Readout, NetSpec)
}
SPEC_KINDS = ("NetSpec", "FixedNetSpec")  # the records a spec file may hold (models.fixed defines the second)
SpecT = TypeVar("SpecT")


# -------------------------------------------------------------------------------------------- spec files
# One container for every spec kind, so that a NetSpec and a FixedNetSpec are written and checked by the same code:
# an .npz whose "__header__" entry is UTF-8 JSON. The header is the root record: {"__type__": kind,
# "format_version": FORMAT_VERSION, <field>: <value>, ...}; a record is {"__type__": class name, fields...}, an
# array {"__array__": key of its .npz entry} (dtype, shape and values kept by the .npy format), a dict
# {"__dict__": [[key, value], ...]} (order kept), a tuple or list {"__tuple__": [...]}; JSON holds int, float, str,
# None. Each kind passes the node classes its files may hold, so a record of another kind is refused by name.
def write_spec(spec: object, path: str | os.PathLike, node_types: dict[str, type]) -> None:
    """Write ``spec`` (a dataclass record listed in ``node_types``) to ``path`` as a spec file, atomically.

    Raises:
        NetSpecError: a value the format cannot hold exactly (an object array, a type it does not know).
    """
    arrays: dict[str, np.ndarray] = {}
    header = _to_dict(spec, arrays, "", node_types)
    if not isinstance(header, dict) or "__type__" not in header:
        raise NetSpecError(f"cannot save a {type(spec).__name__}: not one of {sorted(node_types)}")
    header["format_version"] = FORMAT_VERSION
    arrays["__header__"] = np.frombuffer(json.dumps(header, allow_nan=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_spec(path: str | os.PathLike, kind: type[SpecT], node_types: dict[str, type], remedy: str) -> SpecT:
    """Read a spec file holding a ``kind`` (built, hence validated, from ``node_types``); never unpickles.

    Raises:
        NetSpecError: naming ``path``, for a file that is empty, truncated, not an npz, has a damaged header, is of
            another format version, holds another kind of spec, or describes an invalid spec.
    """
    name = kind.__name__
    advice = f"the file is damaged or was not written by lavaflow; {remedy}"
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        header = json.loads(arrays.pop("__header__").tobytes().decode())
        if not isinstance(header, dict):
            raise NetSpecError(f"{path}: the header is a JSON {type(header).__name__}, not a {name} record; {advice}")
        version = header.get("format_version")
        if version != FORMAT_VERSION:
            raise NetSpecError(f"{path}: {name} format {version!r} is not {FORMAT_VERSION}; {advice}")
        held = header.get("__type__")
        if held != name:
            hint = f"; read it with {held}.load" if held in SPEC_KINDS else f"; {advice}"
            raise NetSpecError(f"{path} holds a {held!r} record, not a {name}{hint}")
        spec = _from_dict(header, arrays, node_types)
    except NetSpecError as error:  # a header that decodes but describes an inconsistent network
        message = str(error) if str(path) in str(error) else f"{path}: {error}; {advice}"
        raise NetSpecError(message) from None
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError, AttributeError,
            IndexError, OverflowError, RecursionError) as error:  # truncated, empty or not an npz; a damaged header
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise NetSpecError(f"{path} is not a readable {name} file ({reason}); {advice}") from None
    if not isinstance(spec, kind):
        raise NetSpecError(f"{path} does not hold a {name}; {advice}")
    return spec


def _to_dict(obj: object, arrays: dict[str, np.ndarray], prefix: str, node_types: dict[str, type]) -> object:
    """The JSON form of ``obj``; its arrays go into ``arrays`` under their path (``populations.h.bias``)."""
    if node_types.get(type(obj).__name__) is type(obj):  # exactly a node class: a subclass could not be rebuilt
        out: dict[str, object] = {"__type__": type(obj).__name__}
        for f in fields(obj):  # type: ignore[arg-type]
            out[f.name] = _to_dict(getattr(obj, f.name), arrays, f"{prefix}{f.name}.", node_types)
        return out
    if isinstance(obj, np.ndarray):
        key = prefix.rstrip(".")
        if obj.dtype.hasobject:  # would need pickle to read back
            raise NetSpecError(f"cannot serialise {key}: an object array ({obj.dtype}) needs pickle")
        if key in arrays:  # names with dots can spell another array's path
            raise NetSpecError(f"cannot serialise {key}: two arrays share that path; rename the node")
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _to_dict(v, arrays, f"{prefix}{k}.", node_types)] for k, v in obj.items()]}
    if isinstance(obj, (tuple, list)):
        return {"__tuple__": [_to_dict(v, arrays, f"{prefix}{i}.", node_types) for i, v in enumerate(obj)]}
    if isinstance(obj, (int, float, str)) or obj is None:
        return obj
    raise NetSpecError(f"cannot serialise {type(obj).__name__} at {prefix.rstrip('.')}")


def _from_dict(data: object, arrays: dict[str, np.ndarray], node_types: dict[str, type]) -> object:
    """Rebuild what ``_to_dict`` wrote; records are built through their constructors, so they are validated."""
    if isinstance(data, dict):
        if "__array__" in data:
            return arrays[data["__array__"]]
        if "__dict__" in data:
            return {k: _from_dict(v, arrays, node_types) for k, v in data["__dict__"]}
        if "__tuple__" in data:
            return tuple(_from_dict(v, arrays, node_types) for v in data["__tuple__"])
        kind = data.get("__type__")
        if kind not in node_types:
            raise NetSpecError(f"unknown node type {kind!r}; known: {sorted(node_types)}")
        cls = node_types[kind]
        kwargs = {f.name: _from_dict(data[f.name], arrays, node_types) for f in fields(cls) if f.name in data}
        for key in ("shape", "input_shape", "stride", "padding", "dilation"):
            if key in kwargs:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        if "connections" in kwargs:
            kwargs["connections"] = tuple(kwargs["connections"])
        return cls(**kwargs)
    return data


def assert_netspec_equal(a: NetSpec, b: NetSpec) -> None:
    """Raise AssertionError unless two NetSpecs hold the same structure and identical arrays (for tests)."""
    arrays_a: dict[str, np.ndarray] = {}
    arrays_b: dict[str, np.ndarray] = {}
    header_a = _to_dict(a, arrays_a, "", NODE_TYPES)
    header_b = _to_dict(b, arrays_b, "", NODE_TYPES)
    if header_a != header_b:
        raise AssertionError(f"NetSpec structures differ:\n{header_a}\n{header_b}")
    for key, value in arrays_a.items():
        np.testing.assert_array_equal(value, arrays_b[key], err_msg=key)
        if value.dtype != arrays_b[key].dtype:
            raise AssertionError(f"{key}: dtype {value.dtype} != {arrays_b[key].dtype}")
