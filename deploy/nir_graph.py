"""NIR graphs ↔ NetSpec: import a network exported by snnTorch, Norse, sinabs, Rockpool or Spyx, and export ours.

NIR (the ``nir`` package) describes neurons in continuous time; a NetSpec steps them in Lava's discrete order. The
mapping is the one Lava's own LIF process (lava.proc.lif.process.LIF: ``du``, ``dv``, ``bias``, ``vth``) would be
configured with for a time step ``dt``:

Discretisation (forward Euler with step dt, updated in Lava's order: current, then voltage from the new current,
then spike and reset; an input x[t] of step t is held over the step and reaches the neuron in that step):

    IF       dv/dt = R·I                          v ← v + (dt·R)·I
    LIF      τ dv/dt = (v_leak − v) + R·I          v ← (1 − dt/τ)·v + (dt/τ)·v_leak + (dt·R/τ)·I
    LI       as LIF, without threshold and reset
    CubaLIF  τ_syn dI/dt = −I + w_in·S             u ← (1 − dt/τ_syn)·u + (dt/τ_syn)·(dt·R/τ_mem)·w_in·S
             τ_mem dv/dt = (v_leak − v) + R·I      v ← (1 − dt/τ_mem)·v + u + (dt/τ_mem)·v_leak
    CubaLI   as CubaLIF, without threshold and reset

  where u = (dt·R/τ_mem)·I is Lava's current in voltage units. So Lava's ``dv`` = dt/τ (dt/τ_mem), ``du`` =
  dt/τ_syn (1 for LIF, IF, LI: no synaptic filter), ``vth`` = v_threshold, and each neuron's input gain
  g = dt·R/τ (LIF, LI), dt·R (IF), w_in·(dt/τ_syn)·(dt·R/τ_mem) (CubaLIF, CubaLI) multiplies the rows of every
  weight matrix arriving at it: W_lava = g·W_nir. An Affine bias b arriving at a neuron without a synaptic filter
  becomes the Lava bias g·b (added to v every step); the leak term (dt/τ)·v_leak is a constant added to v every
  step too, so it joins the bias (LIF keeps a common v_leak as its own leak potential). A neuron spikes at
  v > v_threshold (Lava's and NIR's convention) and is reset to v_reset, or, where the node's metadata holds
  ``reset_mode: "subtract"`` (NIR 1.0.8 has no field for it), loses v_threshold − v_reset. In fixed point the
  quantiser turns these into Lava's integers: dv = round(4096·dt/τ), du = round(4096·dt/τ_syn) − 1 (Lava adds 1),
  vth and weights on one scale per population (deploy.quantize). dt/τ must lie in (0, 1]: choose dt no longer
  than the shortest time constant. snnTorch exports β = 1 − dt/τ with R = τ/dt, so its graphs read back as
  v ← β·v + I for any dt; sinabs writes per-step IF neurons (R = 1): import those with dt = 1.

Each edge between two neuron nodes takes one step (Lava's Dense delivers the previous step's spikes), the input
reaches the first neurons in the same step; recurrent edges therefore take one step, as in snnTorch's RLeaky.

Mapping of nodes:

- Neurons: LIF and IF → kind "lif_potential"; CubaLIF (v_leak folded into the bias, v_reset 0) → "cuba"; LI and
  CubaLI → "li". τ, v_threshold and v_reset must be equal across a node's neurons (a population shares one value);
  R, w_in, v_leak may differ per neuron.
- The chain of linear nodes between two neuron nodes (or the input and a neuron) becomes one connection: a single
  Affine/Linear → Dense, Scale → diagonal Sparse, Conv2d/Conv1d → Conv, SumPool2d/AvgPool2d → ``pool_conv``;
  Flatten is the identity (populations are flat, in C, H, W row-major order like torch and NIR); longer chains
  are multiplied out into one Dense. Nested subgraphs are flattened; their nodes are named "subgraph.node".
- The Output node: the readout reads the population feeding it (through an optional linear chain, which becomes
  the readout weight and bias): its spike rate (the time average of what the Output carries), or, for an LI /
  CubaLI node, its potential after the last step.

Unsupported nodes (Delay, Threshold, I, ...), shape mismatches, NaN/inf and parameters our kinds cannot hold raise
NetSpecError naming the node and the fix. ``write_nir`` is the inverse: it writes R = τ/dt (IF: 1/dt) and
w_in = τ_syn/dt, so every gain is 1 and the weights are the NetSpec's own; soft_reset and cuba_refractory
populations, delays other than one step and a λ-weighted readout have no NIR counterpart and are refused; a
non-diagonal Sparse synapse is written as a Linear (it reads back as a Dense). ``write_nir`` then ``read_nir`` with
the same dt gives the same NetSpec up to float rounding of dt/τ.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as functional

from lavaflow.deploy.imported import ImportedNetwork
from lavaflow.models.atomic import atomic_write_bytes
from lavaflow.models.errors import NetSpecError
from lavaflow.models.kinds import kind_of
from lavaflow.models.kinds.cuba import CubaNeurons
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.lif_potential import PotentialLIFNeurons
from lavaflow.models.netspec import (
    INPUT,
    Connection,
    Conv,
    Dense,
    Input,
    NetSpec,
    Neurons,
    Readout,
    Sparse,
    pool_conv,
)

NEURON_NODES = (nir.LIF, nir.IF, nir.CubaLIF, nir.LI, nir.CubaLI)
LINEAR_NODES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.Flatten, nir.SumPool2d, nir.AvgPool2d)
INPUT_ENCODING = "events"  # any finite value in float; integer counts 0..255 (0/1 spikes included) in fixed point
METADATA_KEY = "lavaflow_metadata"  # graph metadata: the NetSpec's metadata and input encoding, as JSON
RESET_KEY = "reset_mode"  # neuron metadata: "subtract" for reset by subtraction (NIR 1.0.8 has no field for it)
DENSE_LIMIT = 1 << 26  # entries of a chain multiplied out into one Dense matrix (512 MiB of float64)
SUPPORTED = (
    "Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, Flatten, SumPool2d, AvgPool2d, IF, LIF, CubaLIF, LI, CubaLI"
)


# ============================================================================================ reading
def read_nir(source: str | os.PathLike | nir.NIRGraph, *, dt: float, time_steps: int = 32) -> ImportedNetwork:
    """A NIR graph (a .nir file or a ``nir.NIRGraph``) as a float NetSpec, discretised with step ``dt`` seconds.

    Args:
        source: the file (NIR's HDF5) or the graph.
        dt: seconds per time step; every dt/τ must lie in (0, 1] (module docstring: the discretisation).
        time_steps: steps per sample of the NetSpec (NIR graphs do not say).

    Returns:
        The network (format "nir"), its neuron model in NIR's words ("LIF", "CubaLIF+LI", ...), its reset mode
        ("zero" for a reset to v_reset, "subtract", "mixed") and dt.

    Raises:
        NetSpecError: an unreadable file, an unsupported node, a shape mismatch, NaN/inf, or parameters the
            neuron kinds cannot hold; the message names the node and the fix.
    """
    dt = _positive_finite("dt", dt)
    graph = _load(source)
    nodes, edges, graph_metadata = _flatten_graph(graph)
    return _Reader(nodes, edges, graph_metadata, dt, time_steps).build()


def _load(source: str | os.PathLike | nir.NIRGraph) -> nir.NIRGraph:
    if isinstance(source, nir.NIRGraph):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise NetSpecError(f"read_nir reads a path or a nir.NIRGraph, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise NetSpecError(f"{path}: no such NIR file; check the path")
    try:
        graph = nir.read(path, type_check=False)
    except Exception as error:  # nir and h5py raise OSError, KeyError, ValueError, AssertionError, TypeError, ...
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise NetSpecError(
            f"{path} is not a readable NIR graph ({reason}); export it again with nir.write from the tool that "
            f"trained it (nir 1.0.x)"
        ) from None
    if not isinstance(graph, nir.NIRGraph):
        raise NetSpecError(f"{path} holds a single {type(graph).__name__} node, not a NIR graph; export the network")
    return graph


def _positive_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise NetSpecError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise NetSpecError(f"{name} must be positive and finite, got {value!r}")
    return value


def _text(value: object) -> object:
    """h5py hands strings back as bytes (or 0-d arrays of them)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return value.decode("utf8") if isinstance(value, bytes) else value


class _Pass:
    """A subgraph's Input or Output node once the subgraph is flattened: the identity."""


def _flatten_graph(graph: nir.NIRGraph) -> tuple[dict[str, object], list[tuple[str, str]], dict]:
    """Nodes and edges with nested subgraphs inlined ("sub.node"); their Input/Output nodes become pass-throughs."""
    nodes: dict[str, object] = {}
    edges: list[tuple[str, str]] = []
    _inline(graph, "", nodes, edges, top=True)
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    return nodes, edges, metadata


def _inline(graph: nir.NIRGraph, prefix: str, nodes: dict, edges: list, *, top: bool) -> tuple[list, list]:
    """Add ``graph``'s nodes under ``prefix``; return the flattened names of its Input and Output nodes."""
    if not isinstance(graph.nodes, dict) or not isinstance(graph.edges, (list, tuple)):
        raise NetSpecError(f"NIR graph {prefix or '(top)'!r} has no node dict and edge list; export it again")
    entries: dict[str, str] = {}  # subgraph name → its flattened entry node
    exits: dict[str, str] = {}
    inputs, outputs = [], []
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            sub_inputs, sub_outputs = _inline(node, f"{full}.", nodes, edges, top=False)
            if len(sub_inputs) != 1 or len(sub_outputs) != 1:
                raise NetSpecError(
                    f"NIR subgraph {full!r} has {len(sub_inputs)} Input and {len(sub_outputs)} Output nodes; "
                    f"lavaflow inlines subgraphs with exactly one of each"
                )
            entries[name], exits[name] = sub_inputs[0], sub_outputs[0]
            continue
        if not top and isinstance(node, (nir.Input, nir.Output)):
            nodes[full] = _Pass()
        else:
            nodes[full] = node
        if isinstance(node, nir.Input):
            inputs.append(full)
        elif isinstance(node, nir.Output):
            outputs.append(full)
    for edge in graph.edges:
        if len(edge) != 2:
            raise NetSpecError(f"NIR graph {prefix or '(top)'!r}: edge {edge!r} is not a (source, target) pair")
        source, target = (str(_text(end)) for end in edge)
        source = exits.get(source, f"{prefix}{source}")
        target = entries.get(target, f"{prefix}{target}")
        for end in (source, target):
            if end not in nodes:
                raise NetSpecError(f"NIR edge ({source!r}, {target!r}) names the unknown node {end!r}")
        edges.append((source, target))
    return inputs, outputs


# -------------------------------------------------------------------------------------------- linear nodes
@dataclass(frozen=True)
class _Op:
    """One linear node applied to a known input shape: y = apply(x) + bias."""

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    apply: Callable[[np.ndarray], np.ndarray]  # (B, *in_shape) → (B, *out_shape), linear part
    bias: np.ndarray | None  # out_shape, or None
    native: Callable[[], Dense | Conv | Sparse] | None  # the synapse when this op is the whole chain (Flatten: None)
    identity: bool = False


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _array(name: str, field: str, value: object) -> np.ndarray:
    """A node's parameter as a finite float64 array (NIR allows float32 and plain numbers)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NetSpecError(f"NIR node {name!r}: {field} is not numeric ({value!r}); export the graph again") from None
    if not np.all(np.isfinite(array)):
        bad = int(array.size - np.isfinite(array).sum())
        raise NetSpecError(
            f"NIR node {name!r}: {field} holds {bad} NaN/inf value(s); the exporting run diverged, so fix the "
            f"trained network before importing it"
        )
    return array


def _pair(name: str, field: str, value: object, low: int) -> tuple[int, int]:
    values = np.atleast_1d(np.asarray(value)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(values == np.round(values)) or np.any(values < low):
        raise NetSpecError(f"NIR node {name!r}: {field} {value!r} is not one or two integers ≥ {low}")
    return int(values[0]), int(values[1])


def _linear_op(name: str, node: object, in_shape: tuple[int, ...]) -> _Op:
    """The node ``name`` applied to ``in_shape``; NetSpecError where the shapes do not fit."""
    size = _size(in_shape)
    if isinstance(node, _Pass):
        return _Op(name, in_shape, in_shape, lambda x: x, None, None, identity=True)
    if isinstance(node, nir.Flatten):
        out = (size,)
        return _Op(name, in_shape, out, lambda x: x.reshape(x.shape[0], -1), None, None, identity=True)
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = _array(name, "weight", node.weight)
        if weight.ndim != 2:
            raise NetSpecError(f"NIR node {name!r}: weight has shape {weight.shape}; lavaflow reads 2-D weights")
        if weight.shape[1] != size:
            raise NetSpecError(
                f"NIR node {name!r}: weight {weight.shape} takes {weight.shape[1]} inputs but receives {in_shape} "
                f"({size} values); fix the edge or the weight shape"
            )
        bias = None
        if isinstance(node, nir.Affine):
            bias = _array(name, "bias", node.bias)
            if bias.shape != (weight.shape[0],):
                raise NetSpecError(f"NIR node {name!r}: bias {bias.shape} does not match weight {weight.shape}")
        return _Op(
            name, in_shape, (weight.shape[0],), lambda x: x.reshape(x.shape[0], -1) @ weight.T, bias,
            lambda: Dense(weight.copy()),
        )
    if isinstance(node, nir.Scale):
        scale = _array(name, "scale", node.scale)
        if scale.size != size:
            raise NetSpecError(f"NIR node {name!r}: scale {scale.shape} does not match its input {in_shape}")
        flat = scale.reshape(-1)
        return _Op(
            name, in_shape, in_shape, lambda x: (x.reshape(x.shape[0], -1) * flat).reshape(x.shape), None,
            lambda: Sparse(flat.copy(), np.arange(flat.size), np.arange(flat.size), (flat.size, flat.size)),
        )
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return _conv_op(name, node, in_shape)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if len(in_shape) != 3:
            raise NetSpecError(
                f"NIR node {name!r}: pooling needs a (C, H, W) input, got {in_shape}; give the neuron node before "
                f"it parameters of shape (C, H, W)"
            )
        kernel = _pair(name, "kernel_size", node.kernel_size, 1)
        stride = _pair(name, "stride", node.stride, 1)
        padding = _pair(name, "padding", node.padding, 0)
        kind = "sum" if isinstance(node, nir.SumPool2d) else "avg"
        try:
            conv = pool_conv(kind, in_shape, kernel, stride, padding)
        except NetSpecError as error:
            raise NetSpecError(f"NIR node {name!r}: {error}") from None
        return _conv_result(name, conv, None, lambda: conv)
    raise NetSpecError(
        f"NIR node {name!r} is a {type(node).__name__}, which lavaflow does not import; supported: {SUPPORTED}"
    )


def _conv_op(name: str, node: nir.Conv1d | nir.Conv2d, in_shape: tuple[int, ...]) -> _Op:
    weight = _array(name, "weight", node.weight)
    one_d = isinstance(node, nir.Conv1d)
    if weight.ndim != (3 if one_d else 4):
        raise NetSpecError(f"NIR node {name!r}: kernel shape {weight.shape} does not fit a {type(node).__name__}")
    if one_d:  # a Conv1d is a Conv2d over (C, 1, L)
        weight = weight[:, :, None, :]
    groups = int(node.groups)
    channels = weight.shape[1] * groups
    size = _size(in_shape)
    if len(in_shape) == 3 and not one_d:
        shape = in_shape
    elif one_d and len(in_shape) == 2:
        shape = (in_shape[0], 1, in_shape[1])
    elif node.input_shape is not None:  # a flat input: the node's input_shape says how to fold it
        spatial = (1, int(np.ravel(node.input_shape)[0])) if one_d else tuple(int(v) for v in node.input_shape)
        shape = (channels, *spatial)
    else:
        shape = in_shape
    if len(shape) != 3 or _size(shape) != size or shape[0] != channels:
        raise NetSpecError(
            f"NIR node {name!r}: a {type(node).__name__} with kernel {tuple(node.weight.shape)} and groups {groups} "
            f"cannot read an input of shape {in_shape}; fix the edge or give the node its input_shape"
        )
    k_h, k_w = weight.shape[2:]
    padding = node.padding
    if isinstance(padding, str):
        padding = _text(padding)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            dilation = (1, int(np.ravel(node.dilation)[0])) if one_d else _pair(name, "dilation", node.dilation, 1)
            spans = (dilation[0] * (k_h - 1), dilation[1] * (k_w - 1))
            if any(span % 2 for span in spans):
                raise NetSpecError(f"NIR node {name!r}: padding 'same' is asymmetric for this kernel; pad explicitly")
            padding = (spans[0] // 2, spans[1] // 2)
    if one_d:
        stride = (1, _pair(name, "stride", node.stride, 1)[0])
        padding = (0, _pair(name, "padding", padding, 0)[0])
        dilation = (1, _pair(name, "dilation", node.dilation, 1)[0])
    else:
        stride = _pair(name, "stride", node.stride, 1)
        padding = _pair(name, "padding", padding, 0)
        dilation = _pair(name, "dilation", node.dilation, 1)
    try:
        conv = Conv(weight.copy(), shape, stride, padding, dilation, groups)
    except NetSpecError as error:
        raise NetSpecError(f"NIR node {name!r}: {error}") from None
    bias = _array(name, "bias", node.bias) if node.bias is not None else None
    if bias is not None:
        if bias.size == 1 and weight.shape[0] != 1 and not np.any(bias):  # some tools write a scalar 0
            bias = None
        elif bias.shape != (weight.shape[0],):
            raise NetSpecError(f"NIR node {name!r}: bias {bias.shape} does not match {weight.shape[0]} channels")
    channel_bias = None
    if bias is not None:
        channel_bias = np.broadcast_to(bias[:, None, None], conv.output_shape).copy()
    return _conv_result(name, conv, channel_bias, lambda: conv, in_shape)


def _conv_result(
    name: str, conv: Conv, bias: np.ndarray | None, native: Callable[[], Conv], in_shape: tuple[int, ...] | None = None
) -> _Op:
    out_shape = conv.output_shape

    def apply(x: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(x.reshape(x.shape[0], *conv.input_shape), dtype=np.float64))
        kernel = torch.from_numpy(conv.weight.astype(np.float64))
        out = functional.conv2d(images, kernel, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        return out.numpy().reshape(x.shape[0], *out_shape)

    return _Op(name, in_shape or conv.input_shape, out_shape, apply, bias, native)


def _compose(ops: list[_Op], in_size: int, target: str) -> Dense | Conv | Sparse:
    """The synapse of a chain: its one real op natively, or the chain multiplied out into a Dense matrix."""
    real = [op for op in ops if not op.identity]
    if not real:
        return Dense(np.eye(in_size))
    if len(real) == 1:
        return real[0].native()
    out_size = _size(ops[-1].out_shape)
    if in_size * out_size > DENSE_LIMIT:
        raise NetSpecError(
            f"the chain {' → '.join(op.name for op in ops)} into {target!r} multiplies out to a {out_size}×{in_size} "
            f"matrix, too large; put a neuron node between its linear nodes"
        )
    basis = np.eye(in_size)
    for op in ops:
        basis = op.apply(basis.reshape(in_size, *op.in_shape))
    return Dense(np.ascontiguousarray(basis.reshape(in_size, out_size).T))


# -------------------------------------------------------------------------------------------- neuron nodes
@dataclass(frozen=True)
class _Neuron:
    """A neuron node turned into a population: the node minus its bias, its input gain and the bias it adds."""

    name: str
    nir_type: str
    shape: tuple[int, ...]  # the node's parameter shape
    gain: np.ndarray  # (n,) multiplies every row arriving at it
    leak_bias: np.ndarray  # (n,) constant added to v every step: (dt/τ)·v_leak where not a leak potential
    filtered: bool  # a synaptic filter (du < 1): an Affine bias cannot become a Lava bias
    build: Callable[[np.ndarray], Neurons]  # bias → the population
    reset_mode: str | None  # "zero", "subtract", or None (non-spiking)
    spiking: bool

    @property
    def size(self) -> int:
        return _size(self.shape)


def _uniform(name: str, field: str, values: np.ndarray) -> float:
    flat = values.reshape(-1)
    if flat.size == 0:
        raise NetSpecError(f"NIR node {name!r}: {field} is empty")
    if np.any(flat != flat[0]):
        raise NetSpecError(
            f"NIR node {name!r}: {field} differs between neurons ({flat.min():g} … {flat.max():g}); a lavaflow "
            f"population shares one {field}: split the node into groups with equal values"
        )
    return float(flat[0])


def _decay(name: str, field: str, tau: float, dt: float) -> float:
    if tau <= 0:
        raise NetSpecError(f"NIR node {name!r}: {field} {tau:g} must be positive")
    decay = dt / tau
    if decay > 1.0:
        raise NetSpecError(
            f"NIR node {name!r}: dt {dt:g} s is longer than {field} {tau:g} s, so forward Euler would overshoot "
            f"(dt/{field} = {decay:.3g} > 1); import with --dt {tau:g} or less"
        )
    return decay


def _reset_mode(name: str, node: object) -> str:
    metadata = getattr(node, "metadata", None)
    mode = _text(metadata.get(RESET_KEY, "zero")) if isinstance(metadata, dict) else "zero"
    if mode in ("zero", "reset", "value"):
        return "zero"
    if mode == "subtract":
        return "subtract"
    raise NetSpecError(f"NIR node {name!r}: metadata {RESET_KEY} {mode!r} is not 'zero' or 'subtract'")


def _population_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """NetSpec shapes: () for flat vectors, (C, H, W) for images, (C, 1, L) for Conv1d signals."""
    if len(shape) <= 1:
        return ()
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    if len(shape) == 3:
        return shape
    raise NetSpecError(f"neuron parameters of shape {shape}: lavaflow populations are flat, (C, L) or (C, H, W)")


def _neuron(name: str, node: object, dt: float) -> _Neuron:
    """The population of a neuron node (module docstring: the discretisation)."""
    kind = type(node).__name__
    fields = {
        nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"),
        nir.IF: ("r", "v_threshold", "v_reset"),
        nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
        nir.LI: ("tau", "r", "v_leak"),
        nir.CubaLI: ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
    }[type(node)]
    values = {field: _array(name, field, getattr(node, field)) for field in fields}
    anchor = values["v_threshold"] if "v_threshold" in values else values["v_leak"]
    shape = tuple(int(d) for d in anchor.shape) or (1,)
    try:
        values = {field: np.broadcast_to(value, shape).reshape(-1) for field, value in values.items()}
    except ValueError:
        got = {field: tuple(np.shape(getattr(node, field))) for field in fields}
        raise NetSpecError(f"NIR node {name!r}: parameter shapes {got} do not agree; export the node again") from None
    pop_shape = _population_shape(shape)
    size = _size(shape)
    zeros = np.zeros(size)
    if isinstance(node, (nir.LIF, nir.IF)):
        threshold = _uniform(name, "v_threshold", values["v_threshold"])
        reset = _uniform(name, "v_reset", values["v_reset"])
        mode = _reset_mode(name, node)
        if isinstance(node, nir.LIF):
            decay = _decay(name, "tau", _uniform(name, "tau", values["tau"]), dt)
            gain = values["r"] * decay
            leak = values["v_leak"]
            if np.all(leak == leak[0]):
                leak_potential, leak_bias = float(leak[0]), zeros
            else:  # per-neuron rest potentials: the constant (dt/τ)·v_leak goes into the bias
                leak_potential, leak_bias = 0.0, decay * leak
        else:
            decay, gain, leak_potential, leak_bias = 0.0, values["r"] * dt, 0.0, zeros

        def build(bias: np.ndarray) -> Neurons:
            return PotentialLIFNeurons(
                bias, threshold, decay, leak_potential, reset, "reset" if mode == "zero" else "subtract", pop_shape
            )

        return _Neuron(name, kind, shape, gain, leak_bias, False, _checked(name, build), mode, True)
    if isinstance(node, nir.LI):
        decay = _decay(name, "tau", _uniform(name, "tau", values["tau"]), dt)
        current = 1.0
        gain = values["r"] * decay
    else:
        current = _decay(name, "tau_syn", _uniform(name, "tau_syn", values["tau_syn"]), dt)
        decay = _decay(name, "tau_mem", _uniform(name, "tau_mem", values["tau_mem"]), dt)
        gain = values["w_in"] * current * values["r"] * decay
    leak_bias = decay * values["v_leak"]
    if isinstance(node, nir.CubaLIF):
        threshold = _uniform(name, "v_threshold", values["v_threshold"])
        if _uniform(name, "v_reset", values["v_reset"]) != 0.0 or _reset_mode(name, node) != "zero":
            raise NetSpecError(
                f"NIR node {name!r}: a CubaLIF with v_reset ≠ 0 or reset by subtraction has no lavaflow kind (Lava's "
                f"LIF resets v to 0); set v_reset to 0, or use a LIF node without the synaptic current"
            )

        def build_cuba(bias: np.ndarray) -> Neurons:
            return CubaNeurons(bias, threshold, current, decay, pop_shape)

        return _Neuron(name, kind, shape, gain, leak_bias, current < 1.0, _checked(name, build_cuba), "zero", True)

    def build_li(bias: np.ndarray) -> Neurons:
        return LeakyIntegrator(bias, current, decay, pop_shape)

    return _Neuron(name, kind, shape, gain, leak_bias, current < 1.0, _checked(name, build_li), None, False)


def _checked(name: str, build: Callable[[np.ndarray], Neurons]) -> Callable[[np.ndarray], Neurons]:
    def checked(bias: np.ndarray) -> Neurons:
        try:
            return build(bias)
        except NetSpecError as error:
            raise NetSpecError(f"NIR node {name!r}: {error}") from None

    return checked


# -------------------------------------------------------------------------------------------- the graph
class _Reader:
    """Turns a flattened NIR graph into a NetSpec: one population per neuron node, one connection per chain."""

    def __init__(self, nodes: dict, edges: list, metadata: dict, dt: float, time_steps: int) -> None:
        self.nodes, self.edges, self.dt, self.time_steps = nodes, edges, dt, time_steps
        self.metadata = metadata
        # Orders that survive a trip through HDF5, which lists a group's nodes sorted by name but keeps the edge list:
        # nodes by first appearance in the edge list, edges by their index.
        self.order: dict[str, int] = {}
        for name in (*(end for edge in edges for end in edge), *nodes):
            self.order.setdefault(name, len(self.order))
        self.edge_index = {edge: index for index, edge in reversed(list(enumerate(edges)))}
        self.preds: dict[str, list[str]] = {name: [] for name in nodes}
        for source, target in edges:
            self.preds[target].append(source)
        for name, node in nodes.items():
            if not isinstance(node, (*NEURON_NODES, *LINEAR_NODES, _Pass, nir.Input, nir.Output)):
                raise NetSpecError(
                    f"NIR node {name!r} is a {type(node).__name__}, which lavaflow does not import; supported: "
                    f"{SUPPORTED}"
                )
        inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
        outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise NetSpecError(
                f"the NIR graph has Input nodes {inputs} and Output nodes {outputs}; a NetSpec has one input and one "
                f"readout, so keep exactly one of each"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        neuron_names = sorted((n for n, node in nodes.items() if isinstance(node, NEURON_NODES)), key=self.order.get)
        self.neurons = {n: _neuron(n, nodes[n], dt) for n in neuron_names}
        stored = self._stored().get("populations")
        if isinstance(stored, list) and sorted(stored) == sorted(self.neurons):  # a lavaflow export's order
            self.neurons = {n: self.neurons[n] for n in stored}
        self.input_shape = self._input_shape(nodes[self.input_name])
        self.out_shapes: dict[str, tuple[int, ...]] = {}
        self.biases: dict[str, np.ndarray] = {}

    def _input_shape(self, node: nir.Input) -> tuple[int, ...]:
        shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
        if shape is None:
            raise NetSpecError(f"NIR Input node {self.input_name!r} has no shape; export the graph with its shape")
        values = np.atleast_1d(np.asarray(shape)).ravel()
        if values.size == 0 or np.any(values < 1) or not np.all(values == np.round(values)):
            raise NetSpecError(f"NIR Input node {self.input_name!r}: shape {shape!r} is not positive integers")
        return tuple(int(v) for v in values)

    # ------------------------------------------------------------------ shapes and biases of linear nodes
    def _source_shape(self, name: str) -> tuple[int, ...]:
        if name == self.input_name:
            return self.input_shape
        return self.neurons[name].shape

    def _is_source(self, name: str) -> bool:
        return name == self.input_name or name in self.neurons

    def _op_on(self, name: str, stack: tuple[str, ...]) -> _Op:
        """Node ``name`` applied to the shape arriving at it (all its inputs must agree)."""
        if name in stack:
            cycle = " → ".join((*stack[stack.index(name):], name))
            raise NetSpecError(f"NIR nodes {cycle} form a loop without a neuron node; break it with a neuron")
        shapes = {self._output_shape(p, (*stack, name)) for p in self.preds[name]}
        if not shapes:
            raise NetSpecError(f"NIR node {name!r} has no incoming edge; connect it or remove it")
        if len(shapes) > 1:
            raise NetSpecError(f"NIR node {name!r} receives inputs of different shapes {sorted(shapes)}")
        return _linear_op(name, self.nodes[name], shapes.pop())

    def _output_shape(self, name: str, stack: tuple[str, ...] = ()) -> tuple[int, ...]:
        if self._is_source(name):
            return self._source_shape(name)
        if isinstance(self.nodes[name], nir.Output):
            raise NetSpecError(f"NIR Output node {name!r} feeds another node; Output nodes end the graph")
        if name not in self.out_shapes:
            self.out_shapes[name] = self._op_on(name, stack).out_shape
        return self.out_shapes[name]

    def _bias(self, name: str) -> np.ndarray:
        """What node ``name`` outputs when every source is silent: the biases of its linear chain, each once."""
        if self._is_source(name):
            return np.zeros(self._source_shape(name))
        if name not in self.biases:
            op = self._op_on(name, ())
            arriving = sum(self._bias(p).reshape(op.in_shape) for p in self.preds[name])
            out = op.apply(np.asarray(arriving, dtype=np.float64).reshape(1, *op.in_shape))[0]
            self.biases[name] = out + op.bias if op.bias is not None else out
        return self.biases[name]

    def _paths(self, target: str) -> list[tuple[str, list[str]]]:
        """Every (source, chain of linear nodes) arriving at ``target``, in edge order."""
        found: list[tuple[str, list[str]]] = []

        def walk(node: str, chain: list[str], seen: tuple[str, ...]) -> None:
            for pred in self.preds[node]:
                if self._is_source(pred):
                    found.append((pred, chain))
                elif isinstance(self.nodes[pred], nir.Output):
                    raise NetSpecError(f"NIR Output node {pred!r} feeds {node!r}; Output nodes end the graph")
                elif pred in seen:
                    cycle = " → ".join((pred, *seen[: seen.index(pred) + 1][::-1]))
                    raise NetSpecError(f"NIR nodes {cycle} form a loop without a neuron node; break it with a neuron")
                else:
                    walk(pred, [pred, *chain], (*seen, pred))

        walk(target, [], ())
        return found

    def _chain_ops(self, chain: list[str]) -> list[_Op]:
        return [self._op_on(name, ()) for name in chain]

    # ------------------------------------------------------------------ the NetSpec
    def build(self) -> ImportedNetwork:
        connections: list[tuple[tuple[int, int], Connection]] = []
        populations: dict[str, Neurons] = {}
        for name, neuron in self.neurons.items():
            if name == INPUT:
                raise NetSpecError(f"NIR neuron node {INPUT!r}: the name is reserved for the input; rename the node")
            bias = neuron.leak_bias.copy()
            for index, (source, chain) in enumerate(self._paths(name)):
                if source in self.neurons and not self.neurons[source].spiking:
                    raise NetSpecError(
                        f"NIR node {source!r} ({self.neurons[source].nir_type}) feeds {name!r}: lavaflow connections "
                        f"carry spikes, and a leaky integrator never spikes; let it feed only the Output node"
                    )
                ops = self._chain_ops(chain)
                arriving = ops[-1].out_shape if ops else self._source_shape(source)
                if _size(arriving) != neuron.size:
                    raise NetSpecError(
                        f"NIR node {name!r} has {neuron.size} neurons but {' → '.join([source, *chain])} delivers "
                        f"{arriving} ({_size(arriving)} values); fix the edge or the weight shape"
                    )
                synapse = _with_gain(_compose(ops, _size(self._source_shape(source)), name), neuron.gain, ops)
                delay = 0 if source == self.input_name else 1
                key = (self.edge_index[(chain[-1] if chain else source, name)], index)
                connections.append((key, Connection(INPUT if source == self.input_name else source, name, synapse,
                                                    delay)))
            arriving_bias = self._arriving_bias(name, neuron.size)
            if np.any(arriving_bias):
                if neuron.filtered:
                    raise NetSpecError(
                        f"NIR node {name!r} ({neuron.nir_type}) receives an Affine bias through its synaptic current, "
                        f"but Lava's LIF adds its bias to the voltage; set the biases before it to zero (Linear), "
                        f"or import with dt equal to its tau_syn"
                    )
                bias = bias + neuron.gain * arriving_bias
            populations[name] = neuron.build(bias)
        readout = self._readout()
        connections.sort(key=lambda item: item[0])
        metadata, encoding = self._lavaflow_metadata()
        try:
            spec = NetSpec(
                Input(self.input_shape, encoding), populations, tuple(c for _, c in connections), readout,
                self.time_steps, metadata,
            )
        except NetSpecError as error:
            raise NetSpecError(f"the NIR graph does not make a valid NetSpec: {error}") from None
        types = list(dict.fromkeys(n.nir_type for n in self.neurons.values()))
        modes = {n.reset_mode for n in self.neurons.values() if n.reset_mode is not None}
        reset_mode = modes.pop() if len(modes) == 1 else ("mixed" if modes else "zero")
        return ImportedNetwork(spec, "nir", "+".join(types) or "none", reset_mode, self.dt)

    def _arriving_bias(self, name: str, size: int) -> np.ndarray:
        total = np.zeros(size)
        for pred in self.preds[name]:
            if not self._is_source(pred):  # a direct edge from a neuron or the input carries no bias
                total += self._bias(pred).reshape(-1)
        return total

    def _readout(self) -> Readout:
        paths = self._paths(self.output_name)
        if len(paths) != 1 or paths[0][0] == self.input_name:
            origin = [source for source, _ in paths]
            raise NetSpecError(
                f"NIR Output node {self.output_name!r} is fed by {origin or 'nothing'}; lavaflow's readout reads one "
                f"neuron node, so connect exactly one to the Output"
            )
        source, chain = paths[0]
        neuron = self.neurons[source]
        ops = self._chain_ops(chain)
        if any(not op.identity for op in ops):  # a linear chain before the Output: the readout's weight and bias
            weight = _dense_matrix(ops, neuron.size)
            bias = self._arriving_bias(self.output_name, weight.shape[0])
        else:
            weight, bias = np.eye(neuron.size), np.zeros(neuron.size)
        quantity = "rate" if neuron.spiking else "potential"
        return Readout(source, weight, np.asarray(bias, dtype=np.float64), 0.0, quantity)

    def _stored(self) -> dict:
        """What a lavaflow export stored in the graph metadata ({} for graphs of other tools)."""
        stored = _text(self.metadata.get(METADATA_KEY)) if self.metadata else None
        if stored is None:
            return {}
        try:
            record = json.loads(stored)
        except (ValueError, TypeError):
            record = None
        if not isinstance(record, dict):
            raise NetSpecError(f"the NIR graph's {METADATA_KEY} is damaged; export the network again")
        return record

    def _lavaflow_metadata(self) -> tuple[dict[str, str], str]:
        """The NetSpec metadata and input encoding a lavaflow export stored; defaults for other graphs."""
        record = self._stored()
        if not record:
            return {"method": "import", "format": "nir"}, INPUT_ENCODING
        try:
            return {str(k): str(v) for k, v in record["metadata"].items()}, str(record["encoding"])
        except (KeyError, TypeError, AttributeError):
            raise NetSpecError(f"the NIR graph's {METADATA_KEY} is damaged; export the network again") from None


def _dense_matrix(ops: list[_Op], in_size: int) -> np.ndarray:
    """The linear part of a chain as an (out, in) matrix."""
    basis = np.eye(in_size)
    for op in ops:
        basis = op.apply(basis.reshape(in_size, *op.in_shape))
    return np.ascontiguousarray(basis.reshape(in_size, -1).T)


def _with_gain(synapse: Dense | Conv | Sparse, gain: np.ndarray, ops: list[_Op]) -> Dense | Conv | Sparse:
    """W ← diag(gain)·W: the neurons' input gain folded into the weights arriving at them."""
    if isinstance(synapse, Dense):
        return Dense(synapse.weight * gain[:, None])
    if isinstance(synapse, Sparse):
        return Sparse(synapse.weight * gain[synapse.rows], synapse.rows, synapse.cols, synapse.shape)
    per_channel = gain.reshape(synapse.output_shape[0], -1)
    if np.all(per_channel == per_channel[:, :1]):
        weight = synapse.weight * per_channel[:, 0][:, None, None, None]
        return Conv(weight, synapse.input_shape, synapse.stride, synapse.padding, synapse.dilation, synapse.groups)
    return Dense(_dense_matrix(ops, synapse.in_size) * gain[:, None])


# ============================================================================================ writing
def write_nir(spec: NetSpec, path: str | os.PathLike, *, dt: float) -> None:
    """Write ``spec`` as a NIR graph (HDF5) for step ``dt``, atomically; ``read_nir(path, dt=dt)`` reads it back.

    Raises:
        NetSpecError: a population or readout without a NIR counterpart (named), or an invalid spec.
    """
    graph = to_nir(spec, dt=dt)
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    atomic_write_bytes(Path(path), buffer.getvalue())


def to_nir(spec: NetSpec, *, dt: float) -> nir.NIRGraph:
    """``spec`` as a ``nir.NIRGraph`` for step ``dt`` (the inverse of the mapping in the module docstring).

    Weights are written with unit input gain (R = τ/dt, w_in = τ_syn/dt, as snnTorch exports), so Linear and
    Conv2d weights are the NetSpec's own; biases of neurons without a synaptic filter go into the Affine bias of
    their first incoming connection, the others into v_leak = bias·τ/dt.

    Raises:
        NetSpecError: see ``write_nir``.
    """
    if not isinstance(spec, NetSpec):
        raise NetSpecError(f"write_nir writes a float NetSpec, got {type(spec).__name__}; dequantize it first")
    dt = _positive_finite("dt", dt)
    spec.validate()
    names = _Names(spec)
    nodes: dict[str, object] = {names.input: nir.Input(np.array(spec.input.shape))}
    edges: list[tuple[str, str]] = []
    affine_bias: dict[str, np.ndarray] = {}
    for name, neurons in spec.populations.items():
        nodes[name], pending = _neuron_node(name, neurons, dt)
        if pending is not None:
            affine_bias[name] = pending
    carriers = _bias_carriers(spec, affine_bias)
    for index, connection in enumerate(spec.connections):
        if connection.source != INPUT and connection.delay_steps != 1:
            raise NetSpecError(
                f"connection {index} ({connection.source} → {connection.target}) has a delay of "
                f"{connection.delay_steps} steps; NIR edges carry no delay (each edge between neurons takes one step "
                f"here), so export the network with --format netx or lava instead"
            )
        bias = affine_bias.pop(connection.target) if carriers.get(connection.target) == index else None
        source = names.input if connection.source == INPUT else connection.source
        source_shape = spec.input.shape if connection.source == INPUT else _shape_of(spec.populations[source])
        label = f"conn{index:0{len(str(len(spec.connections) - 1))}d}"  # zero-padded: HDF5 lists names sorted
        chain = _connection_nodes(index, label, connection, source_shape,
                                  _shape_of(spec.populations[connection.target]), bias, names)
        previous = source
        for node_name, node in chain:
            nodes[node_name] = node
            edges.append((previous, node_name))
            previous = node_name
        edges.append((previous, connection.target))
    for name in affine_bias:
        raise NetSpecError(
            f"population {name!r} has a bias but no incoming connection to carry it as an Affine bias; NIR has no "
            f"other place for it"
        )
    _readout_nodes(spec, names, nodes, edges)
    record = {"metadata": dict(spec.metadata), "encoding": spec.input.encoding, "populations": list(spec.populations)}
    metadata = {METADATA_KEY: json.dumps(record), "dt": dt, "time_steps": spec.time_steps}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _bias_carriers(spec: NetSpec, biases: dict[str, np.ndarray]) -> dict[str, int]:
    """Per population with a bias to write: the incoming connection whose Affine (or Conv2d) bias carries it,
    the first Dense one where there is one (a Scale has no bias), else the first."""
    carriers: dict[str, int] = {}
    for index, connection in enumerate(spec.connections):
        target = connection.target
        if target in biases and (target not in carriers or (
            isinstance(connection.synapse, Dense) and not isinstance(spec.connections[carriers[target]].synapse, Dense)
        )):
            carriers[target] = index
    return carriers


class _Names:
    """Node names that cannot collide with a population's."""

    def __init__(self, spec: NetSpec) -> None:
        self.taken = set(spec.populations)
        self.input = self.fresh("input")
        self.output = self.fresh("output")

    def fresh(self, base: str) -> str:
        name = base
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name


def _shape_of(neurons: Neurons) -> tuple[int, ...]:
    return tuple(neurons.shape) if neurons.shape else (neurons.size,)


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, float(value))


