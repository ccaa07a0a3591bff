"""SPIDE's training graph as Lava processes: the spiking side (forward neurons, ternary backward neurons, plastic
connections) and the host side (input, readout, loss, injected gradient).

One mini-batch is one window of T_f + T_b Lava steps (T_f for evaluation), the two processes exchanging messages at
fixed window steps (k counts 1 … from the window's first step; B samples travel side by side):

    k = 1            SPIDEHost sends [header, x] (HEADER + B·n_in) ──► SPIDENetwork: restart, F·x̄ + b once
    k = 1 … T_f      forward phase (SPIDENetwork alone)
    k = T_f          SPIDENetwork sends a^N (B·n_N)              ──► SPIDEHost: readout, loss, g, readout step
    k = T_f + 1      SPIDEHost's g (sent at k = T_f)             ──► SPIDENetwork: backward phase starts
    k = T_f + T_b    SPIDENetwork: β, ΔW, and (mode LEARN) its optimiser step, inside the graph

A window is self-timed: the mode travels with the batch, so the host only queues batches in SPIDEHost's pipe and
runs Σ window lengths steps; no Var is set per batch and the weights never leave the graph between checkpoints.

SPIDENetwork has two kinds of model, as SpikingNetwork: fused leaf models (models.py: the whole spiking side in one
OS process with a batch axis, the CPU fast path) and a SubProcessModel (plain_models.py: per population a
SPIDEForwardNeurons and a TernaryNeurons process, per edge a PlasticConnection that owns W and b, one sample per
window: the Loihi-shaped graph), picked by ``select_sub_proc_model``; tests hold both to the torch SPIDE's update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.spide_maps import Dense, EdgeOperator

# What a window does (the first value of every batch message).
# EVALUATE: the forward phase only. GRADIENT: both phases, the window's gradient added to the accumulated one (which
# restarts after an optimiser step). LEARN: as GRADIENT, then the optimiser step with the accumulated gradient. The
# fused model takes a mini-batch per window (LEARN alone); the plain graph one sample per window (GRADIENT for all
# but the mini-batch's last sample, LEARN for that one), so both step once per mini-batch on its summed update.
EVALUATE, GRADIENT, LEARN = 0, 1, 2
EXPORT = 3  # one step: the fused SPIDENetwork sends its parameters and momentum buffers to the host (a checkpoint)
MODES = (EVALUATE, GRADIENT, LEARN, EXPORT)
# [mode, learning rate, mini-batch size, key] before the payload of SPIDEHost's messages. The size counts the
# mini-batch's real samples: the fused model's window holds them all (the rows after them are padding, which its
# input BatchNorm leaves out), the plain graph's mini-batch spans that many windows; 0 means the window's real
# samples. The key names the window's dropout masks (drawn from numpy's generator seeded by (seed, key)): a driver
# that numbers its mini-batches by training iteration gets the same masks when it resumes a run as when it ran it
# through.
HEADER = 4
KEY_FIELD = 3  # where the key sits in the header
RESULT_HEADER = 3  # [loss sum, correct, samples] before the predictions of SPIDEHost's result message


def weights_name(edge: int) -> str:
    """The Var of edge ``edge``'s weight W_e (its operator's weight shape): the raw parameter, before any cap."""
    return f"weights_{int(edge)}"


def bias_name(edge: int) -> str:
    """The Var of edge ``edge``'s bias b_e (its operator's bias shape); zeros and never updated for an edge without
    a bias."""
    return f"bias_{int(edge)}"


def window_steps(mode: int, forward_steps: int, backward_steps: int) -> int:
    """Lava steps of one batch window in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == EXPORT:
        return 1
    return forward_steps if mode == EVALUATE else forward_steps + backward_steps


NORM_PARAMETERS = ("norm_weight", "norm_bias")  # γ and β of the input BatchNorm (InputNorm), learned
NORM_STATISTICS = ("norm_mean", "norm_var")  # the exact training-set statistics evaluation normalises with


