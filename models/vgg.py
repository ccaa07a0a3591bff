"""VGG-style twins for hybrid conversion (Rathi et al., ICLR 2020): one set of weights, an ANN and an SNN view.

The ANN (``VGGTwins.ann``) obeys the constraints that make conversion work: no biases, no BatchNorm, ReLU, average
pooling (2×2, stride 2), dropout after every convolution not directly followed by a pool and after every hidden
linear layer. The SNN (``VGGTwins.forward``) replaces each ReLU by a population of spiking neurons with one
threshold per layer, keeps the average pools (applied to spikes), and integrates the output layer's current in a
non-spiking potential: logits = gain · v_out[T], gain = Π_l θ_l / T (``readout_gain``), so that the logits approach
the ANN's as the rates approach its activations (the "potential" readout of models.netspec).

Neurons (``SNNNeuron``): the paper's soft reset (models.kinds.soft_reset: v ← λv + I; s = [v ≥ θ]; v −= θ·s), or
Lava's CUBA LIF with reset to zero (models.kinds.cuba, the deploy-exact option: what lava-dl netx runs unchanged).
Both steps are the kinds' own torch steps, so the torch SNN and models.reference simulate the same arithmetic.

Time semantics are the NetSpec's: layer 1 integrates the input of step t in step t; every later layer (and the
output integrator) sees its source's spikes of step t − 1 (Lava's Dense delay). Rathi's code decides a spike from
the membrane of the previous step instead, which adds the same one step per layer; with λ = 1 the two agree.

Gradients (STDB, spec B.4): the spike's forward value is the Heaviside step; its backward is
ds/dv = α·exp(−β·Δt)/θ, Δt the steps since the neuron's last spike (``STDBGradient``). The reset is detached
(Rathi's reset is built from a boolean comparison): the kinds' steps are called with their exact Heaviside, whose
comparison carries no gradient, and the surrogate is attached to the returned spikes afterwards.

Tensors are time-first: input (T, B, C, H, W); weights (C_out, C_in, k, k) and (n_out, n_in) as in torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as functional
from torch import Tensor, nn

from lavaflow.models.errors import ConfigError
from lavaflow.models.kinds.cuba import CubaNeurons, CubaParams, CubaState, cuba_step
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.soft_reset import SoftResetNeurons, SoftResetParams, soft_reset_step
from lavaflow.models.netspec import INPUT, Connection, Conv, Dense, Input, NetSpec, Readout

POOL = "A"  # a 2×2 average pool, stride 2, in a features list (Rathi's cfg notation)
POOL_SIZE = 2
NEURONS = ("soft_reset", "cuba")
# "stdb": Rathi's α·exp(−β·Δt), made for fine-tuning a converted net whose neurons already fire; "voltage": the usual
# BPTT surrogate α·max(0, 1 − |v − θ|/θ)/θ, which reaches silent neurons too (training from scratch).
SURROGATES = ("stdb", "voltage")
# Δt of a neuron that has not fired yet in this sample, at the sample's first step: Rathi's "last spike" starts
# 1000 steps before the step before the first one, so the surrogate of a silent neuron is α·exp(−β·(t + 999)),
# about 1.4e-5 at the defaults (α = 0.3, β = 0.01): effectively no gradient until the neuron fires.
SILENT_STEPS = 999.0


# ------------------------------------------------------------------------------------------------ architecture
@dataclass(frozen=True)
class VGGArchitecture:
    """Conv channels and pools (``features``, e.g. (64, "A", 128, 128, "A")), hidden linear widths (``classifier``).

    Every convolution is k×k, stride 1, padding (k − 1)/2 ("same"), without bias; "A" is a 2×2 average pool.
    """

    features: tuple[int | str, ...]
    classifier: tuple[int, ...] = ()
    kernel_size: int = 3
    conv_dropout: float = 0.2
    classifier_dropout: float = 0.5

    def __post_init__(self) -> None:
        if not self.features or self.features[0] == POOL:
            raise ConfigError(f"model.features must start with a convolution (channels), got {list(self.features)}")
        for previous, item in itertools.pairwise(self.features):
            if item == POOL and previous == POOL:
                raise ConfigError(f"model.features: two pools in a row ({list(self.features)}); pool once")
        for item in self.features:
            if item != POOL and not (isinstance(item, int) and not isinstance(item, bool) and item >= 1):
                raise ConfigError(f"model.features holds conv channels (integers ≥ 1) and {POOL!r} for a 2×2 average "
                                  f"pool, got {item!r}")
        if any(not isinstance(w, int) or w < 1 for w in self.classifier):
            raise ConfigError(f"model.classifier holds hidden layer widths ≥ 1, got {list(self.classifier)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size must be odd (same padding), got {self.kernel_size}")
        for name in ("conv_dropout", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must lie in [0, 1), got {getattr(self, name)}")


# Rathi's VGG5 for MNIST (conv 64, pool, conv 128, conv 128, pool; the 4096-4096 classifier cut to 256) and a
# VGG9-like net whose pools stop at 7×7 (28 → 14 → 7: every pool halves an even size, see ``check_geometry``).
VGG5_28 = VGGArchitecture((64, POOL, 128, 128, POOL), (256,))
VGG9_28 = VGGArchitecture((64, 64, POOL, 128, 128, POOL, 256, 256, 256), (256,))
SMALL_VGG_28 = VGGArchitecture((32, POOL, 64, POOL), (128,))  # the bench's small VGG for Fashion-MNIST on a CPU
DIGITS_VGG = VGGArchitecture((16, POOL, 32), (64,), conv_dropout=0.1, classifier_dropout=0.2)  # 8×8 digits


# ------------------------------------------------------------------------------------------------ the surrogate
class STDBGradient(torch.autograd.Function):
    """Identity on the spikes forward; backward sends grad · α·exp(−β·Δt)/θ to the pre-reset voltage (spec B.4).

    ``since`` holds Δt per neuron (steps since the last spike before this step, ``SILENT_STEPS + t`` if none);
    the surrogate ignores the voltage's value, only its gradient path is used. 1/θ is the chain rule through
    Rathi's z = v/θ − 1 (thresholds are not trained).
    """

    @staticmethod
    def forward(ctx: Any, spikes: Tensor, voltage: Tensor, since: Tensor, alpha: float, beta: float,
                threshold: float) -> Tensor:
        ctx.save_for_backward(since)
        ctx.scale, ctx.beta = alpha / threshold, beta
        return spikes.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (since,) = ctx.saved_tensors
        return None, grad * ctx.scale * torch.exp(-ctx.beta * since), None, None, None, None


class VoltageGradient(torch.autograd.Function):
    """Identity on the spikes forward; backward sends grad · α·max(0, 1 − |v − θ|/θ)/θ to the pre-reset voltage v:
    the triangular surrogate of surrogate-gradient BPTT, nonzero near threshold whether or not the neuron fired."""

    @staticmethod
    def forward(ctx: Any, spikes: Tensor, voltage: Tensor, alpha: float, threshold: float) -> Tensor:
        ctx.save_for_backward(voltage.detach())
        ctx.alpha, ctx.threshold = alpha, threshold
        return spikes.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (voltage,) = ctx.saved_tensors
        return None, grad * voltage_surrogate(voltage, ctx.alpha, ctx.threshold), None, None


def voltage_surrogate(voltage: Tensor, alpha: float, threshold: float) -> Tensor:
    """ds/dv = α·max(0, 1 − |v − θ|/θ)/θ: the derivative VoltageGradient uses."""
    return alpha * torch.clamp(1.0 - (voltage - threshold).abs() / threshold, min=0.0) / threshold


def stdb_surrogate(since: Tensor, alpha: float, beta: float, threshold: float) -> Tensor:
    """ds/dv = α·exp(−β·Δt)/θ: the derivative STDBGradient uses, for inspection and tests."""
    return alpha * torch.exp(-beta * since) / threshold


def next_since(since: Tensor, spikes: Tensor) -> Tensor:
    """Δt for the next step: 1 where the neuron fired now, one more step otherwise (Rathi's last-spike update)."""
    return torch.where(spikes > 0, torch.ones_like(since), since + 1.0)


class SNNNeuron(NamedTuple):
    """The spiking neuron of every hidden layer: its kind, leak λ and surrogate (SURROGATES; α, β)."""

    kind: str = "soft_reset"  # "soft_reset" (the paper's) or "cuba" (Lava's LIF, reset to zero: deploy-exact)
    leak: float = 1.0  # λ, the voltage kept per step (1: IF)
    alpha: float = 0.3
    beta: float = 0.01
    surrogate: str = "stdb"


class SNNResult(NamedTuple):
    """One SNN pass: logits (B, classes) and, when recorded, each spiking layer's (B, n) spike counts."""

    logits: Tensor
    counts: list[Tensor]


class LayerState:
    """One spiking layer's state during a sample: voltage (and CUBA current), Δt, its dropout mask."""

    def __init__(self, shape: tuple[int, ...], like: Tensor, kind: str, mask: Tensor | None = None) -> None:
        zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.voltage: Tensor = zeros
        self.cuba = CubaState(zeros, zeros) if kind == "cuba" else None
        self.since = torch.full(shape, SILENT_STEPS, dtype=like.dtype, device=like.device)
        self.mask = mask


def spiking_step(state: LayerState, current: Tensor, threshold: float, voltage_decay: float,
                 neuron: SNNNeuron) -> Tensor:
    """One step of one layer: the kind's own step (exact Heaviside, so the reset carries no gradient), then the
    STDB surrogate on the spikes and the Δt update. Updates ``state`` in place; returns the spikes."""
    if neuron.kind == "cuba":
        previous = state.voltage
        spikes, state.cuba = cuba_step(current, state.cuba, CubaParams(threshold, 1.0, voltage_decay))
        before_reset = (1.0 - voltage_decay) * previous + state.cuba.current  # the step's v before the reset
        state.voltage = state.cuba.voltage
    elif neuron.kind == "soft_reset":
        spikes, state.voltage = soft_reset_step(current, state.voltage, SoftResetParams(threshold, 0.0, voltage_decay))
        before_reset = state.voltage + spikes * threshold  # same gradient as λv + I: the spikes carry none
    else:
        raise ConfigError(f"neuron kind {neuron.kind!r} is not one of {NEURONS}")
    if torch.is_grad_enabled() and before_reset.requires_grad:
        if neuron.surrogate == "voltage":
            spikes = VoltageGradient.apply(spikes, before_reset, neuron.alpha, threshold)
        else:
            spikes = STDBGradient.apply(spikes, before_reset, state.since, neuron.alpha, neuron.beta, threshold)
    state.since = next_since(state.since, spikes.detach())
    return spikes


# ------------------------------------------------------------------------------------------------ the twins
class VGGTwins(nn.Module):
    """The ANN and the SNN of one VGG, sharing every weight; the SNN's thresholds are a buffer (not trained).

    ``forward`` runs the SNN on time-first input (the shared training loop's contract); ``ann`` runs the ANN on
    (B, C, H, W) images.
    """

    def __init__(self, architecture: VGGArchitecture, input_shape: tuple[int, ...], num_classes: int,
                 neuron: SNNNeuron, generator: torch.Generator) -> None:
        super().__init__()
        if neuron.kind not in NEURONS:
            raise ConfigError(f"model.neuron must be one of {NEURONS}, got {neuron.kind!r}")
        if neuron.surrogate not in SURROGATES:
            raise ConfigError(f"model.surrogate must be one of {SURROGATES}, got {neuron.surrogate!r}")
        if not 0.0 < neuron.leak <= 1.0:
            raise ConfigError(f"model.leak (λ, the voltage kept per step) must lie in (0, 1], got {neuron.leak}")
        self.architecture, self.neuron = architecture, neuron
        self.input_shape = tuple(int(n) for n in input_shape)
        self.conv_shapes = check_geometry(architecture, self.input_shape)  # input (C, H, W) of every conv
        self.convs = nn.ModuleList()
        self.pooled: list[bool] = []  # a pool follows conv i
        channels = self.input_shape[0]
        features = list(architecture.features)
        for index, item in enumerate(features):
            if item == POOL:
                continue
            padding = (architecture.kernel_size - 1) // 2
            self.convs.append(nn.Conv2d(channels, int(item), architecture.kernel_size, padding=padding, bias=False))
            self.pooled.append(index + 1 < len(features) and features[index + 1] == POOL)
            channels = int(item)
        _, last_h, last_w = self.conv_shapes[-1]  # same padding: the last conv's output is last_h × last_w
        scale = POOL_SIZE if self.pooled[-1] else 1
        widths = [channels * (last_h // scale) * (last_w // scale), *architecture.classifier]
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(widths))
        self.output = nn.Linear(widths[-1], num_classes, bias=False)
        self.register_buffer("thresholds", torch.ones(len(self.convs) + len(self.hidden)))
        self._initialise(generator)

    def _initialise(self, generator: torch.Generator) -> None:
        """Rathi's init: conv N(0, 2/(k²·C_out)) (He, fan-out), linear N(0, 0.01²); seeded, no global RNG."""
        with torch.no_grad():
            for conv in self.convs:
                k = conv.kernel_size[0]
                std = float(np.sqrt(2.0 / (k * k * conv.out_channels)))
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)
            for linear in (*self.hidden, self.output):
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.01)

    def readout_gain(self, time_steps: int) -> float:
        """Π_l θ_l / T: the logits (gain × the output potential) then approach the ANN's logits.

        Why the product: a ReLU layer is positively homogeneous, and an IF layer's rate is its mean input over θ, so
        the rates of layer l approach a_l / (θ_1·…·θ_l) (a_l the ANN's activations), and the output potential
        after T steps approaches T·W_out·a_L / Π θ. (Rathi reads the potential itself; only the softmax's
        temperature differs, and this one keeps the ANN's.)
        """
        return float(np.prod([float(v) for v in self.thresholds.tolist()])) / time_steps

    @property
    def num_spiking(self) -> int:
        return len(self.convs) + len(self.hidden)

    def layer_names(self) -> list[str]:
        """The spiking populations' names, in order (the NetSpec's too): conv1.., fc1..; the output is "output"."""
        return [f"conv{i + 1}" for i in range(len(self.convs))] + [f"fc{i + 1}" for i in range(len(self.hidden))]

    # -------------------------------------------------------------------------------------------- ANN
    def ann(self, images: Tensor) -> Tensor:
        """ANN logits (B, classes) of images (B, C, H, W): conv-ReLU[-dropout | -avgpool] …, linear-ReLU-dropout …"""
        x = images
        for conv, pooled in zip(self.convs, self.pooled, strict=True):
            x = functional.relu(conv(x))
            if pooled:
                x = functional.avg_pool2d(x, POOL_SIZE)
            else:
                x = functional.dropout(x, self.architecture.conv_dropout, self.training)
        x = x.flatten(1)
        for linear in self.hidden:
            x = functional.dropout(functional.relu(linear(x)), self.architecture.classifier_dropout, self.training)
        return self.output(x)

    def ann_macs(self) -> int:
        """Multiply-accumulates of one ANN pass (convolutions and linear layers; pools and ReLUs not counted)."""
        total = 0
        for conv, (_, height, width) in zip(self.convs, self.conv_shapes, strict=True):
            total += conv.weight.numel() * height * width  # stride 1, same padding: H·W outputs per channel
        return total + sum(linear.weight.numel() for linear in (*self.hidden, self.output))

    # -------------------------------------------------------------------------------------------- SNN
    def forward(self, inputs: Tensor) -> Tensor:
        """SNN logits (B, classes) of time-first input (T, B, C, H, W)."""
        return self.run(inputs).logits

    def run(self, inputs: Tensor, *, record: bool = False, neuron: SNNNeuron | None = None) -> SNNResult:
        """The SNN over all T steps: logits = gain·v_out[T] (``readout_gain``); per-layer counts when ``record``."""
        return self._simulate(inputs, neuron or self.neuron, record=record)

    def layer_inputs(self, inputs: Tensor, layer: int, observe: Callable[[Tensor], None], *,
                     neuron: SNNNeuron | None = None) -> None:
        """Call ``observe`` with spiking layer ``layer``'s input current (B, n) at every step (threshold balancing);
        the layers after it are not simulated."""
        self._simulate(inputs, neuron or self.neuron, record=False, until=layer, observe=observe)

    def _simulate(self, inputs: Tensor, neuron: SNNNeuron, *, record: bool, until: int | None = None,
                  observe: Callable[[Tensor], None] | None = None) -> SNNResult:
        if inputs.dim() != 5 or tuple(inputs.shape[2:]) != self.input_shape:
            raise ConfigError(f"the SNN expects time-first input (T, B, {self.input_shape}), got {tuple(inputs.shape)}")
        time_steps, batch = inputs.shape[:2]
        like = {"dtype": inputs.dtype, "device": inputs.device}
        thresholds = [float(v) for v in self.thresholds.tolist()]
        layers = self._layer_states(batch, inputs, neuron.kind)
        sent: list[Tensor | None] = [None] * self.num_spiking  # what each layer sent at the previous step
        counts = [torch.zeros(batch, s.voltage[0].numel(), **like) for s in layers] if record else []
        potential = torch.zeros(batch, self.output.out_features, **like)
        for t in range(time_steps):
            now: list[Tensor | None] = list(sent)
            for index, state in enumerate(layers):
                source = inputs[t] if index == 0 else sent[index - 1]  # delay 0 from the input, 1 between layers
                current = torch.zeros_like(state.voltage) if source is None else self._synapse(index, source)
                if index == until:
                    observe(current.flatten(1))
                    break
                spikes = spiking_step(state, current, thresholds[index], 1.0 - neuron.leak, neuron)
                if record:
                    counts[index] += spikes.detach().flatten(1)
                now[index] = self._send(index, spikes, state.mask)
            if until is None and sent[-1] is not None:
                potential = potential + self.output(sent[-1].flatten(1))
            sent = now
        return SNNResult(self.readout_gain(time_steps) * potential, counts)

    def _layer_states(self, batch: int, like: Tensor, kind: str) -> list[LayerState]:
        """Zero state for every spiking layer, and one dropout mask per sample and layer held for all T steps."""
        states = []
        for index in range(self.num_spiking):
            if index < len(self.convs):
                _, height, width = self.conv_shapes[index]
                shape: tuple[int, ...] = (batch, self.convs[index].out_channels, height, width)
                rate = 0.0 if self.pooled[index] else self.architecture.conv_dropout
                sent_shape = shape
            else:
                shape = (batch, self.hidden[index - len(self.convs)].out_features)
                rate, sent_shape = self.architecture.classifier_dropout, shape
            mask = None
            if self.training and rate > 0:
                keep = torch.full(sent_shape, 1.0 - rate, dtype=like.dtype, device=like.device)
                mask = torch.bernoulli(keep) / (1.0 - rate)
            states.append(LayerState(shape, like, kind, mask))
        return states

    def _synapse(self, index: int, source: Tensor) -> Tensor:
        """Layer ``index``'s input current from what its source sent (the image or pooled, masked spikes)."""
        if index < len(self.convs):
            return self.convs[index](source)
        linear = self.hidden[index - len(self.convs)]
        return linear(source.flatten(1))

    def _send(self, index: int, spikes: Tensor, mask: Tensor | None) -> Tensor:
        """What layer ``index`` passes on: its spikes, average-pooled if a pool follows, times its dropout mask."""
        if index < len(self.convs) and self.pooled[index]:
            return functional.avg_pool2d(spikes, POOL_SIZE)
        return spikes if mask is None else spikes * mask

    # -------------------------------------------------------------------------------------------- NetSpec
    def to_netspec(self, encoding: str, time_steps: int) -> NetSpec:
        """The SNN as a NetSpec: a population per spiking layer, pools folded into the next synapse, the output a
        non-spiking integrator (du = 1, dv = 0) read as a potential with ``readout_gain``.

        A pool followed by a k×k conv becomes one (2k)×(2k) conv of stride 2 (``fold_pool_into_conv``); a pool
        followed by the classifier's first linear layer becomes a dense layer on the un-pooled spikes
        (``fold_pool_into_dense``). Both are exact; dropout is the identity at inference.
        """
        thresholds = [float(v) for v in self.thresholds.tolist()]
        names = self.layer_names()
        populations: dict[str, Any] = {}
        connections = []
        voltage_decay = 1.0 - self.neuron.leak
        for index, name in enumerate(names):
            if index < len(self.convs):
                conv = self.convs[index]
                shape = (conv.out_channels, *self.conv_shapes[index][1:])
                weight = _numpy(conv.weight)
                padding = conv.padding
                if index > 0 and self.pooled[index - 1]:
                    weight, stride, padding = fold_pool_into_conv(weight, conv.padding, POOL_SIZE)
                    source_shape = (self.convs[index - 1].out_channels, *self.conv_shapes[index - 1][1:])
                    synapse: Conv | Dense = Conv(weight, source_shape, stride, padding)
                else:
                    synapse = Conv(weight, self.conv_shapes[index], (1, 1), tuple(padding))
            else:
                linear = self.hidden[index - len(self.convs)]
                shape = ()
                synapse = self._dense_from_previous(index, _numpy(linear.weight))
            populations[name] = self._population(thresholds[index], voltage_decay, synapse.out_size, shape)
            source = INPUT if index == 0 else names[index - 1]
            connections.append(Connection(source, name, synapse, 0 if index == 0 else 1))
        output_weight = self._dense_from_previous(self.num_spiking, _numpy(self.output.weight))
        classes = self.output.out_features
        populations["output"] = LeakyIntegrator(np.zeros(classes), current_decay=1.0, voltage_decay=0.0)
        connections.append(Connection(names[-1], "output", output_weight, 1))
        gain = self.readout_gain(time_steps)
        readout = Readout("output", gain * np.eye(classes), np.zeros(classes), quantity="potential")
        return NetSpec(Input(self.input_shape, encoding), populations, tuple(connections), readout, time_steps)

    def _dense_from_previous(self, index: int, weight: np.ndarray) -> Dense:
        """A linear layer's weight on what the previous spiking layer emits (un-pooled when a pool sits between)."""
        previous = index - 1
        if previous == len(self.convs) - 1 and self.pooled[previous]:
            channels = self.convs[previous].out_channels
            _, height, width = self.conv_shapes[previous]
            weight = fold_pool_into_dense(weight, (channels, height, width), POOL_SIZE)
        return Dense(weight)

    def _population(self, threshold: float, voltage_decay: float, size: int,
                    shape: tuple[int, ...]) -> SoftResetNeurons | CubaNeurons:
        bias = np.zeros(size)
        if self.neuron.kind == "cuba":
            return CubaNeurons(bias, threshold, current_decay=1.0, voltage_decay=voltage_decay, shape=shape)
        return SoftResetNeurons(bias, threshold, 0.0, voltage_decay, shape=shape)


