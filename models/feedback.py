"""Feedback spiking networks (FSNNs): IF/LIF soft-reset layers in a loop, simulated with NetSpec's timing.

Structure (IDE's single- and multi-layer FSNNs, spec §2.3): the input layer F (dense or conv, with bias and
BatchNorm) drives layer 0; in-loop layers 1..N−1 each read the layer before (dense or conv, with bias); the feedback
W (no bias, spectral norm ≤ a bound) closes the loop from layer N−1 back to layer 0; a linear readout reads layer
N−1's λ-weighted average rate. With one in-loop layer this is the single-layer FSNN (W: hidden → hidden).

Timing is NetSpec's (``models.netspec``), i.e. Lava's, for steps t = 1..T:

    I_0[t] = m_F ⊙ BN(F·x[t] + b) + m_W ⊙ W·s_{N−1}[t−1],     I_l[t] = m_l ⊙ (W_l·s_{l−1}[t−1] + b_l)

The input reaches layer 0 in the same step; every connection between populations delays one step. (The reference
code chains in-loop layers within a step; the equilibrium is the same, the transients differ.) m are dropout masks.

Equilibrium (spec §2.4): the rates a of layer N−1 satisfy a ≈ f(a), where, with D = θ − u_rest and σ = clamp(·, 0, 1),

    a^0 = σ((m_F ⊙ BN(F·x̄ + b) + m_W ⊙ W·a) / D),    a^l = σ(m_l ⊙ (W_l·a^{l−1} + b_l) / D),    f(a) = a^{N−1}

and x̄ is the input's λ-weighted time average (the image itself for constant-current input). This module
simulates and evaluates f (and, for dense loops, the products Jᵀβ with its Jacobian, written out for speed); the
implicit gradient itself lives in ``pipeline.implicit``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as functional
from torch import Tensor, nn

from lavaflow.models import netspec
from lavaflow.models.neurons import (
    SoftResetParams,
    SpikeFn,
    constant_in_time,
    heaviside,
    mean_input,
    rate_normaliser,
    soft_reset_step,
)

KINDS = ("dense", "conv")


@dataclass(frozen=True)
class FeedbackArchitecture:
    """The shape of a feedback SNN, without weights.

    Attributes:
        kind: "dense" (fully connected layers) or "conv" (convolutions; populations are (C, H, W)).
        input_shape: one time step of one sample, e.g. (1, 28, 28); dense layers flatten it.
        layer_widths: neurons (dense) or channels (conv) of each in-loop layer; one entry gives the single-layer FSNN.
        num_classes: readout outputs.
        kernel_size, stride, padding: the conv input layer F.
        loop_kernel_size: conv in-loop and feedback kernels (odd; stride 1 and "same" padding keep H × W).
    """

    kind: str
    input_shape: tuple[int, ...]
    layer_widths: tuple[int, ...]
    num_classes: int
    kernel_size: int = 5
    stride: int = 2
    padding: int = 2
    loop_kernel_size: int = 5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be positive, got {self.input_shape}")
        if not self.layer_widths or min(self.layer_widths) < 1:
            raise ValueError(f"layer_widths needs at least one positive width, got {self.layer_widths}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.kind == "conv":
            if len(self.input_shape) != 3:
                raise ValueError(f"a conv network needs a (C, H, W) input shape, got {self.input_shape}")
            if self.loop_kernel_size % 2 != 1:
                raise ValueError(f"loop_kernel_size must be odd to keep H × W, got {self.loop_kernel_size}")
            if min(self.layer_shapes[0]) < 1:
                raise ValueError(f"the input conv maps {self.input_shape} to an empty {self.layer_shapes[0]}")

    @property
    def layer_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of each in-loop population: (n,) for dense, (C, H', W') for conv."""
        if self.kind == "dense":
            return tuple((width,) for width in self.layer_widths)
        _, height, width = self.input_shape
        out_h = (height + 2 * self.padding - self.kernel_size) // self.stride + 1
        out_w = (width + 2 * self.padding - self.kernel_size) // self.stride + 1
        return tuple((channels, out_h, out_w) for channels in self.layer_widths)