def _neuron_node(name: str, neurons: Neurons, dt: float) -> tuple[object, np.ndarray | None]:
    """The NIR node of one population, and the bias still to be written as an Affine bias (or None)."""
    shape = _shape_of(neurons)
    bias = neurons.bias.astype(np.float64).reshape(shape)
    kind = kind_of(neurons).name
    if isinstance(neurons, PotentialLIFNeurons):
        metadata = {RESET_KEY: "subtract"} if neurons.reset_mode == "subtract" else {}
        threshold, reset = _full(shape, neurons.threshold), _full(shape, neurons.reset_potential)
        if neurons.voltage_decay > 0:
            tau = dt / neurons.voltage_decay
            node = nir.LIF(
                tau=_full(shape, tau), r=_full(shape, tau / dt), v_leak=_full(shape, neurons.leak_potential),
                v_threshold=threshold, v_reset=reset, metadata=metadata,
            )
        else:
            # without a leak the leak potential has no effect, and NIR's IF has no field for it: it reads back as 0
            node = nir.IF(r=_full(shape, 1.0 / dt), v_threshold=threshold, v_reset=reset, metadata=metadata)
        return node, (bias.reshape(-1) if np.any(bias) else None)
    if isinstance(neurons, (CubaNeurons, LeakyIntegrator)):
        if neurons.voltage_decay <= 0 or neurons.current_decay <= 0:
            raise NetSpecError(
                f"population {name!r} ({kind}) has voltage decay {neurons.voltage_decay:g} and current decay "
                f"{neurons.current_decay:g}; NIR's {'CubaLIF' if kind == 'cuba' else 'LI'} needs finite time "
                f"constants, so both decays must be positive"
            )
        tau_mem = dt / neurons.voltage_decay
        v_leak = bias * (tau_mem / dt)  # (dt/τ_mem)·v_leak = bias
        if isinstance(neurons, CubaNeurons):
            tau_syn = dt / neurons.current_decay
            node = nir.CubaLIF(
                tau_syn=_full(shape, tau_syn), tau_mem=_full(shape, tau_mem), r=_full(shape, tau_mem / dt),
                v_leak=v_leak, v_threshold=_full(shape, neurons.threshold), v_reset=_full(shape, 0.0),
                w_in=_full(shape, tau_syn / dt),
            )
        elif neurons.current_decay == 1.0:
            node = nir.LI(tau=_full(shape, tau_mem), r=_full(shape, tau_mem / dt), v_leak=v_leak)
        else:
            tau_syn = dt / neurons.current_decay
            node = nir.CubaLI(
                tau_syn=_full(shape, tau_syn), tau_mem=_full(shape, tau_mem), r=_full(shape, tau_mem / dt),
                v_leak=v_leak, w_in=_full(shape, tau_syn / dt),
            )
        return node, None
    raise NetSpecError(
        f"population {name!r} is of kind {kind!r}, which has no NIR counterpart (NIR's neurons fire at v > θ and "
        f"have no refractory period); export it with --format netx or lava instead"
    )


