"""SPIDE's feedback SNNs: a chain of layers (dense, conv, avg-pool) closed by an optional feedback, any depth.

``models.feedback.FeedbackSNN`` (IDE) covers one shape of network: a dense or conv input layer, stride-1 "same"
convs in the loop and a feedback of the same kind, spectral-normed. SPIDE's reference networks need more (spec
§3.6, §3.8): strided in-loop convs, avg-pool layers that carry their own neurons, a dense layer after convs
(LeNet-style), a ConvTranspose feedback (ConvNet-F, AlexNet-F), no feedback at all, and a Frobenius-norm cap in
place of the spectral norm. This module holds that network; the SPIDE algorithm itself (ternary backward phase,
local update, the custom gradient) lives in ``pipeline.spide``.

Structure: edge 0 is the input operator F (input → layer 0); edge l (l = 1..N−1) maps layer l−1 to layer l; an
optional feedback edge maps layer N−1 back to layer 0. Every edge's output drives a population of soft-reset
neurons (pooling included, as in the reference). A linear readout reads layer N−1's rate.

Timing is NetSpec's (Lava's), steps t = 1..T: the input reaches layer 0 in the same step, every edge between
populations delays one step, each edge's current passes its variational-dropout mask d_e (training only):

    I_k[t] = Σ_{e → k} d_e ⊙ (W_e · s_{src(e)}[t − 1] + b_e)      (the input edge reads x[t] instead)

Each operator is a small object with three functions of explicit tensors (so a Lava graph can be checked against
them): ``apply`` (the forward current), ``adjoint`` (the transpose of its linear part, what the backward phase
sends) and ``weight_gradient`` (the gradient of ⟨err, W·pre + b⟩ with respect to W and b, the local update).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as functional
from torch import Tensor, nn

from lavaflow.models import netspec
from lavaflow.models.feedback import _GeneratorHandle, unit_row_uniform
from lavaflow.models.input_norm import fold
from lavaflow.models.neurons import SoftResetParams, constant_in_time, mean_input, rate_normaliser, soft_reset_step

INITS = ("unit_row", "kaiming")
_OPTION = re.compile(r"^(k|s|p|op)(\d+)$")


# ---------------------------------------------------------------------------------------------------- operators
@dataclass(frozen=True)
class Linear:
    """y = W·flatten(x) + b, reshaped to ``output_shape``; W is (out, in) as torch.nn.Linear."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (math.prod(self.output_shape), math.prod(self.input_shape))

    def apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return functional.linear(x.flatten(1), weight, bias).reshape(x.shape[0], *self.output_shape)

    def adjoint(self, error: Tensor, weight: Tensor) -> Tensor:
        """Wᵀ·e, shaped like the input."""
        return (error.flatten(1) @ weight).reshape(error.shape[0], *self.input_shape)

    def weight_gradient(self, pre: Tensor, error: Tensor) -> tuple[Tensor, Tensor]:
        """(Σ_b e_b·pre_bᵀ, Σ_b e_b): the batch-summed outer product and the bias gradient."""
        flat = error.flatten(1)
        return flat.T @ pre.flatten(1), flat.sum(0)


@dataclass(frozen=True)
class Conv:
    """y = conv2d(x, W, b, stride, padding); W is (C_out, C_in, k, k)."""

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    kernel: int
    stride: int
    padding: int

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.output_shape[0], self.input_shape[0], self.kernel, self.kernel)

    def _output_padding(self) -> tuple[int, int]:
        """What conv_transpose2d needs to give back the input's H × W (lost to the stride's rounding)."""
        return tuple(size - ((out - 1) * self.stride - 2 * self.padding + self.kernel)  # type: ignore[return-value]
                     for size, out in zip(self.input_shape[1:], self.output_shape[1:], strict=True))

    def apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return functional.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)

    def adjoint(self, error: Tensor, weight: Tensor) -> Tensor:
        return functional.conv_transpose2d(error, weight, stride=self.stride, padding=self.padding,
                                           output_padding=self._output_padding())

    def weight_gradient(self, pre: Tensor, error: Tensor) -> tuple[Tensor, Tensor]:
        weight = torch.nn.grad.conv2d_weight(pre, self.weight_shape, error, stride=self.stride, padding=self.padding)
        return weight, error.sum((0, 2, 3))