class InputNorm(NamedTuple):
    """BatchNorm on the input edge's current F·x̄ + b (pipeline.spide's ``model.batch_norm``; the fused float model
    only): γ and β to start from, ε, and the training set's input moments (count, mean (n_in,), covariance
    (n_in, n_in)), from which the model recomputes the exact statistics that evaluation uses whenever F or b have
    moved (the torch trainer recomputes the same after every epoch)."""

    weight: np.ndarray
    bias: np.ndarray
    eps: float
    count: int
    input_mean: np.ndarray
    input_covariance: np.ndarray


def parameter_layout(operators: Sequence[EdgeOperator], input_norm: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    """The (Var name, shape) of each array in SPIDENetwork's export message, in order: per edge with a weight (not
    pooling) its weight, bias and their momentum buffers; with ``input_norm``, γ and β with theirs and then the
    statistics."""
    layout = []
    for number, operator in enumerate(operators):
        if operator.weight_shape is None:
            continue
        for name, shape in ((weights_name(number), operator.weight_shape), (bias_name(number), operator.bias_shape)):
            layout += [(name, tuple(shape)), (f"velocity_{name}", tuple(shape))]
    if input_norm:
        channels = tuple(operators[0].bias_shape)
        for name in NORM_PARAMETERS:
            layout += [(name, channels), (f"velocity_{name}", channels)]
        layout += [(name, channels) for name in NORM_STATISTICS]
    return layout


def dense_operators(input_size: int, layer_sizes: Sequence[int],
                    edges: Sequence[tuple[int, int]]) -> tuple[EdgeOperator, ...]:
    """Every edge a dense map between its populations (flat shapes)."""
    return tuple(Dense((input_size if source < 0 else layer_sizes[source],), (layer_sizes[target],))
                 for source, target in edges)


def _velocity_vars(process: AbstractProcess, buffers: Mapping[str, np.ndarray] | None,
                   shapes: dict[str, tuple[int, ...]]) -> None:
    """The optimiser's momentum buffer ``velocity_<name>`` of each parameter Var in ``shapes`` (name → shape), from
    ``buffers`` (a checkpoint's, by parameter name) or zeros."""
    buffers = dict(buffers or {})
    unknown = set(buffers) - set(shapes)
    if unknown:
        raise ValueError(f"momentum_buffers for Vars {type(process).__name__} does not have: {sorted(unknown)}")
    for name, shape in shapes.items():
        velocity = np.asarray(buffers.get(name, np.zeros(shape)), dtype=np.float64)
        if velocity.shape != tuple(shape):
            raise ValueError(f"the momentum buffer of {name} has shape {velocity.shape}, expected {tuple(shape)}")
        setattr(process, f"velocity_{name}", Var(shape=tuple(shape), init=velocity))


class SPIDENetwork(AbstractProcess):
    """SPIDE's spiking side for B samples side by side: forward soft-reset populations, one ternary backward
    neuron per forward neuron, and plastic connections that own their weights.

    Forward phase (T_f steps; edge e: source → target, the input edge reads x̄ without delay, the others the
    source's spikes of the previous step, as Lava's Dense):

        v ← λ·v + Σ_e d_e ⊙ (W_e·s_src[t−1] + b_e);   s = 1[v ≥ vth];   v ← v − (vth − v_reset)·s

    leaving the rates a (λ-weighted spike averages), the masks m = 1[0 < count < T_f] and x̄. Backward phase (T_b
    steps), every edge reversed, its weight read transposed from the same array (so W and Wᵀ are tied by
    construction) and gated on the sender by the forward mask:

        v_b ← λ·v_b + Σ_e (1/D)·W_eᵀ(m_tgt ⊙ d_e ⊙ s_b,tgt[t−1]) + g·1[last layer];
        s_b = D_b·(1[v_b ≥ vth_b] − 1[v_b ≤ −vth_b]);   v_b ← v_b − s_b

    Update at the window's last step (added to the accumulated gradient, which restarts after each step):
    ΔW_e = (1/D)·Σ_batch (m ⊙ d_e ⊙ β)_tgt a_srcᵀ, Δb_e = (1/D)·Σ_batch (m ⊙ d_e
    ⊙ β)_tgt; the gradient handed to the optimiser is ΔW/loss_scale (times the cap factor for a capped
    edge), and in mode LEARN momentum SGD (torch's: buf ← μ·buf + grad + wd·W; W ← W − lr·buf) applies it.

    Args:
        input_size: n_in, values per sample.
        layer_sizes: neurons per population.
        edges: (source, target) per connection, source −1 for the input.
        weights: per edge, the initial W_e (the operator's weight shape: (n_target, n_source) when dense), None for
            pooling.
        biases: per edge, the initial b_e (the operator's bias shape: (n_target,) when dense, (C_out,) for a
            convolution), or None for an edge without a bias.
        operators: per edge, its map (lavaflow.processes.spide_maps: Dense, Conv — also transposed —, AvgPool);
            absent: every edge dense.
        norm_bounds: per edge, c_e, whose effective weight is W_e·min(1, c_e/‖W_e‖_F) (SPIDE caps the feedback and,
            with model.loop_norm_bound, every in-loop edge), or None: uncapped. Absent: none capped.
        vth, v_reset: forward threshold and reset potential (SPIDE: 1 and −1, D = 2).
        leak: λ of forward and backward neurons (1: IF).
        vth_backward, backward_subtraction: θ_b and D_b of the ternary neurons (½ and 1).
        forward_steps, backward_steps: T_f and T_b.
        loss_scale: the scale of the injected g; the optimiser sees the update divided by it.
        momentum, weight_decay: the optimiser's (learning rates arrive with each batch).
        dropout: variational dropout rate on every edge's current in modes GRADIENT and LEARN.
        seed: with each window's key (HEADER), seeds that window's dropout masks.
        batch_size: B.
        fraction_bits: None for floating_pt; fixed_pt holds weights and biases as integers in units of
            2^−fraction_bits (lavaflow.processes.spide.models says what each quantity carries).
        momentum_buffers: the optimiser's starting momentum buffers by parameter Var name (``weights_<e>``,
            ``bias_<e>``), e.g. a checkpoint's, so a resumed run steps as the uninterrupted one; absent: zeros.
        input_norm: BatchNorm on the input edge (``InputNorm``; a dense input edge, fused floating_pt model): in
            GRADIENT and LEARN windows the input edge's weight and bias are BatchNorm folded in with the window's
            batch statistics over its real samples (header field 2), the update reaches F, b, γ and β through
            BatchNorm's backward, and γ, β learn with the same SGD; EVALUATE windows fold the exact statistics.
    """

    def __init__(
        self,
        *,
        input_size: int,
        layer_sizes: Sequence[int],
        edges: Sequence[tuple[int, int]],
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray | None],
        operators: Sequence[EdgeOperator] | None = None,
        norm_bounds: Sequence[float | None] | None = None,
        vth: float,
        v_reset: float,
        leak: float,
        vth_backward: float,
        backward_subtraction: float,
        forward_steps: int,
        backward_steps: int,
        loss_scale: float,
        momentum: float,
        weight_decay: float,
        dropout: float = 0.0,
        seed: int = 0,
        batch_size: int = 1,
        fraction_bits: int | None = None,
        momentum_buffers: Mapping[str, np.ndarray] | None = None,
        input_norm: InputNorm | None = None,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        edges = tuple((int(source), int(target)) for source, target in edges)
        layer_sizes = tuple(int(size) for size in layer_sizes)
        has_bias = tuple(bias is not None for bias in biases)
        operators = tuple(operators) if operators is not None else dense_operators(input_size, layer_sizes, edges)
        super().__init__(
            input_size=int(input_size), layer_sizes=layer_sizes, edges=edges, has_bias=has_bias, operators=operators,
            norm_bounds=_norm_bounds(norm_bounds, len(edges)), vth=float(vth),
            v_reset=float(v_reset), leak=float(leak), vth_backward=float(vth_backward),
            backward_subtraction=float(backward_subtraction), forward_steps=int(forward_steps),
            backward_steps=int(backward_steps), loss_scale=float(loss_scale), momentum=float(momentum),
            weight_decay=float(weight_decay), dropout=float(dropout), seed=int(seed), batch_size=int(batch_size),
            fraction_bits=fraction_bits, input_norm=None if input_norm is None else input_norm._replace(
                weight=None, bias=None), name=name, log_config=log_config,
        )
        # Checked after super(): Lava's AbstractProcess.__del__ fails on a process whose __init__ raised before it.
        _check_graph(int(input_size), layer_sizes, edges, operators, weights, biases, self.proc_params["norm_bounds"])
        if forward_steps < 1 or backward_steps < 1 or batch_size < 1:
            raise ValueError(f"forward_steps={forward_steps}, backward_steps={backward_steps} and "
                             f"batch_size={batch_size} must be positive")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        last = layer_sizes[-1]
        self.x_in = InPort(shape=(batch_size * int(input_size) + HEADER,))
        self.a_out = OutPort(shape=(batch_size * last,))
        self.g_in = InPort(shape=(batch_size * last,))
        for number, (operator, weight, bias) in enumerate(zip(operators, weights, biases, strict=True)):
            if operator.weight_shape is None:  # pooling: a fixed map, nothing to learn
                continue
            shape, bias_shape = tuple(operator.weight_shape), tuple(operator.bias_shape)
            setattr(self, weights_name(number), Var(shape=shape, init=np.asarray(weight)))
            setattr(self, bias_name(number), Var(shape=bias_shape, init=np.zeros(bias_shape) if bias is None else bias))
            # the last batch's gradient (ΔW/scale: diagnostics and tests)
            setattr(self, f"gradient_{weights_name(number)}", Var(shape=shape, init=0))
            setattr(self, f"gradient_{bias_name(number)}", Var(shape=bias_shape, init=0))
        layout = parameter_layout(operators, input_norm is not None)
        if input_norm is not None:
            _check_input_norm(input_norm, operators, edges)
            for name, value in zip(NORM_PARAMETERS, (input_norm.weight, input_norm.bias), strict=True):
                setattr(self, name, Var(shape=value.shape, init=np.asarray(value, dtype=np.float64)))
                setattr(self, f"gradient_{name}", Var(shape=value.shape, init=0))
            for name in NORM_STATISTICS:  # set by the model from the moments before they are first used
                setattr(self, name, Var(shape=input_norm.weight.shape, init=0))
        _velocity_vars(self, momentum_buffers, {name: shape for name, shape in layout
                                                if f"velocity_{name}" in dict(layout)})
        self.batches = Var(shape=(1,), init=0)  # windows with an optimiser step so far
        # A checkpoint leaves through a pipe (one message, mode EXPORT): Var.get moves only ~20k values/s.
        self._layout = layout
        self.parameters_out = OutPort(shape=(sum(int(np.prod(shape)) for _, shape in self._layout),))
        self.parameters_out.flag_external_pipe(buffer_size=1)

    def receive_parameters(self) -> dict[str, np.ndarray]:
        """Host side, after an EXPORT window ran: {Var name: value} of every weight, bias and momentum buffer."""
        port = self.parameters_out
        if not hasattr(port, "external_pipe_csp_recv_port"):
            raise RuntimeError("receive_parameters() needs a run: the pipe exists once the runtime is created")
        flat = port.external_pipe_csp_recv_port.recv()
        values, start = {}, 0
        for name, shape in self._layout:
            size = int(np.prod(shape))
            values[name] = flat[start:start + size].reshape(shape).copy()
            start += size
        return values


class SPIDEHost(AbstractProcess):
    """SPIDE's host side: streams the batches in, computes the readout and the loss, injects g, trains the readout.

    The readout is not local (spec §3.1: off-chip, autograd): o = W_o·a^N + b_o, L = mean_b CE(o_b, y_b), and the
    injected current is g = loss_scale·∂L/∂a^N = (loss_scale/B)·W_oᵀ(softmax(o) − onehot(y)) per sample, B the
    batch's real samples (padding rows carry label −1 and get g = 0). In modes GRADIENT and LEARN the readout's own
    gradient is ∂L/∂W_o, ∂L/∂b_o; mode LEARN steps it with the same momentum SGD as SPIDENetwork.

    Batches arrive through an external pipe (``send_batch``), one message per window: [mode, lr, mini-batch size,
    key, labels (B), x (B·n_in)]; results leave through another (``receive_results``), one message per window:
    [loss sum, correct, samples, predictions (B)]. With a mini-batch size in the header (the plain graph's
    one-sample windows), ∂L/∂o carries 1/size and the readout's gradient accumulates until the LEARN window.

    Args:
        input_size: n_in.
        readout_size: n_N, the neurons the readout reads.
        weight, bias: the readout's initial (classes, n_N) and (classes,).
        forward_steps, backward_steps: T_f and T_b (the host side idles through the backward phase).
        loss_scale, momentum, weight_decay: as SPIDENetwork's.
        batch_size: B.
        capacity: batches the input pipe (and the result pipe) hold.
        momentum_buffers: the readout's starting momentum buffers (``readout_weight``, ``readout_bias``); absent:
            zeros.
    """

    def __init__(
        self,
        *,
        input_size: int,
        readout_size: int,
        weight: np.ndarray,
        bias: np.ndarray,
        forward_steps: int,
        backward_steps: int,
        loss_scale: float,
        momentum: float,
        weight_decay: float,
        batch_size: int,
        capacity: int,
        momentum_buffers: Mapping[str, np.ndarray] | None = None,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(
            input_size=int(input_size), readout_size=int(readout_size), forward_steps=int(forward_steps),
            backward_steps=int(backward_steps), loss_scale=float(loss_scale), momentum=float(momentum),
            weight_decay=float(weight_decay), batch_size=int(batch_size), name=name, log_config=log_config,
        )
        classes = np.shape(weight)[0]
        if np.shape(weight) != (classes, readout_size) or np.shape(bias) != (classes,):
            raise ValueError(f"the readout weight {np.shape(weight)} and bias {np.shape(bias)} do not read "
                             f"{readout_size} neurons")
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.batch_in = InPort(shape=(HEADER + batch_size + batch_size * input_size,))
        self.batch_in.flag_external_pipe(buffer_size=capacity)
        self.results_out = OutPort(shape=(RESULT_HEADER + batch_size,))
        self.results_out.flag_external_pipe(buffer_size=capacity)
        self.x_out = OutPort(shape=(batch_size * input_size + HEADER,))
        self.a_in = InPort(shape=(batch_size * readout_size,))
        self.g_out = OutPort(shape=(batch_size * readout_size,))
        self.readout_weight = Var(shape=(classes, readout_size), init=weight)
        self.readout_bias = Var(shape=(classes,), init=bias)
        _velocity_vars(self, momentum_buffers, {"readout_weight": (classes, readout_size), "readout_bias": (classes,)})
        self.batches = Var(shape=(1,), init=0)
        self.capacity = int(capacity)
        self._sizes = (int(batch_size), int(input_size))

    def send_batch(self, mode: int, learning_rate: float, inputs: np.ndarray, labels: np.ndarray,
                   batch_samples: int = 0, key: int = 0) -> int:
        """Host side: queue one window, (S ≤ B, n_in) inputs and (S,) integer labels; ``batch_samples``: the
        mini-batch's size when it spans several windows (0: this window's S); ``key`` (0 … 2^53): names the window's
        dropout masks (HEADER). Returns S.

        Raises:
            RuntimeError: the runtime does not exist yet (the pipe is made when it is created).
            ValueError: a mode, shapes or labels that do not fit.
        """
        port = self.batch_in
        if not hasattr(port, "external_pipe_csp_send_port"):
            raise RuntimeError("send_batch() needs a runtime: the pipe exists once it is created")
        batch_size, input_size = self._sizes
        inputs = np.asarray(inputs, dtype=np.float64)
        labels = np.asarray(labels)
        samples = inputs.shape[0]
        if inputs.shape != (samples, input_size) or not 1 <= samples <= batch_size or labels.shape != (samples,):
            raise ValueError(f"a batch is (S, {input_size}) inputs and (S,) labels with 1 ≤ S ≤ {batch_size}; got "
                             f"{inputs.shape} and {labels.shape}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 <= key < 2**53:  # it travels as a float64
            raise ValueError(f"key must lie in [0, 2^53), got {key}")
        padded_labels = np.full(batch_size, -1.0)
        padded_labels[:samples] = labels
        padded = np.zeros((batch_size, input_size))
        padded[:samples] = inputs
        port.external_pipe_csp_send_port.send(
            np.concatenate([[float(mode), float(learning_rate), float(batch_samples), float(key)], padded_labels,
                            padded.reshape(-1)]))
        return samples

    def request_export(self) -> int:
        """Host side: queue an EXPORT window (SPIDENetwork then sends its parameters); returns its steps (1)."""
        batch_size = self._sizes[0]
        message = np.zeros(self.batch_in.shape)
        message[0] = EXPORT
        message[HEADER:HEADER + batch_size] = -1
        self.batch_in.external_pipe_csp_send_port.send(message)
        return 1

    def receive_results(self) -> tuple[float, int, int, np.ndarray]:
        """Host side, after the window ran: (loss sum, correct, samples, predictions (samples,))."""
        port = self.results_out
        if not hasattr(port, "external_pipe_csp_recv_port"):
            raise RuntimeError("receive_results() needs a run: the pipe exists once the runtime is created")
        message = port.external_pipe_csp_recv_port.recv()
        samples = int(message[2])
        return float(message[0]), int(message[1]), samples, message[RESULT_HEADER:RESULT_HEADER + samples].astype(int)


def _check_graph(input_size: int, layer_sizes: tuple[int, ...], edges: tuple[tuple[int, int], ...],
                 operators: tuple[EdgeOperator, ...], weights: Sequence[np.ndarray | None],
                 biases: Sequence[np.ndarray | None], norm_bounds: tuple[float | None, ...]) -> None:
    """Raise ValueError unless every edge's map joins its populations with a weight and bias of matching shape."""
    if not layer_sizes or min(layer_sizes) < 1 or input_size < 1:
        raise ValueError(f"layer sizes {layer_sizes} and input size {input_size} must be positive")
    if not len(edges) == len(operators) == len(weights) == len(biases):
        raise ValueError(f"{len(edges)} edges need as many operators, weights and biases, got {len(operators)}, "
                         f"{len(weights)} and {len(biases)}")
    if not any(source < 0 for source, _ in edges):
        raise ValueError("no edge reads the input (source −1)")
    for number, ((source, target), operator, weight, bias) in enumerate(
            zip(edges, operators, weights, biases, strict=True)):
        if not -1 <= source < len(layer_sizes) or not 0 <= target < len(layer_sizes):
            raise ValueError(f"edge {number} joins {source} → {target}, outside −1 … {len(layer_sizes) - 1}")
        sizes = (input_size if source < 0 else layer_sizes[source], layer_sizes[target])
        if (math.prod(operator.input_shape), math.prod(operator.output_shape)) != sizes:
            raise ValueError(f"edge {number} ({source} → {target}) joins {sizes[0]} to {sizes[1]} neurons, but its "
                             f"operator maps {operator.input_shape} to {operator.output_shape}")
        expected = operator.weight_shape
        if (weight is None) != (expected is None) or (weight is not None and np.shape(weight) != tuple(expected)):
            raise ValueError(f"edge {number} ({source} → {target}) has a weight of shape "
                             f"{None if weight is None else np.shape(weight)}, expected {expected}")
        if bias is not None and (operator.bias_shape is None or np.shape(bias) != tuple(operator.bias_shape)):
            raise ValueError(f"edge {number} has a bias of shape {np.shape(bias)}, expected {operator.bias_shape}")
    if len(norm_bounds) != len(edges):
        raise ValueError(f"{len(edges)} edges need as many norm bounds (None: uncapped), got {len(norm_bounds)}")
    for number, bound in enumerate(norm_bounds):
        if bound is not None and not bound > 0:
            raise ValueError(f"edge {number}'s norm bound must be positive (or None: uncapped), got {bound}")


def _check_input_norm(norm: InputNorm, operators: Sequence[EdgeOperator], edges: Sequence[tuple[int, int]]) -> None:
    if not isinstance(operators[0], Dense) or edges[0][0] != -1:
        raise ValueError("input_norm normalises a dense input edge (edge 0 from the input); this graph's edge 0 is a "
                         f"{type(operators[0]).__name__}")
    channels = tuple(operators[0].bias_shape)
    size = operators[0].weight_shape[1]
    shapes = {"weight": (np.shape(norm.weight), channels), "bias": (np.shape(norm.bias), channels),
              "input_mean": (np.shape(norm.input_mean), (size,)),
              "input_covariance": (np.shape(norm.input_covariance), (size, size))}
    for name, (shape, expected) in shapes.items():
        if tuple(shape) != expected:
            raise ValueError(f"input_norm.{name} has shape {tuple(shape)}, expected {expected}")
    if not norm.eps > 0 or norm.count < 2:
        raise ValueError(f"input_norm needs eps > 0 and moments of at least 2 samples; got {norm.eps}, {norm.count}")


def _norm_bounds(bounds: Sequence[float | None] | None, edges: int) -> tuple[float | None, ...]:
    """Per edge, the Frobenius-norm cap as a float, or None."""
    if bounds is None:
        return (None,) * edges
    return tuple(None if bound is None else float(bound) for bound in bounds)


# ---------------------------------------------------------------------------------------------------- plain graph
# SPIDENetwork's sub-process model (lavaflow.processes.spide.plain_models) is built from the three processes below,
# one sample per window (B = 1): the graph whose pieces map onto Loihi 2 cores. Each reads the window's
# [mode, lr, size, x] message on ``ctl_in`` to know the window's length.


class SPIDEForwardNeurons(AbstractProcess):
    """One forward population of the plain graph: soft-reset IF/LIF neurons (SPIDENetwork's forward equation) that,
    at the forward phase's last step, send their rates a (λ-weighted spike averages) on ``rate_out`` and, in
    training windows, their masks m = 1[0 < count < T_f] on ``mask_out`` to their ternary twin.

    Args:
        size: neurons.
        input_size: n_in (the length of the ``ctl_in`` message).
        vth, v_reset, leak: as SPIDENetwork's.
        forward_steps, backward_steps: T_f, T_b.
    """

    def __init__(self, *, size: int, input_size: int, vth: float, v_reset: float, leak: float, forward_steps: int,
                 backward_steps: int, name: str | None = None, log_config: LogConfig | None = None) -> None:
        super().__init__(size=int(size), vth=float(vth), v_reset=float(v_reset), leak=float(leak),
                         forward_steps=int(forward_steps), backward_steps=int(backward_steps), name=name,
                         log_config=log_config)
        self.ctl_in = InPort(shape=(HEADER + int(input_size),))
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))
        self.rate_out = OutPort(shape=(size,))
        self.mask_out = OutPort(shape=(size,))
        self.v = Var(shape=(size,), init=0)


class TernaryNeurons(AbstractProcess):
    """One backward population of the plain graph: ternary neurons (SPIDENetwork's backward equation) whose graded
    output is already gated, m ⊙ s ∈ {−D_b, 0, D_b} (the mask multiplies the sender, spec §4.3), and which send
    m ⊙ β on ``error_out`` at the backward phase's last step. The population the readout reads takes g on ``g_in``
    at the first backward step (rounded onto the backward voltages' grid 2^−q/D in fixed point).

    Args:
        size: neurons.
        input_size: n_in (the length of the ``ctl_in`` message).
        vth_backward, backward_subtraction, leak: θ_b, D_b, λ.
        subtraction: D = vth − v_reset of the forward neurons (the grid of g in fixed point).
        forward_steps, backward_steps: T_f, T_b.
        injected: whether g arrives here.
        fraction_bits: None (float) or q (fixed point).
    """

    def __init__(self, *, size: int, input_size: int, vth_backward: float, backward_subtraction: float, leak: float,
                 subtraction: float, forward_steps: int, backward_steps: int, injected: bool,
                 fraction_bits: int | None = None, name: str | None = None,
                 log_config: LogConfig | None = None) -> None:
        super().__init__(size=int(size), vth_backward=float(vth_backward),
                         backward_subtraction=float(backward_subtraction), leak=float(leak),
                         subtraction=float(subtraction), forward_steps=int(forward_steps),
                         backward_steps=int(backward_steps), injected=bool(injected), fraction_bits=fraction_bits,
                         name=name, log_config=log_config)
        self.ctl_in = InPort(shape=(HEADER + int(input_size),))
        self.mask_in = InPort(shape=(size,))
        self.g_in = InPort(shape=(size,))
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))
        self.error_out = OutPort(shape=(size,))
        self.v = Var(shape=(size,), init=0)