def _connection_nodes(
    index: int,
    name: str,
    connection: Connection,
    source_shape: tuple[int, ...],
    target_shape: tuple[int, ...],
    bias: np.ndarray | None,
    names: _Names,
) -> list[tuple[str, object]]:
    """The linear nodes of one connection, source to target."""
    label = f"connection {index} ({connection.source} → {connection.target})"
    synapse = connection.synapse
    chain: list[tuple[str, object]] = []
    if isinstance(synapse, Sparse):
        diagonal = synapse.shape[0] == synapse.shape[1] and np.array_equal(synapse.rows, synapse.cols)
        if diagonal and synapse.weight.size == synapse.shape[0] and bias is None and source_shape == target_shape:
            order = np.argsort(synapse.rows)
            scale = synapse.weight.astype(np.float64)[order].reshape(source_shape)
            return [(names.fresh(name), nir.Scale(scale=scale))]
        synapse = Dense(synapse.dense().astype(np.float64))  # NIR has no sparse matrix: reads back as a Dense
    if isinstance(synapse, Dense):
        if len(target_shape) > 1:
            raise NetSpecError(
                f"{label}: a Dense into the (C, H, W) population {connection.target!r} needs a reshape, which NIR "
                f"lacks; flatten the population (shape ()) before exporting"
            )
        if len(source_shape) > 1:
            chain.append((names.fresh(f"{name}_flatten"),
                          nir.Flatten(input_type={"input": np.array(source_shape)}, start_dim=0, end_dim=-1)))
        weight = synapse.weight.astype(np.float64)
        node = nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)
        chain.append((names.fresh(name), node))
        return chain
    channel_bias = np.zeros(synapse.output_shape[0])
    if bias is not None:
        per_channel = bias.reshape(synapse.output_shape[0], -1)
        if np.any(per_channel != per_channel[:, :1]):
            raise NetSpecError(
                f"{label}: the bias of {connection.target!r} differs within a channel, but a NIR Conv2d bias is one "
                f"value per channel"
            )
        channel_bias = per_channel[:, 0].copy()
    node = nir.Conv2d(
        input_shape=tuple(synapse.input_shape[1:]), weight=synapse.weight.astype(np.float64),
        stride=tuple(synapse.stride), padding=tuple(synapse.padding), dilation=tuple(synapse.dilation),
        groups=int(synapse.groups), bias=channel_bias,
    )
    chain.append((names.fresh(name), node))
    return chain