# ------------------------------------------------------------------------------------------------ geometry
def check_geometry(architecture: VGGArchitecture, input_shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """The (C, H, W) input of every conv; every pool must halve an even size, so that folding it into the next
    synapse is exact (an odd row would be dropped by the pool but read by the folded convolution).

    Raises:
        ConfigError: a non-image input, or a pool over an odd height or width.
    """
    if len(input_shape) != 3:
        raise ConfigError(f"the VGG twins need image input (C, H, W), got shape {input_shape}")
    channels, height, width = input_shape
    shapes = []
    for item in architecture.features:
        if item == POOL:
            if height % POOL_SIZE or width % POOL_SIZE:
                raise ConfigError(
                    f"model.features {list(architecture.features)}: a pool meets a {height}×{width} map; every pool "
                    f"needs an even size on {input_shape} (remove a pool or move it earlier)"
                )
            height, width = height // POOL_SIZE, width // POOL_SIZE
        else:
            shapes.append((channels, height, width))
            channels = int(item)
    return shapes


def fold_pool_into_conv(weight: np.ndarray, padding: tuple[int, int], pool: int
                        ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """avgpool(p×p, stride p) then conv(k×k, padding P) as one conv: kernel (p·k)², stride p, padding p·P.

    y[i] = Σ_a W[a]·pooled[i + a − P] = Σ_a Σ_u (W[a]/p)·x[p·i − p·P + p·a + u] per dimension, so the folded
    kernel holds W[a, b]/p² at rows p·a … p·a + p − 1 and columns p·b … p·b + p − 1 (spec B.7). Exact where the
    pooled map covers the input (even sizes for p = 2).
    """
    folded = np.repeat(np.repeat(weight, pool, axis=2), pool, axis=3) / (pool * pool)
    return folded, (pool, pool), (pool * padding[0], pool * padding[1])


def fold_pool_into_dense(weight: np.ndarray, shape: tuple[int, int, int], pool: int) -> np.ndarray:
    """avgpool(p×p) of a (C, H, W) map, flattened, then ``weight`` (n_out, C·(H/p)·(W/p)): one (n_out, C·H·W)."""
    channels, height, width = shape
    grid = weight.reshape(weight.shape[0], channels, height // pool, width // pool)
    folded = np.repeat(np.repeat(grid, pool, axis=2), pool, axis=3) / (pool * pool)
    return np.ascontiguousarray(folded.reshape(weight.shape[0], channels * height * width))


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)