def unit_row_uniform(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """U(−1, 1) weights with each output unit's (channel's) vector scaled to unit L2 norm (IDE's init, spec §2.5)."""
    weight = torch.rand(shape, generator=generator, device=generator.device) * 2 - 1
    return weight / weight.flatten(1).norm(dim=1).reshape(-1, *([1] * (len(shape) - 1)))


def _unit(vector: Tensor) -> Tensor:
    return vector / vector.norm().clamp_min(torch.finfo(vector.dtype).tiny)


class SpectralNormWeight(nn.Module):
    """A weight re-parameterised as W = clamp(g, −c, c) · V / σ_max(V), so that ‖W‖₂ ≤ c (spec §2.5), nearly.

    σ_max is estimated by power iteration on V reshaped to (out, rest) (for a conv kernel the norm of the reshaped
    kernel, not of the convolution operator); u and v persist as buffers and take one iteration per training
    forward. g starts at V's initial spectral norm, so W starts as V where that is already within the bound. The
    estimate uᵀVv is a lower bound of σ_max that lags V by an iteration, so ‖W‖₂ can exceed c a little while V
    moves fast: on Fashion-MNIST (IDE preset, lr 0.05) up to 1.07·c around epoch 30, 1.01·c at epoch 100; with
    θ = 2, W/θ stayed ≤ 0.54, well inside contraction.
    """

    def __init__(self, direction: Tensor, bound: float, generator: torch.Generator) -> None:
        super().__init__()
        if not bound > 0:
            raise ValueError(f"spectral_norm_bound must be positive, got {bound}")
        self.bound = float(bound)
        self.direction = nn.Parameter(direction)
        matrix = direction.detach().flatten(1)
        right = _unit(torch.randn(matrix.shape[1], generator=generator, device=generator.device))
        for _ in range(10):
            left = _unit(matrix @ right)
            right = _unit(matrix.T @ left)
        self.register_buffer("left", left)
        self.register_buffer("right", right)
        self.scale = nn.Parameter(torch.dot(left, matrix @ right))

    def forward(self) -> Tensor:
        """The effective weight; in training mode one power iteration first refreshes u and v."""
        matrix = self.direction.flatten(1)
        if self.training:
            with torch.no_grad():
                self.right.copy_(_unit(matrix.T @ self.left))
                self.left.copy_(_unit(matrix @ self.right))
        # Clones: the buffers change in place at the next forward, which must not corrupt a pending backward.
        sigma = torch.dot(self.left.clone(), matrix @ self.right.clone())
        return self.scale.clamp(-self.bound, self.bound) * self.direction / sigma


class _GeneratorHandle:
    """Holds the dropout generator so that copies and pickles of the network work (torch.Generator cannot)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __getstate__(self) -> dict[str, object]:
        return {"device": str(self.generator.device), "state": self.generator.get_state()}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.generator = torch.Generator(device=str(state["device"]))
        self.generator.set_state(state["state"])  # type: ignore[arg-type]


class LoopOperators(NamedTuple):
    """One mini-batch's operators, fixed for all T steps and for the backward solve.

    input_scale, input_shift: BatchNorm as a per-channel affine map of F·x + b (batch statistics of the
        time-averaged drive in training, running statistics in eval); None without BatchNorm.
    feedback_weight: the effective (spectral-normed) W.
    masks: variational dropout masks (input, feedback, in-loop layers 1..N−1), each (B, *layer shape) and
        scaled by 1/(1 − p); None when dropout is off (eval, or p = 0).
    """

    input_scale: Tensor | None
    input_shift: Tensor | None
    feedback_weight: Tensor
    masks: tuple[Tensor, ...] | None


class Simulation(NamedTuple):
    """Per in-loop layer, (B, *layer shape): λ-weighted average rates and spike counts over the T steps."""

    rates: tuple[Tensor, ...]
    spike_counts: tuple[Tensor, ...]


class Equilibrium(NamedTuple):
    """A simulated mini-batch: the last layer's measured rates, f at the same operators, and the simulation."""

    rates: Tensor
    rate_map: Callable[[Tensor], Tensor]
    simulation: Simulation
    # a ↦ (β ↦ Jᵀβ) with J = ∂f/∂a at a, written out; None where autograd through rate_map serves (conv loops)
    transposed_jacobian: Callable[[Tensor], Callable[[Tensor], Tensor]] | None = None


class FeedbackSNN(nn.Module):
    """A feedback SNN of soft-reset IF/LIF neurons (see the module docstring for the equations).

    Args:
        architecture: the layer structure.
        neuron: θ, u_rest and voltage decay 1 − λ shared by every layer (IDE: θ = 2, u_rest = 0).
        dropout: variational dropout rate p on every connection's output in training (one mask per mini-batch).
        spectral_norm_bound: bound c on the feedback weight's spectral norm (c = 1 = θ/2 keeps W/θ contractive).
        batch_norm: BatchNorm on the input layer's output.
        generator: draws the initial weights and, at every training forward, the dropout masks.
        batch_norm_momentum: weight of each training batch in BatchNorm's running statistics (torch's 0.1 by
            default; evaluation uses the running statistics, so a larger value makes them lag the weights less).
    """

    def __init__(self, architecture: FeedbackArchitecture, *, neuron: SoftResetParams, dropout: float,
                 spectral_norm_bound: float, batch_norm: bool, generator: torch.Generator,
                 batch_norm_momentum: float = 0.1) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if neuron.subtraction <= 0:
            raise ValueError(f"threshold − reset_potential must be positive, got {neuron.subtraction}")
        if not 0 < batch_norm_momentum <= 1:
            raise ValueError(f"batch_norm_momentum must lie in (0, 1], got {batch_norm_momentum}")
        self.architecture = architecture
        self.neuron = neuron
        self.dropout = float(dropout)
        self._generator = _GeneratorHandle(generator)
        widths, shapes = architecture.layer_widths, architecture.layer_shapes
        conv = architecture.kind == "conv"
        in_channels = architecture.input_shape[0]
        loop_kernel = (architecture.loop_kernel_size,) * 2 if conv else ()
        input_kernel = (in_channels, architecture.kernel_size, architecture.kernel_size)
        input_size = (math.prod(architecture.input_shape),)
        self.input_weight = nn.Parameter(unit_row_uniform((widths[0], *(input_kernel if conv else input_size)),
                                                          generator))
        self.input_bias = nn.Parameter(torch.zeros(widths[0]))
        self.input_norm = ((nn.BatchNorm2d if conv else nn.BatchNorm1d)(widths[0], momentum=batch_norm_momentum)
                           if batch_norm else None)
        self.feedback = SpectralNormWeight(unit_row_uniform((widths[0], widths[-1], *loop_kernel), generator),
                                           spectral_norm_bound, generator)
        self.layer_weights = nn.ParameterList(
            [nn.Parameter(unit_row_uniform((width, previous, *loop_kernel), generator))
             for previous, width in itertools.pairwise(widths)])
        self.layer_biases = nn.ParameterList([nn.Parameter(torch.zeros(width)) for width in widths[1:]])
        readout_in = math.prod(shapes[-1])
        bound = 1 / math.sqrt(readout_in)  # torch.nn.Linear's default init, drawn from our generator
        self.readout = nn.utils.skip_init(nn.Linear, readout_in, architecture.num_classes)
        with torch.no_grad():
            uniform = functools.partial(torch.rand, generator=generator, device=generator.device)
            self.readout.weight.copy_(uniform(self.readout.weight.shape) * 2 * bound - bound)
            self.readout.bias.copy_(uniform(self.readout.bias.shape) * 2 * bound - bound)

    # ------------------------------------------------------------------------------------------------ currents
    def _conv(self, spikes: Tensor, weight: Tensor) -> Tensor:
        return functional.conv2d(spikes, weight, padding=self.architecture.loop_kernel_size // 2)

    def _channel(self, vector: Tensor) -> Tensor:
        """A per-channel vector shaped to broadcast over a population (C, 1, 1) or (n,)."""
        return vector.reshape(-1, 1, 1) if self.architecture.kind == "conv" else vector

    def input_drive(self, frame: Tensor) -> Tensor:
        """F·x + b for one step of the input (B, *input_shape), before BatchNorm and dropout."""
        if self.architecture.kind == "conv":
            arch = self.architecture
            return functional.conv2d(frame, self.input_weight, self.input_bias, stride=arch.stride,
                                     padding=arch.padding)
        return functional.linear(frame.flatten(1), self.input_weight, self.input_bias)

    def input_current(self, drive: Tensor, operators: LoopOperators) -> Tensor:
        """m_F ⊙ BN(drive): the current the input delivers to layer 0."""
        if operators.input_scale is not None:
            drive = drive * self._channel(operators.input_scale) + self._channel(operators.input_shift)
        return drive if operators.masks is None else drive * operators.masks[0]

    def feedback_current(self, last: Tensor, operators: LoopOperators) -> Tensor:
        """m_W ⊙ W·s for the last layer's spikes (or rates) s."""
        weight = operators.feedback_weight
        current = self._conv(last, weight) if self.architecture.kind == "conv" else functional.linear(last, weight)
        return current if operators.masks is None else current * operators.masks[1]

    def layer_current(self, index: int, previous: Tensor, operators: LoopOperators) -> Tensor:
        """m_l ⊙ (W_l·s + b_l) into in-loop layer ``index`` ≥ 1 from the layer before."""
        weight, bias = self.layer_weights[index - 1], self.layer_biases[index - 1]
        if self.architecture.kind == "conv":
            current = self._conv(previous, weight) + self._channel(bias)
        else:
            current = functional.linear(previous, weight, bias)
        return current if operators.masks is None else current * operators.masks[index + 1]

    # ------------------------------------------------------------------------------------------ batch state
    def _normalisation(self, drive: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """BatchNorm's per-channel scale and shift; in training, updates the running statistics once."""
        norm = self.input_norm
        if norm is None:
            return None, None
        if self.training:
            dims = [0, *range(2, drive.dim())]
            mean, variance = drive.mean(dims), drive.var(dims, unbiased=False)
            count = drive.numel() // drive.shape[1]
            with torch.no_grad():
                norm.running_mean.lerp_(mean.detach(), norm.momentum)
                norm.running_var.lerp_(variance.detach() * count / max(count - 1, 1), norm.momentum)
                norm.num_batches_tracked += 1
        else:
            mean, variance = norm.running_mean, norm.running_var
        scale = norm.weight * torch.rsqrt(variance + norm.eps)
        return scale, norm.bias - mean * scale

    def reseed_random_streams(self, seed: int) -> None:
        """Restart the dropout masks' generator from ``seed``.

        The training loop calls this at every epoch with a seed derived from (seed, epoch, worker), so the masks
        of an epoch do not depend on how many epochs this process ran before: a resumed run draws the same masks
        as an uninterrupted one, and DDP workers draw different masks for their different samples.
        """
        self._generator.generator.manual_seed(seed)

    def _masks(self, batch_size: int, like: Tensor) -> tuple[Tensor, ...] | None:
        if not self.training or self.dropout == 0:
            return None
        shapes = self.architecture.layer_shapes
        generator = self._generator.generator
        keep = 1 - self.dropout
        masks = []
        for shape in (shapes[0], shapes[0], *shapes[1:]):
            draw = torch.rand((batch_size, *shape), generator=generator, device=generator.device) < keep
            masks.append(draw.to(like) / keep)
        return tuple(masks)

    def operators(self, drive: Tensor) -> LoopOperators:
        """Fix this mini-batch's operators from the time-averaged drive (B, *layer-0 shape)."""
        scale, shift = self._normalisation(drive)
        return LoopOperators(scale, shift, self.feedback(), self._masks(drive.shape[0], drive))

    # ------------------------------------------------------------------------------------------ dynamics
    def _check_inputs(self, inputs: Tensor) -> None:
        expected = self.architecture.input_shape
        if inputs.dim() != len(expected) + 2 or tuple(inputs.shape[2:]) != expected:
            raise ValueError(f"inputs must be time-first (T, B, *{expected}), got shape {tuple(inputs.shape)}")

    def simulate(self, inputs: Tensor, operators: LoopOperators, constant_current: Tensor | None = None,
                 spike_fn: SpikeFn = heaviside) -> Simulation:
        """Run the SNN for T = inputs.shape[0] steps from rest (NetSpec timing; see the module docstring).

        Args:
            inputs: (T, B, *input_shape) input, one frame per step.
            operators: this mini-batch's weights, normalisation and masks.
            constant_current: layer 0's input current when the input is constant (skips F at every step).
            spike_fn: Heaviside for the SNN; a surrogate-gradient function to back-propagate through time.
        """
        shapes = self.architecture.layer_shapes
        batch = inputs.shape[1]
        like = operators.feedback_weight
        voltages = [like.new_zeros((batch, *shape)) for shape in shapes]
        spikes = [like.new_zeros((batch, *shape)) for shape in shapes]
        traces = [like.new_zeros((batch, *shape)) for shape in shapes]
        counts = [like.new_zeros((batch, *shape)) for shape in shapes]
        leak = self.neuron.leak
        for step in range(inputs.shape[0]):
            if constant_current is None:
                input_current = self.input_current(self.input_drive(inputs[step].to(like.dtype)), operators)
            else:
                input_current = constant_current
            currents = [input_current + self.feedback_current(spikes[-1], operators)]
            currents += [self.layer_current(index, spikes[index - 1], operators) for index in range(1, len(shapes))]
            for index, current in enumerate(currents):
                spikes[index], voltages[index] = soft_reset_step(current, voltages[index], self.neuron, spike_fn)
                traces[index] = leak * traces[index] + spikes[index]  # r ← λ·r + s
                counts[index] = counts[index] + spikes[index]
        normaliser = rate_normaliser(inputs.shape[0], leak)
        return Simulation(tuple(trace / normaliser for trace in traces), tuple(counts))

    def _loop_inputs(self, operators: LoopOperators, mean_input_current: Tensor, rates: Tensor) -> list[Tensor]:
        """z of every layer in one pass round the loop from the last layer's ``rates``; layer l's rates are
        σ(z_l) = clamp(z_l, 0, 1) (module docstring). f and its written-out Jacobian share this pass."""
        subtraction = self.neuron.subtraction
        inputs = [(mean_input_current + self.feedback_current(rates, operators)) / subtraction]
        for index in range(1, len(self.architecture.layer_widths)):
            inputs.append(self.layer_current(index, torch.clamp(inputs[-1], 0, 1), operators) / subtraction)
        return inputs

    def rate_map(self, operators: LoopOperators, mean_input_current: Tensor, rates: Tensor) -> Tensor:
        """f(a): the last layer's rates after one pass round the loop of clamp maps (module docstring)."""
        return torch.clamp(self._loop_inputs(operators, mean_input_current, rates)[-1], 0, 1)

    @torch.no_grad()
    def transposed_jacobian(self, operators: LoopOperators, mean_input_current: Tensor,
                            rates: Tensor) -> Callable[[Tensor], Tensor]:
        """β ↦ Jᵀβ with J = ∂f/∂a at ``rates``, for dense loops: one product with each weight per call.

        IDE's backward solve calls it 5-8 times per mini-batch. Autograd through ``rate_map`` gives the same
        numbers (bit for bit when D is a power of two, as IDE's θ = 2) at ~3× the cost, because clamp's backward
        re-tests 0 ≤ z ≤ 1 at every call; here each layer's factor 1[0 ≤ z ≤ 1]·m/D is formed once.
        """
        if self.architecture.kind == "conv":
            raise ValueError("transposed_jacobian is written out for dense loops; use autograd for conv")
        subtraction, masks = self.neuron.subtraction, operators.masks

        def scale(index: int) -> Tensor | float:  # m/D; layer l's current carries mask l + 1 (the feedback's: 1)
            return 1 / subtraction if masks is None else masks[index + 1] / subtraction

        factors = [((z >= 0) & (z <= 1)).to(z.dtype) * scale(index)
                   for index, z in enumerate(self._loop_inputs(operators, mean_input_current, rates))]
        weights = [operators.feedback_weight.detach(), *(weight.detach() for weight in self.layer_weights)]

        def product(beta: Tensor) -> Tensor:
            for index in reversed(range(len(factors))):  # linear(x, W)'s vector-Jacobian product is δ·W
                beta = (beta * factors[index]) @ weights[index]
            return beta

        return product

    def equilibrium(self, inputs: Tensor) -> Equilibrium:
        """Simulate a mini-batch without a graph and return its rates with the fixed-point map f.

        f shares the simulation's weights, dropout masks and BatchNorm statistics, and carries a graph into the
        parameters. Constant-current input (an ``expand``ed view, stride 0 in time) is pushed through F once.
        Integer spike or event inputs are converted to the parameters' dtype (exact for counts below 2^24).
        """
        self._check_inputs(inputs)
        dtype = self.input_weight.dtype
        constant = constant_in_time(inputs)
        drive = self.input_drive(mean_input(inputs, self.neuron.leak, dtype))
        operators = self.operators(drive)
        mean_input_current = self.input_current(drive, operators)
        with torch.no_grad():
            simulation = self.simulate(inputs, operators, mean_input_current if constant else None)
        rate_map = functools.partial(self.rate_map, operators, mean_input_current)
        transposed = (None if self.architecture.kind == "conv"
                      else functools.partial(self.transposed_jacobian, operators, mean_input_current))
        return Equilibrium(simulation.rates[-1], rate_map, simulation, transposed)

    def forward(self, inputs: Tensor) -> Tensor:
        """Logits (B, classes) read from the simulated rates; no gradient reaches the loop (see pipeline.ide)."""
        return self.readout(self.equilibrium(inputs).rates.flatten(1))


# ---------------------------------------------------------------------------------------------------- NetSpec
def _numpy(tensor: Tensor, dtype: np.dtype) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float64).numpy().astype(dtype)


def feedback_netspec(network: FeedbackSNN, *, encoding: str, time_steps: int,
                     metadata: dict[str, str] | None = None) -> netspec.NetSpec:
    """Describe a trained FeedbackSNN as a NetSpec, as its eval mode computes it.

    Populations ``layer0``..``layer{N−1}``; the input connection (delay 0) carries F with BatchNorm's running
    statistics folded in, F' = s·F and b' = s·(b − μ) + β with s = γ/√(σ² + ε); in-loop and feedback connections
    delay one step; the feedback weight is the effective spectral-normed one; dropout is off. Arrays take the
    parameters' float dtype (folding computed in float64).
    """
    arch = network.architecture
    dtype = np.dtype(str(network.input_weight.dtype).removeprefix("torch."))
    with torch.no_grad():
        was_training = network.training
        network.eval()
        try:
            feedback = network.feedback()
        finally:
            network.train(was_training)
        weight = network.input_weight.to(torch.float64)
        bias = network.input_bias.to(torch.float64)
        if network.input_norm is not None:
            norm = network.input_norm
            scale = norm.weight.to(torch.float64) / torch.sqrt(norm.running_var.to(torch.float64) + norm.eps)
            weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
            bias = scale * (bias - norm.running_mean.to(torch.float64)) + norm.bias.to(torch.float64)
    shapes = arch.layer_shapes
    names = [f"layer{index}" for index in range(len(shapes))]

    def population(channel_bias: Tensor, shape: tuple[int, ...]) -> netspec.SoftResetNeurons:
        per_neuron = channel_bias.reshape(-1, *([1] * (len(shape) - 1))).expand(shape).reshape(-1)
        return netspec.SoftResetNeurons(bias=_numpy(per_neuron, dtype), threshold=float(network.neuron.threshold),
                                        reset_potential=float(network.neuron.reset_potential),
                                        voltage_decay=float(network.neuron.voltage_decay),
                                        shape=shape if arch.kind == "conv" else ())

    def synapse(kernel: Tensor, source_shape: tuple[int, ...], stride: int, padding: int) -> netspec.Synapse:
        if arch.kind == "dense":
            return netspec.Dense(weight=_numpy(kernel.flatten(1), dtype))
        return netspec.Conv(weight=_numpy(kernel, dtype), input_shape=tuple(source_shape),  # type: ignore[arg-type]
                            stride=(stride, stride), padding=(padding, padding))

    loop_padding = arch.loop_kernel_size // 2
    populations = {names[0]: population(bias, shapes[0])}
    connections = [
        netspec.Connection(netspec.INPUT, names[0], synapse(weight, arch.input_shape, arch.stride, arch.padding), 0),
        netspec.Connection(names[-1], names[0], synapse(feedback, shapes[-1], 1, loop_padding), 1),
    ]
    for index in range(1, len(shapes)):
        populations[names[index]] = population(network.layer_biases[index - 1].detach(), shapes[index])
        kernel = network.layer_weights[index - 1].detach()
        connections.append(netspec.Connection(names[index - 1], names[index],
                                              synapse(kernel, shapes[index - 1], 1, loop_padding), 1))
    readout = netspec.Readout(source=names[-1], weight=_numpy(network.readout.weight, dtype),
                              bias=_numpy(network.readout.bias, dtype), rate_decay=float(network.neuron.voltage_decay))
    return netspec.NetSpec(input=netspec.Input(shape=tuple(arch.input_shape), encoding=encoding),
                           populations=populations, connections=tuple(connections), readout=readout,
                           time_steps=time_steps, metadata=dict(metadata or {}))