@dataclass(frozen=True)
class ConvTranspose:
    """y = conv_transpose2d(x, W, stride, padding, output_padding) (no bias); W is (C_in, C_out, k, k)."""

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    kernel: int
    stride: int
    padding: int
    output_padding: int

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.input_shape[0], self.output_shape[0], self.kernel, self.kernel)

    def apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return functional.conv_transpose2d(x, weight, bias, stride=self.stride, padding=self.padding,
                                           output_padding=self.output_padding)

    def adjoint(self, error: Tensor, weight: Tensor) -> Tensor:
        """The transpose of a transposed conv: the strided conv with the same kernel (the reference's back_compute)."""
        return functional.conv2d(error, weight, stride=self.stride, padding=self.padding)

    def weight_gradient(self, pre: Tensor, error: Tensor) -> tuple[Tensor, Tensor]:
        # ⟨e, convT(x; W)⟩ = ⟨conv(e; W), x⟩: the conv's weight gradient with the roles of input and output swapped.
        weight = torch.nn.grad.conv2d_weight(error, self.weight_shape, pre, stride=self.stride, padding=self.padding)
        return weight, error.sum((0, 2, 3))


@dataclass(frozen=True)
class AvgPool:
    """Average pooling k × k, stride k (fixed weights 1/k²; H and W divisible by k)."""

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    kernel: int

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return ()

    def apply(self, x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        return functional.avg_pool2d(x, self.kernel)

    def adjoint(self, error: Tensor, weight: Tensor | None) -> Tensor:
        """Each output's value spread evenly (÷ k²) over its k × k window."""
        return functional.interpolate(error, scale_factor=self.kernel, mode="nearest") / self.kernel**2


Operator = Linear | Conv | ConvTranspose | AvgPool


def _parse(text: str, what: str) -> tuple[str, list[int], dict[str, int]]:
    """'conv 64 k5 s2 p2' → ('conv', [64], {'k': 5, 's': 2, 'p': 2}); ValueError naming ``what`` otherwise."""
    tokens = str(text).split()
    if not tokens:
        raise ValueError(f"{what} is empty")
    numbers, options = [], {}
    for token in tokens[1:]:
        match = _OPTION.match(token)
        if match:
            options[match.group(1)] = int(match.group(2))
        elif token.isdigit():
            numbers.append(int(token))
        else:
            raise ValueError(f"{what} {text!r}: cannot read {token!r} (expected a number or k<N>, s<N>, p<N>, op<N>)")
    return tokens[0], numbers, options


def layer_operator(text: str, input_shape: tuple[int, ...], what: str) -> Operator:
    """The operator a layer string describes, applied to ``input_shape``.

    Layer strings: ``fc N`` (dense to N neurons, flattening the input), ``conv C k5 s2 p2`` (stride 1, padding 0
    by default), ``pool K`` (average pooling K × K, stride K).
    """
    kind, numbers, options = _parse(text, what)
    spatial = len(input_shape) == 3
    if kind == "fc" and len(numbers) == 1 and not options:
        return Linear(tuple(input_shape), (numbers[0],))
    if kind in ("conv", "pool") and not spatial:
        raise ValueError(f"{what} {text!r} needs a (C, H, W) input, but it follows a layer of shape {input_shape}")
    if kind == "conv" and len(numbers) == 1 and "k" in options and set(options) <= {"k", "s", "p"}:
        kernel, stride, padding = options["k"], options.get("s", 1), options.get("p", 0)
        height, width = ((size + 2 * padding - kernel) // stride + 1 for size in input_shape[1:])
        if min(numbers[0], height, width, kernel, stride) < 1:
            raise ValueError(f"{what} {text!r} maps {input_shape} to an empty output")
        return Conv(tuple(input_shape), (numbers[0], height, width), kernel, stride, padding)  # type: ignore[arg-type]
    if kind == "pool" and len(numbers) == 1 and not options:
        kernel = numbers[0]
        if kernel < 1 or input_shape[1] % kernel or input_shape[2] % kernel:
            raise ValueError(f"{what} {text!r}: H × W {input_shape[1:]} must be divisible by the pool size")
        return AvgPool(tuple(input_shape), (input_shape[0], input_shape[1] // kernel,  # type: ignore[arg-type]
                                            input_shape[2] // kernel), kernel)
    raise ValueError(f"{what} {text!r} is not one of 'fc N', 'conv C kK [sS] [pP]', 'pool K'")


def feedback_operator(text: str, source: tuple[int, ...], target: tuple[int, ...]) -> Operator | None:
    """The feedback from the last layer (``source``) to layer 0 (``target``); None for 'none'.

    Feedback strings: ``none``, ``fc``, ``conv k5 [pP]`` (stride 1), ``convT k3 s2 p1 op1``. The output must have
    layer 0's shape; the channel count is layer 0's.
    """
    kind, numbers, options = _parse(text, "model.feedback")
    if kind == "none" and not numbers and not options:
        return None
    if numbers:
        raise ValueError(f"model.feedback {text!r}: the feedback's size is layer 0's, so it takes no count")
    if kind == "fc" and not options:
        return Linear(tuple(source), tuple(target))
    if kind in ("conv", "convT") and (len(source) != 3 or len(target) != 3):
        raise ValueError(f"model.feedback {text!r} needs conv layers at both ends ({source} → {target})")
    if kind == "conv" and "k" in options and set(options) <= {"k", "p"}:
        kernel, padding = options["k"], options.get("p", 0)
        shape = (target[0], source[1] + 2 * padding - kernel + 1, source[2] + 2 * padding - kernel + 1)
        operator: Operator = Conv(tuple(source), shape, kernel, 1, padding)  # type: ignore[arg-type]
    elif kind == "convT" and "k" in options and set(options) <= {"k", "s", "p", "op"}:
        kernel, stride, padding, extra = options["k"], options.get("s", 1), options.get("p", 0), options.get("op", 0)
        shape = (target[0], *((size - 1) * stride - 2 * padding + kernel + extra for size in source[1:]))
        operator = ConvTranspose(tuple(source), shape, kernel, stride, padding, extra)  # type: ignore[arg-type]
    else:
        raise ValueError(f"model.feedback {text!r} is not one of 'none', 'fc', 'conv kK [pP]', "
                         "'convT kK [sS] [pP] [opN]'")
    if tuple(operator.output_shape) != tuple(target):
        raise ValueError(f"model.feedback {text!r} maps the last layer {source} to {operator.output_shape}, "
                         f"not to layer 0's shape {target}")
    return operator


def frobenius_cap(weight: Tensor, bound: float) -> Tensor:
    """W·min(‖W‖_F, c)/‖W‖_F: a Frobenius norm at most c (SPIDE's restriction of the feedback, spec §3.1; here
    also of the in-loop weights when ``loop_norm_bound`` is set).

    The factor is a constant for autograd, as in the reference: the raw weight's gradient is the effective one's
    times the factor, so the update stays local (the norm is a single scalar, computed exactly here where the
    reference estimates it from 64 random probes).
    """
    norm = weight.detach().norm()
    factor = torch.clamp(bound / norm.clamp_min(torch.finfo(weight.dtype).tiny), max=1.0)
    return weight * factor


# ---------------------------------------------------------------------------------------------------- network
class Edge(NamedTuple):
    """A connection: ``source`` is −1 for the input; ``delay`` 0 from the input, 1 between populations."""

    source: int
    target: int
    operator: Operator
    delay: int


class ForwardPhase(NamedTuple):
    """What SPIDE's forward phase leaves for the backward phase and the update, per layer (B, *layer shape).

    mean_input: x̄ (B, *input_shape), the λ-weighted input average: the input edge's presynaptic rate.
    rates: a^l, λ-weighted average forward rates.
    spike_counts: spikes per neuron over the T_f steps.
    masks: m^l = 1[0 < count < T_f], SPIDE's local surrogate of σ' (spec §3.2).
    """

    mean_input: Tensor
    rates: tuple[Tensor, ...]
    spike_counts: tuple[Tensor, ...]
    masks: tuple[Tensor, ...]


class BatchOperators(NamedTuple):
    """One mini-batch's weights and dropout masks, fixed for both phases.

    weights, biases: per edge, the effective tensors (Frobenius-capped where ``SPIDENetwork.norm_bounds`` says;
        None for pooling and for biases the edge does not have).
    dropout: per edge, (B, *target shape) masks scaled 1/(1 − p), or None (eval, or p = 0).
    """

    weights: tuple[Tensor | None, ...]
    biases: tuple[Tensor | None, ...]
    dropout: tuple[Tensor, ...] | None


class SPIDENetwork(nn.Module):
    """A chain of soft-reset populations with an optional feedback (see the module docstring).

    Args:
        input_shape: one step of one sample, e.g. (1, 28, 28).
        layers: layer strings (``layer_operator``); the first one is the input operator F.
        feedback: feedback string (``feedback_operator``).
        num_classes: readout outputs.
        neuron: forward neurons (SPIDE: θ = 1, u_rest = −1, so D = 2).
        feedback_norm_bound: c, the feedback's Frobenius-norm cap.
        loop_norm_bound: c_loop, a Frobenius-norm cap on every other weighted edge between populations (the in-loop
            layers W_1..W_{N−1}); None leaves them free, as the reference does. The reference restricts the
            feedback alone, and a ConvNet-F trained that way loses its contraction (the in-loop convs' operator
            norms grow ×5-8 while the feedback sits at its cap; see ``pipeline.spide``).
        dropout: variational dropout rate on every edge's current in training (one mask per mini-batch).
        init: "unit_row" (U(−1, 1), each output unit's weights scaled to unit norm: IDE/AlexNet-F) or "kaiming"
            (normal, std √(2/fan_in): LeNet, ConvNet-F). Biases start at 0; a ConvTranspose feedback starts ×0.1
            (the reference's init, spec §3.6); the readout has torch.nn.Linear's default init.
        generator: draws the initial weights and the dropout masks.
    """

    def __init__(self, input_shape: tuple[int, ...], layers: Sequence[str], feedback: str, num_classes: int, *,
                 neuron: SoftResetParams, feedback_norm_bound: float, dropout: float, init: str,
                 generator: torch.Generator, loop_norm_bound: float | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        if not layers:
            raise ValueError("a SPIDE network needs at least one layer")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if neuron.subtraction <= 0:
            raise ValueError(f"threshold − reset_potential must be positive, got {neuron.subtraction}")
        if not feedback_norm_bound > 0:
            raise ValueError(f"feedback_norm_bound must be positive, got {feedback_norm_bound}")
        if loop_norm_bound is not None and not loop_norm_bound > 0:
            raise ValueError(f"loop_norm_bound must be positive (or None: no cap), got {loop_norm_bound}")
        self.input_shape = tuple(input_shape)
        self.neuron = neuron
        self.dropout = float(dropout)
        self.feedback_norm_bound = float(feedback_norm_bound)
        self.loop_norm_bound = None if loop_norm_bound is None else float(loop_norm_bound)
        self._generator = _GeneratorHandle(generator)
        edges, shape = [], self.input_shape
        for index, text in enumerate(layers):
            operator = layer_operator(text, shape, f"model.layers[{index}]")
            edges.append(Edge(index - 1, index, operator, 0 if index == 0 else 1))
            shape = tuple(operator.output_shape)
        self.layer_shapes: tuple[tuple[int, ...], ...] = tuple(tuple(e.operator.output_shape) for e in edges)
        back = feedback_operator(feedback, self.layer_shapes[-1], self.layer_shapes[0])
        self.has_feedback = back is not None
        if back is not None:
            edges.append(Edge(len(layers) - 1, 0, back, 1))
        self.edges: tuple[Edge, ...] = tuple(edges)
        self.norm_bounds: tuple[float | None, ...] = tuple(
            self.feedback_norm_bound if number == self.feedback_edge
            else self.loop_norm_bound if edge.source >= 0 and not isinstance(edge.operator, AvgPool)
            else None
            for number, edge in enumerate(self.edges))
        """Per edge, the Frobenius-norm cap of its effective weight (None: uncapped: the input edge F, pooling,
        and the in-loop edges unless ``loop_norm_bound`` is set)."""
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self._weight_index: list[int | None] = []
        self._bias_index: list[int | None] = []
        for number, edge in enumerate(self.edges):
            operator = edge.operator
            if isinstance(operator, AvgPool):
                self._weight_index.append(None)
                self._bias_index.append(None)
                continue
            weight = self._initial_weight(operator, init, generator)
            is_feedback = self.has_feedback and number == len(self.edges) - 1
            if self.norm_bounds[number] is not None:
                with torch.no_grad():  # start within the cap, so that the raw and effective weights agree
                    weight = frobenius_cap(weight, self.norm_bounds[number])
            self._weight_index.append(len(self.weights))
            self.weights.append(nn.Parameter(weight))
            if is_feedback:  # the feedback has no bias (spec §2.3, §3.6)
                self._bias_index.append(None)
            else:
                self._bias_index.append(len(self.biases))
                self.biases.append(nn.Parameter(torch.zeros(operator.output_shape[0])))
        first = self.edges[0].operator
        if batch_norm and not isinstance(first, (Linear, Conv)):
            raise ValueError(f"batch_norm normalises the input layer's current, but model.layers[0] is a "
                             f"{type(first).__name__}; start with an fc or conv layer, or leave batch_norm off")
        self.input_norm = ((nn.BatchNorm2d if isinstance(first, Conv) else nn.BatchNorm1d)(self.layer_shapes[0][0])
                           if batch_norm else None)
        """BatchNorm on the input edge's current (γ, β and the statistics evaluation folds into F and b), or None."""
        readout_in = math.prod(self.layer_shapes[-1])
        bound = 1 / math.sqrt(readout_in)
        self.readout = nn.utils.skip_init(nn.Linear, readout_in, num_classes)
        with torch.no_grad():
            uniform = functools.partial(torch.rand, generator=generator, device=generator.device)
            self.readout.weight.copy_(uniform(self.readout.weight.shape) * 2 * bound - bound)
            self.readout.bias.copy_(uniform(self.readout.bias.shape) * 2 * bound - bound)

    @staticmethod
    def _initial_weight(operator: Operator, init: str, generator: torch.Generator) -> Tensor:
        shape = operator.weight_shape
        if isinstance(operator, ConvTranspose):  # rows are input channels: normalise per output channel
            swapped = (shape[1], shape[0], *shape[2:])
            if init == "unit_row":
                weight = unit_row_uniform(swapped, generator).transpose(0, 1).contiguous()
            else:
                weight = torch.randn(shape, generator=generator) * math.sqrt(2 / math.prod(swapped[1:]))
            return weight * 0.1
        if init == "unit_row":
            return unit_row_uniform(shape, generator)
        return torch.randn(shape, generator=generator) * math.sqrt(2 / math.prod(shape[1:]))

    # ------------------------------------------------------------------------------------------ batch state
    @property
    def feedback_edge(self) -> int | None:
        """The feedback's index in ``edges`` (the last), or None for a feed-forward network."""
        return len(self.edges) - 1 if self.has_feedback else None

    def reseed_random_streams(self, seed: int) -> None:
        """Restart the dropout masks' generator (the training loop calls this every epoch; see FeedbackSNN)."""
        self._generator.generator.manual_seed(seed)

    def batch_operators(self, batch_size: int, inputs: Tensor | None = None) -> BatchOperators:
        """This mini-batch's effective weights (with a graph into the parameters) and its dropout masks.

        With ``input_norm``, the input edge's weight and bias are BatchNorm folded in (``models.input_norm.fold``):
        in training with the statistics of this batch's drive F·x̄ + b, which needs the batch, ``inputs`` (T, B,
        *input_shape); in evaluation with the stored statistics.
        """
        weights, biases = [], []
        for number in range(len(self.edges)):
            index, bias_index = self._weight_index[number], self._bias_index[number]
            weight = None if index is None else self.weights[index]
            bound = self.norm_bounds[number]
            if weight is not None and bound is not None:
                weight = frobenius_cap(weight, bound)
            weights.append(weight)
            biases.append(None if bias_index is None else self.biases[bias_index])
        if self.input_norm is not None:
            weights[0], biases[0] = self._normalised_input(weights[0], biases[0], inputs)
        dropout = None
        if self.training and self.dropout > 0:
            generator, keep = self._generator.generator, 1 - self.dropout
            like = self.readout.weight
            dropout = tuple((torch.rand((batch_size, *self.layer_shapes[edge.target]), generator=generator,
                                        device=generator.device) < keep).to(like) / keep for edge in self.edges)
        return BatchOperators(tuple(weights), tuple(biases), dropout)

    def _normalised_input(self, weight: Tensor, bias: Tensor, inputs: Tensor | None) -> tuple[Tensor, Tensor]:
        norm = self.input_norm
        if not self.training:
            return fold(norm, weight, bias, norm.running_mean, norm.running_var)
        if inputs is None:
            raise ValueError("in training, BatchNorm on the input layer needs the batch: batch_operators(batch_size, "
                             "inputs)")
        average_input = mean_input(inputs, self.neuron.leak, weight.dtype)
        drive = self.edges[0].operator.apply(average_input, weight, bias)
        dims = [0, *range(2, drive.dim())]
        return fold(norm, weight, bias, drive.mean(dims), drive.var(dims, unbiased=False))

    def edge_current(self, number: int, source: Tensor, operators: BatchOperators) -> Tensor:
        """d_e ⊙ (W_e·source + b_e): edge ``number``'s current into its target."""
        current = self.edges[number].operator.apply(source, operators.weights[number], operators.biases[number])
        return current if operators.dropout is None else current * operators.dropout[number]

    # ------------------------------------------------------------------------------------------ forward phase
    def _check_inputs(self, inputs: Tensor) -> None:
        if inputs.dim() != len(self.input_shape) + 2 or tuple(inputs.shape[2:]) != self.input_shape:
            raise ValueError(f"inputs must be time-first (T, B, *{self.input_shape}), got shape {tuple(inputs.shape)}")

    @torch.no_grad()
    def forward_phase(self, inputs: Tensor, operators: BatchOperators) -> ForwardPhase:
        """Simulate the forward SNN for T = inputs.shape[0] steps from rest (NetSpec timing): rates and masks.

        Constant-current input (an ``expand``ed view, stride 0 in time, or T = 1) is pushed through F once.
        """
        self._check_inputs(inputs)
        dtype = self.readout.weight.dtype
        steps, batch = inputs.shape[0], inputs.shape[1]
        leak = self.neuron.leak
        constant = constant_in_time(inputs)
        average_input = mean_input(inputs, leak, dtype)
        constant_current = self.edge_current(0, average_input, operators) if constant else None
        like = self.readout.weight
        voltages = [like.new_zeros((batch, *shape)) for shape in self.layer_shapes]
        spikes = [like.new_zeros((batch, *shape)) for shape in self.layer_shapes]
        traces = [like.new_zeros((batch, *shape)) for shape in self.layer_shapes]
        counts = [like.new_zeros((batch, *shape)) for shape in self.layer_shapes]
        for step in range(steps):
            currents = [like.new_zeros(()) for _ in self.layer_shapes]
            for number, edge in enumerate(self.edges):
                if edge.source < 0:
                    current = (constant_current if constant_current is not None
                               else self.edge_current(0, inputs[step].to(dtype), operators))
                else:
                    current = self.edge_current(number, spikes[edge.source], operators)
                currents[edge.target] = currents[edge.target] + current
            for index, current in enumerate(currents):
                spikes[index], voltages[index] = soft_reset_step(current, voltages[index], self.neuron)
                traces[index] = leak * traces[index] + spikes[index]
                counts[index] = counts[index] + spikes[index]
        normaliser = rate_normaliser(steps, leak)
        masks = tuple(((count > 0) & (count < steps)).to(dtype) for count in counts)
        return ForwardPhase(average_input, tuple(t / normaliser for t in traces), tuple(counts), masks)

    def forward(self, inputs: Tensor) -> Tensor:
        """Logits (B, classes) from the last layer's forward rates (no SPIDE gradient: see pipeline.spide)."""
        phase = self.forward_phase(inputs, self.batch_operators(inputs.shape[1], inputs))
        return self.readout(phase.rates[-1].flatten(1))


# ---------------------------------------------------------------------------------------------------- NetSpec
def _numpy(tensor: Tensor, dtype: np.dtype) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float64).numpy().astype(dtype)


def _synapse(operator: Operator, weight: Tensor | None, dtype: np.dtype) -> netspec.Dense | netspec.Conv:
    """A NetSpec synapse for an operator. NetSpec has no transposed conv: a ConvTranspose becomes the Dense matrix
    it applies (unrolled from the unit basis: C·H·W columns; fine at MNIST size, large for CIFAR)."""
    if isinstance(operator, Linear):
        return netspec.Dense(weight=_numpy(weight, dtype))  # type: ignore[arg-type]
    if isinstance(operator, Conv):
        return netspec.Conv(weight=_numpy(weight, dtype), input_shape=operator.input_shape,  # type: ignore[arg-type]
                            stride=(operator.stride,) * 2, padding=(operator.padding,) * 2)
    if isinstance(operator, AvgPool):
        conv = netspec.pool_conv("avg", operator.input_shape, (operator.kernel,) * 2)
        return netspec.Conv(weight=conv.weight.astype(dtype), input_shape=conv.input_shape, stride=conv.stride,
                            padding=conv.padding, groups=conv.groups)
    size = math.prod(operator.input_shape)
    with torch.no_grad():
        basis = torch.eye(size, dtype=torch.float64).reshape(size, *operator.input_shape)
        columns = operator.apply(basis, weight.detach().to("cpu", torch.float64), None)  # type: ignore[union-attr]
    return netspec.Dense(weight=columns.reshape(size, -1).T.numpy().astype(dtype))


def spide_netspec(network: SPIDENetwork, *, encoding: str, time_steps: int,
                  metadata: dict[str, str] | None = None) -> netspec.NetSpec:
    """Describe a trained SPIDENetwork's forward SNN as a NetSpec, as its eval mode computes it.

    Populations ``layer0``..``layer{N−1}`` (θ, u_rest, λ of the forward neurons; each edge's bias becomes its
    target population's bias); the input connection has delay 0, the others 1; the feedback weight is the
    Frobenius-capped one; dropout is off.
    """
    dtype = np.dtype(str(network.readout.weight.dtype).removeprefix("torch."))
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            operators = network.batch_operators(1)
    finally:
        network.train(was_training)
    names = [f"layer{index}" for index in range(len(network.layer_shapes))]
    populations = {}
    for index, shape in enumerate(network.layer_shapes):
        bias = torch.zeros(shape, dtype=torch.float64)
        for number, edge in enumerate(network.edges):
            if edge.target == index and operators.biases[number] is not None:
                channel = operators.biases[number].detach().to("cpu", torch.float64)  # whichever device trained it
                bias = bias + channel.reshape(-1, *([1] * (len(shape) - 1)))
        populations[names[index]] = netspec.SoftResetNeurons(
            bias=_numpy(bias.reshape(-1), dtype), threshold=float(network.neuron.threshold),
            reset_potential=float(network.neuron.reset_potential), voltage_decay=float(network.neuron.voltage_decay),
            shape=tuple(shape) if len(shape) == 3 else ())
    connections = []
    for number, edge in enumerate(network.edges):
        source = netspec.INPUT if edge.source < 0 else names[edge.source]
        synapse = _synapse(edge.operator, operators.weights[number], dtype)
        connections.append(netspec.Connection(source, names[edge.target], synapse, edge.delay))
    readout = netspec.Readout(source=names[-1], weight=_numpy(network.readout.weight, dtype),
                              bias=_numpy(network.readout.bias, dtype), rate_decay=float(network.neuron.voltage_decay))
    return netspec.NetSpec(input=netspec.Input(shape=network.input_shape, encoding=encoding),
                           populations=populations, connections=tuple(connections), readout=readout,
                           time_steps=time_steps, metadata=dict(metadata or {}))