def _readout_nodes(spec: NetSpec, names: _Names, nodes: dict, edges: list) -> None:
    readout = spec.readout
    source = spec.populations[readout.source]
    potential = not isinstance(source, (CubaNeurons, PotentialLIFNeurons))
    if readout.rate_decay != 0.0:
        raise NetSpecError(
            f"the readout weights spikes by λ = {1 - readout.rate_decay:g} (rate_decay ≠ 0); a NIR Output carries "
            f"the plain signal, so this readout has no NIR counterpart"
        )
    if potential != (readout.quantity == "potential"):
        raise NetSpecError(
            f"the readout reads the {readout.quantity} of population {readout.source!r} ({kind_of(source).name}); a "
            f"NIR Output reads what the node emits (spikes, or the potential of an LI node), so this has no NIR "
            f"counterpart"
        )
    previous = readout.source
    weight, bias = readout.weight.astype(np.float64), readout.bias.astype(np.float64)
    identity = weight.shape[0] == weight.shape[1] and np.array_equal(weight, np.eye(weight.shape[0]))
    if not identity or np.any(bias):
        shape = _shape_of(source)
        if len(shape) > 1:
            flatten = names.fresh("readout_flatten")
            nodes[flatten] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            edges.append((previous, flatten))
            previous = flatten
        affine = names.fresh("readout")
        nodes[affine] = nir.Affine(weight=weight, bias=bias)
        edges.append((previous, affine))
        previous = affine
        out_shape = (weight.shape[0],)
    else:
        out_shape = _shape_of(source)
    nodes[names.output] = nir.Output(np.array(out_shape))
    edges.append((previous, names.output))