class PlasticConnection(AbstractProcess):
    """A plastic connection of the plain graph: it owns W and b of its map (dense, conv, transposed conv; average
    pooling has none and only relays), sends W·s + b forward and (1/D)·Wᵀ(m ⊙ s_b) backward from the same array (so
    W and its transposed copy stay tied), and applies the local update at the backward phase's last step:
    ΔW = (1/D)·(m ⊙ β)_post a_preᵀ (a convolution's summed over the positions sharing its kernel), accumulated over a
    mini-batch's windows and stepped (momentum SGD) in the LEARN window.

    Each direction delays one step, as Lava's Dense (it sends last step's buffer, then receives); the input edge
    has no delay: it receives x with the window's message and sends W·x̄ + b at every forward step.

    Args:
        operator: the map (lavaflow.processes.spide_maps), which fixes n_in, n_out and the shapes of W and b.
        message_size: n_in of the network (the length of the ``ctl_in`` message).
        weights, bias: the initial W and b (bias None: none, never updated; both None for pooling).
        is_input: the edge reads the network's input (x̄, no delay, no backward message).
        norm_bound: c: the effective weight is W·min(1, c/‖W‖_F) (a capped edge), or None: uncapped.
        subtraction: D; loss_scale, momentum, weight_decay: as SPIDENetwork's.
        forward_steps, backward_steps: T_f, T_b.
        fraction_bits: None (float) or q (fixed point: x̄ on 8 bits, weights on 2^−q).
        velocity_weights, velocity_bias: the optimiser's starting momentum buffers (None: zeros).
    """

    def __init__(self, *, operator: EdgeOperator, message_size: int, weights: np.ndarray | None,
                 bias: np.ndarray | None, is_input: bool, norm_bound: float | None, subtraction: float,
                 loss_scale: float, momentum: float, weight_decay: float, forward_steps: int, backward_steps: int,
                 fraction_bits: int | None = None, velocity_weights: np.ndarray | None = None,
                 velocity_bias: np.ndarray | None = None, name: str | None = None,
                 log_config: LogConfig | None = None) -> None:
        super().__init__(operator=operator, is_input=bool(is_input), has_bias=bias is not None,
                         norm_bound=None if norm_bound is None else float(norm_bound),
                         subtraction=float(subtraction), loss_scale=float(loss_scale), momentum=float(momentum),
                         weight_decay=float(weight_decay), forward_steps=int(forward_steps),
                         backward_steps=int(backward_steps), fraction_bits=fraction_bits, name=name,
                         log_config=log_config)
        input_size, output_size = math.prod(operator.input_shape), math.prod(operator.output_shape)
        # pooling learns nothing: one placeholder value stands in for W and b (Lava Vars cannot be empty)
        shape, bias_shape = tuple(operator.weight_shape or (1,)), tuple(operator.bias_shape or (1,))
        if weights is not None and np.shape(weights) != shape:
            raise ValueError(f"PlasticConnection {name}: weights of shape {np.shape(weights)}, expected {shape}")
        self.ctl_in = InPort(shape=(HEADER + int(message_size),))
        self.s_in = InPort(shape=(input_size,))
        self.a_out = OutPort(shape=(output_size,))
        self.pre_in = InPort(shape=(input_size,))
        self.b_in = InPort(shape=(output_size,))
        self.b_out = OutPort(shape=(input_size,))
        self.error_in = InPort(shape=(output_size,))
        self.weights = Var(shape=shape, init=np.zeros(shape) if weights is None else np.asarray(weights))
        self.bias = Var(shape=bias_shape, init=np.zeros(bias_shape) if bias is None else bias)
        self.velocity_weights = Var(shape=shape, init=0 if velocity_weights is None else np.asarray(velocity_weights))
        self.velocity_bias = Var(shape=bias_shape, init=0 if velocity_bias is None else np.asarray(velocity_bias))
        self.gradient_weights = Var(shape=shape, init=0)
        self.gradient_bias = Var(shape=bias_shape, init=0)
