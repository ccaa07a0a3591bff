"""SPIDE: train a feedback SNN with spikes alone (Xiao et al., Neural Networks 2023; spec ide_spide.md §3).

Per mini-batch, three pieces, each a plain function of tensors so that a Lava graph can be checked against them:

1. Forward phase (``SPIDENetwork.forward_phase``): soft-reset neurons with θ = 1, u_rest = −1 (a spike subtracts
   D = 2, so the rate rounds instead of flooring) run T_f steps; they leave the rates a^l, the masks
   m^l = 1[0 < a^l < 1] and the input average x̄.
2. Backward phase (``backward_phase``): one ternary neuron per forward neuron (spike ±1 at |v| ≥ ½, subtract the
   spike) runs T_b steps on the transposed, gated weights, with g = scale·∂L/∂a^N injected as a constant current
   into the copy of the last layer. Its average signed rate β solves β = clamp(Jᵀβ + g, −1, 1), Jᵀβ = (1/D)·Wᵀ(m⊙β),
   which is IDE's implicit-differentiation equation wherever |β| < 1 (spec §3.4, §5.1).
3. Local update (``local_update``): for every edge src → tgt, ΔW = (1/D)·Σ_batch (m^tgt ⊙ β^tgt)(a^src)ᵀ (the
   conv weight-gradient of that product for convs), Δb = (1/D)·Σ_batch m⊙β, x̄ in place of a for the input edge.

Loss scale: the shared loop's loss is the batch-mean cross-entropy, so its ∂L/∂a carries 1/B and the injected
current is g_b = (scale/B)·W_oᵀ(p_b − y_b) per sample, as in the reference. The update is divided by the scale
before it reaches the optimiser, so the loop's learning rate is the reference's lr/scale·scale = lr and its weight
decay must be the reference's wd/scale (the presets say so). Dropout: the masks of the forward phase gate the
backward messages and the update (the exact gradient; the reference leaves them out of the update, spec §6.9).

Timing follows NetSpec in both phases: every connection between populations delays one step, so the backward
phase is the forward graph with its edges reversed (Lava's timing, spec §4.5). The equilibria do not depend on it.

Contraction. Both equilibria need ρ(J) < 1, J the block matrix of (1/D)·diag(m ⊙ d_e)·W_e over the edges between
populations (``jacobian_spectral_radius`` measures it per sample). The reference keeps the feedback's Frobenius norm
≤ c (and starts a ConvTranspose feedback ×0.1) but leaves the in-loop layers free. Loss scale, lr, weight decay and
the cap's placement (recomputed before every forward, as the reference's ``_reset``) match it here, and with that
recipe a 64-channel ConvNet-F on digits still lost its contraction: the feedback reached its cap within 12 epochs
and stayed there, while the in-loop convs' operator norms grew ×8 and ×5 (mostly by aligning: their kernels'
Frobenius norms grew ×1.7 and ×1.3), ρ(J) rose 0.11 → 1.0 (median; 1.2 max) by epoch 22 and the loss rose again;
through the shared loop the test accuracy fell from 96 % (epoch 25) to 48 % at epoch 40, ρ(J) 5.3 at the end.
``loop_norm_bound`` caps every in-loop weight's Frobenius norm the way the feedback's is capped: the effective
weight W·min(1, c/‖W‖_F) is recomputed per batch and the factor is a constant for the update, so the update stays
local (rates × rates, times one scalar per weight) and a Lava graph can apply it exactly as it caps the feedback.
At 12 (just above the convs' kaiming init, √(2·64) ≈ 11.3) the same run kept ρ(J) ≤ 0.63 (median) and ended at
96.67 % (``pipeline/configs/spide-mnist5k-convnetf.yaml`` with ``--data digits``).

BatchNorm on the input layer (``model.batch_norm``; not in the reference). IDE's F400 normalises F·x̄ + b with
BatchNorm, and that is what gave IDE its lead over SPIDE on Fashion-MNIST (epoch 1: 85.6 % against 83.7 % with
``data_init``; rescaling F during training without BatchNorm's backward gained nothing, see the F-MNIST preset).
It fits SPIDE's locality: BatchNorm is per unit, its statistics are batch sums of the unit's own current, and its
backward is per unit too, dz = s·(e − mean e − x̂·mean(e·x̂)) for the error e = gate ⊙ β/D at the unit's current —
batch sums of the kind the update Σ_batch (m⊙β) aᵀ already takes; no signal crosses units. In training the
batch's statistics fold into the input edge (F' = s·F, b' = s·(b − μ) + β, ``models.input_norm.fold``), the
spiking phases run unchanged on F', and SPIDE's update of F' and b' reaches F, b, γ and β through the fold by
autograd, which is BatchNorm's backward exactly. Evaluation and export fold the exact training-set statistics
(recomputed after every epoch, as IDE's ``batch_norm_statistics: exact``), so the NetSpec is a plain F and b.
The Lava graph does the same in its fused float model (the window holds the batch); the plain, one-sample-per-
window graph would need a batch's statistics before its forward phase and refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lavaflow.models.errors import ConfigError
from lavaflow.models.input_norm import InputMoments, store_exact_statistics
from lavaflow.models.netspec import NetSpec
from lavaflow.models.neurons import SoftResetParams, mean_input, rate_normaliser
from lavaflow.models.spide_network import (
    INITS,
    AvgPool,
    BatchOperators,
    Conv,
    ForwardPhase,
    SPIDENetwork,
    spide_netspec,
)
from lavaflow.pipeline.methods import Method, RuleGradient


@dataclass(frozen=True)
class SPIDEConfig:
    """The SPIDE network and its backward phase (the ``model:`` config section); defaults are F400's.

    Attributes:
        layers: one string per layer; the first is the input operator F. ``fc N``, ``conv C kK [sS] [pP]``,
            ``pool K`` (see ``models.spide_network.layer_operator``). F400: ["fc 400"]; LeNet-style: ["conv 15 k5 p2",
            "pool 2", "conv 40 k5 p2", "pool 2", "fc 300"]; ConvNet-F: ["conv 64 k5 s2 p2", "conv 64 k5 s2 p2",
            "conv 64 k5 p2"].
        feedback: last layer → layer 0: ``none``, ``fc``, ``conv kK [pP]`` or ``convT kK [sS] [pP] [opN]``
            (ConvNet-F: "convT k3 s2 p1 op1").
        init: "unit_row" or "kaiming" (``SPIDENetwork``).
        threshold, reset_potential: θ and u_rest of the forward neurons (SPIDE: 1 and −1, D = 2).
        leak: λ of forward and backward neurons (1: IF; below 1: LIF with λ-weighted rates).
        backward_threshold, backward_subtraction: θ_b and D_b of the ternary neurons (½ and 1: ±1 spikes at |v| ≥ ½).
        backward_steps: T_b.
        loss_scale: g = loss_scale·∂L/∂a is injected (100 MNIST, 400 CIFAR-10 in the reference).
        feedback_norm_bound: c, the Frobenius-norm cap of the feedback weight (2 in the reference).
        loop_norm_bound: c_loop, a Frobenius-norm cap on each in-loop weight (every weighted edge between
            populations but the feedback); None (the reference) leaves them free. ConvNet-F needs it: see the
            module docstring, "Contraction".
        dropout: variational dropout rate on every connection in training.
        data_init: before training (not on resume), rescale each unit of the input operator F (each output channel
            of a conv F) and set its bias so that its current F·x̄ + b has mean 0 and standard deviation 1 over the
            run's first training batch (``standardise_input_edge``). False: the ``init`` weights and zero biases.
        batch_norm: BatchNorm on the input layer's current F·x̄ + b, as IDE's F400 has (per unit; per channel for a
            conv F): batch statistics in training, the exact training-set statistics (recomputed after every epoch,
            as IDE's ``batch_norm_statistics: exact``) in evaluation and export, where it folds into F and b. Off
            in the reference; see the module docstring, "BatchNorm on the input layer".
    """

    layers: tuple[str, ...] = ("fc 400",)
    feedback: str = "fc"
    init: str = "unit_row"
    threshold: float = 1.0
    reset_potential: float = -1.0
    leak: float = 1.0
    backward_threshold: float = 0.5
    backward_subtraction: float = 1.0
    backward_steps: int = 100
    loss_scale: float = 100.0
    feedback_norm_bound: float = 2.0
    loop_norm_bound: float | None = None
    dropout: float = 0.0
    data_init: bool = False
    batch_norm: bool = False

    def __post_init__(self) -> None:
        checks = {
            "layers": len(self.layers) >= 1,
            "init": self.init in INITS,
            "threshold": self.threshold > 0 and self.threshold > self.reset_potential,
            "leak": 0 < self.leak <= 1,
            "backward_threshold": self.backward_threshold > 0,
            "backward_subtraction": self.backward_subtraction > 0,
            "backward_steps": self.backward_steps >= 1,
            "loss_scale": self.loss_scale > 0,
            "feedback_norm_bound": self.feedback_norm_bound > 0,
            "loop_norm_bound": self.loop_norm_bound is None or self.loop_norm_bound > 0,
            "dropout": 0 <= self.dropout < 1,
            "data_init": isinstance(self.data_init, bool),
            "batch_norm": isinstance(self.batch_norm, bool),
        }
        bounds = {"layers": "a list of at least one layer string", "init": f"one of {list(INITS)}",
                  "threshold": "> 0 and above reset_potential", "leak": "in (0, 1]", "backward_threshold": "> 0",
                  "backward_subtraction": "> 0", "backward_steps": "≥ 1", "loss_scale": "> 0",
                  "feedback_norm_bound": "> 0", "loop_norm_bound": "> 0 or null (no cap)", "dropout": "in [0, 1)",
                  "data_init": "true or false", "batch_norm": "true or false"}
        for name, valid in checks.items():
            if not valid:
                raise ConfigError(f"model.{name} = {getattr(self, name)!r} must be {bounds[name]}")

    @property
    def neuron(self) -> SoftResetParams:
        """The forward neurons: fire at v ≥ θ, subtract θ − u_rest, keep λ of the voltage per step."""
        return SoftResetParams(self.threshold, self.reset_potential, 1.0 - self.leak)

    @property
    def backward_neuron(self) -> TernaryParams:
        return TernaryParams(self.backward_threshold, self.backward_subtraction, self.leak)


# ---------------------------------------------------------------------------------------------------- backward phase
class TernaryParams(NamedTuple):
    """The backward neurons: ±D_b spikes at v ≥ θ_b / v ≤ −θ_b, reset by subtracting the spike; λ kept per step."""

    threshold: float = 0.5
    subtraction: float = 1.0
    leak: float = 1.0


def ternary_step(current: Tensor, voltage: Tensor, params: TernaryParams) -> tuple[Tensor, Tensor]:
    """One step: v ← λ·v + I;  s = D_b·(1[v ≥ θ_b] − 1[v ≤ −θ_b]);  v ← v − s.  Returns (s, v)."""
    voltage = params.leak * voltage + current
    spikes = params.subtraction * ((voltage >= params.threshold).to(voltage.dtype)
                                   - (voltage <= -params.threshold).to(voltage.dtype))
    return spikes, voltage - spikes


class TransposedEdge(NamedTuple):
    """One backward connection: ``send(s)`` is the current into backward layer ``target`` from ``source``'s spikes.

    For a forward edge src → tgt it is the reversed edge tgt → src with send(s) = (1/D)·Wᵀ(gate ⊙ s), gate = the
    forward mask of tgt (times the edge's dropout mask in training).
    """

    source: int
    target: int
    send: Callable[[Tensor], Tensor]


class BackwardPhase(NamedTuple):
    """Per backward layer (B, *layer shape): β (λ-weighted average signed rate) and the signed spike count."""

    betas: tuple[Tensor, ...]
    spike_counts: tuple[Tensor, ...]


@torch.no_grad()
def backward_phase(edges: Sequence[TransposedEdge], shapes: Sequence[tuple[int, ...]], injection: Tensor,
                   injected_layer: int, steps: int, params: TernaryParams) -> BackwardPhase:
    """Run the ternary backward SNN for ``steps`` = T_b steps from rest and return its rates β.

    Per step t, backward layer l receives Σ_{edges into l} send(s_source[t − 1]) (every connection delays one step,
    as Lava's) plus, for ``injected_layer``, the constant ``injection`` g. At t = 1 only g has arrived.

    Args:
        edges: the transposed connections (``transposed_edges``).
        shapes: per layer, one sample's shape.
        injection: g, (B, *shapes[injected_layer]).
        injected_layer: the layer the readout reads (the last).
        steps: T_b.
        params: the ternary neurons.
    """
    batch = injection.shape[0]
    voltages = [injection.new_zeros((batch, *shape)) for shape in shapes]
    spikes = [injection.new_zeros((batch, *shape)) for shape in shapes]
    traces = [injection.new_zeros((batch, *shape)) for shape in shapes]
    counts = [injection.new_zeros((batch, *shape)) for shape in shapes]
    for _ in range(steps):
        currents = [injection if index == injected_layer else injection.new_zeros(()) for index in range(len(shapes))]
        for edge in edges:
            currents[edge.target] = currents[edge.target] + edge.send(spikes[edge.source])
        for index, current in enumerate(currents):
            spikes[index], voltages[index] = ternary_step(current, voltages[index], params)
            traces[index] = params.leak * traces[index] + spikes[index]
            counts[index] = counts[index] + spikes[index]
    normaliser = rate_normaliser(steps, params.leak)
    return BackwardPhase(tuple(trace / normaliser for trace in traces), tuple(counts))


def edge_gates(network: SPIDENetwork, phase: ForwardPhase, operators: BatchOperators) -> tuple[Tensor, ...]:
    """Per forward edge, the gate of its target: the mask m^tgt, times the edge's dropout mask in training."""
    gates = []
    for number, edge in enumerate(network.edges):
        gate = phase.masks[edge.target]
        gates.append(gate if operators.dropout is None else gate * operators.dropout[number])
    return tuple(gates)


def transposed_edges(network: SPIDENetwork, operators: BatchOperators,
                     gates: Sequence[Tensor]) -> tuple[TransposedEdge, ...]:
    """The backward graph: every forward edge between populations reversed, send(s) = (1/D)·Wᵀ(gate ⊙ s)."""
    subtraction = network.neuron.subtraction
    edges = []
    for number, edge in enumerate(network.edges):
        if edge.source < 0:
            continue  # the input has no backward neurons: F only gets its update

        def send(spikes: Tensor, number: int = number) -> Tensor:
            operator, weight = network.edges[number].operator, operators.weights[number]
            return operator.adjoint(gates[number] * spikes, weight) / subtraction

        edges.append(TransposedEdge(edge.target, edge.source, send))
    return tuple(edges)


# ---------------------------------------------------------------------------------------------------- local update
def local_update(network: SPIDENetwork, phase: ForwardPhase, betas: Sequence[Tensor],
                 gates: Sequence[Tensor]) -> list[tuple[Tensor | None, Tensor | None]]:
    """Per edge, (ΔW, Δb) = (1/D)·Σ_batch of the operator's weight gradient for pre = a^src (x̄ for the input
    edge) and error = gate ⊙ β^tgt: for a dense edge (1/D)·Σ_b (m⊙β)_b a_bᵀ and (1/D)·Σ_b (m⊙β)_b.

    Pooling edges have no weights: (None, None). The feedback's Δb is None (it has no bias).
    """
    subtraction = network.neuron.subtraction
    updates: list[tuple[Tensor | None, Tensor | None]] = []
    for number, edge in enumerate(network.edges):
        operator = edge.operator
        if not hasattr(operator, "weight_gradient"):
            updates.append((None, None))
            continue
        pre = phase.mean_input if edge.source < 0 else phase.rates[edge.source]
        weight, bias = operator.weight_gradient(pre, gates[number] * betas[edge.target])
        updates.append((weight / subtraction, None if number == network.feedback_edge else bias / subtraction))
    return updates


# ---------------------------------------------------------------------------------------------------- one step
class SPIDERecord(NamedTuple):
    """One mini-batch's SPIDE quantities (for tests, diagnostics and the Lava graph's parity checks).

    updates: per edge of ``network.edges``, (ΔW, Δb) = (1/D)·Σ_batch … at the injected scale (not yet ÷ scale).
    """

    phase: ForwardPhase
    operators: BatchOperators
    gates: tuple[Tensor, ...]
    injection: Tensor
    backward: BackwardPhase
    updates: list[tuple[Tensor | None, Tensor | None]]


def spide_update(network: SPIDENetwork, phase: ForwardPhase, operators: BatchOperators, injection: Tensor,
                 steps: int, params: TernaryParams) -> SPIDERecord:
    """Backward phase and local update of one mini-batch, from its forward phase and the injected g.

    ``injection`` is g = scale·∂L/∂a^N, (B, *last layer shape); ``steps`` is T_b. This is what the training step
    runs between its forward phase and the optimiser, and what a Lava graph of the two phases must reproduce.
    """
    gates = edge_gates(network, phase, operators)
    backward = backward_phase(transposed_edges(network, operators, gates), network.layer_shapes, injection,
                              len(network.layer_shapes) - 1, steps, params)
    updates = local_update(network, phase, backward.betas, gates)
    return SPIDERecord(phase, operators, gates, injection, backward, updates)


# ---------------------------------------------------------------------------------------------------- contraction
@torch.no_grad()
def jacobian_spectral_radius(network: SPIDENetwork, operators: BatchOperators, gates: Sequence[Tensor],
                             iterations: int = 60, seed: int = 0) -> Tensor:
    """Per sample, ρ(J) of the equilibrium Jacobian J = blocks (1/D)·diag(gate_e)·W_e (every edge between
    populations), by power iteration: the geometric mean growth of ‖J^k v‖ over the last two thirds of
    ``iterations`` steps. ρ(J) < 1 is what the forward and backward equilibria need (spec §5.2); with N layers in
    the loop, ρ(J)^N is the gain of one round trip. Returns (B,).
    """
    if iterations < 3:
        raise ValueError(f"iterations must be at least 3, got {iterations}")
    batch = gates[0].shape[0]
    generator = torch.Generator().manual_seed(seed)
    like = gates[0]
    vectors = [torch.randn((batch, *shape), generator=generator, dtype=like.dtype).to(like.device)
               for shape in network.layer_shapes]
    subtraction, start = network.neuron.subtraction, iterations // 3
    log_growth = like.new_zeros(batch)
    for iteration in range(iterations):
        images = [like.new_zeros((batch, *shape)) for shape in network.layer_shapes]
        for number, edge in enumerate(network.edges):
            if edge.source >= 0:
                current = edge.operator.apply(vectors[edge.source], operators.weights[number], None)
                images[edge.target] = images[edge.target] + gates[number] * current / subtraction
        norm = torch.sqrt(sum(image.flatten(1).pow(2).sum(1) for image in images))
        norm = norm.clamp_min(torch.finfo(like.dtype).tiny)
        if iteration >= start:
            log_growth += norm.log()
        vectors = [image / norm.reshape(-1, *[1] * (image.dim() - 1)) for image in images]
    return (log_growth / (iterations - start)).exp()


# ---------------------------------------------------------------------------------------------------- data init
@torch.no_grad()
def standardise_input_edge(network: SPIDENetwork, inputs: Tensor) -> None:
    """Rescale the input operator F and set its bias b so that each unit's current z = F·x̄ + b has mean 0 and
    standard deviation 1 over ``inputs`` (per output channel, over samples and positions, for a conv F).

    Why: the reference's SPIDE has no BatchNorm, and the unit-norm or kaiming F gives layer 0 currents whose scale
    depends on the data (on Fashion-MNIST's first batch |mean| 0.27 and sd 0.28 per unit on average, against D = 2
    per spike). This gives BatchNorm's starting scale once, before training, from one batch: a one-off
    initialisation, not a rule (+1.3 pp at epoch 1 on Fashion-MNIST; ``model.batch_norm`` gains more, see the
    module docstring).

    Per unit j with batch mean μ_j and (population) standard deviation σ_j of z_j: F_j ← F_j/σ_j and
    b_j ← (b_j − μ_j)/σ_j, so F'·x̄ + b' = (z − μ)/σ. A unit whose current does not vary over the batch (σ_j at
    float32 rounding level, e.g. a conv channel that sees only blank pixels) is centred but not scaled. The
    statistics are taken in float64 and the results stored in F's dtype. x̄ is the forward phase's presynaptic
    rate of the input edge: the input itself for constant-current input, else its λ-weighted average.

    Args:
        network: the SPIDE network; only its input edge (edge 0) changes.
        inputs: time-first input (T, B, *input_shape), encoded as the trainer feeds it.

    Raises:
        ConfigError: the first layer is a pooling layer (it has no weights to rescale).
        ValueError: inputs of the wrong shape.
    """
    network._check_inputs(inputs)  # the network's own shape check: one message for a wrong shape
    operator = network.edges[0].operator
    if isinstance(operator, AvgPool):
        raise ConfigError("model.data_init rescales the input layer's weights, but model.layers[0] is a pooling "
                          "layer; start with an fc or conv layer, or set data_init: false")
    # Edge 0 is the first edge with weights and never the feedback: its weight and bias are the first of each list.
    weight, bias = network.weights[0], network.biases[0]
    double_weight, double_bias = weight.to(torch.float64), bias.to(torch.float64)
    current = operator.apply(mean_input(inputs, network.neuron.leak, torch.float64), double_weight, double_bias)
    dims = (0, 2, 3) if isinstance(operator, Conv) else (0,)
    mean = current.mean(dims)
    deviation = current.std(dims, correction=0)
    flat = deviation <= torch.finfo(torch.float32).eps * current.abs().amax(dims)
    scale = torch.where(flat, torch.ones_like(deviation), 1 / deviation)
    weight.copy_((double_weight * scale.reshape(-1, *[1] * (weight.dim() - 1))).to(weight.dtype))
    bias.copy_(((double_bias - mean) * scale).to(bias.dtype))


def initialise(model: nn.Module, inputs: Tensor) -> None:
    """The method's data-dependent initialisation (``Method.initialise``): ``standardise_input_edge`` on the
    first training batch when the model's config sets ``data_init``, nothing otherwise."""
    if not isinstance(model, SPIDEModel):
        raise TypeError(f"expected a SPIDEModel built by pipeline.spide.build, got {type(model).__name__}")
    if model.config.data_init:
        standardise_input_edge(model.network, inputs)


# ---------------------------------------------------------------------------------------------------- the method


class SPIDEModel(nn.Module):
    """A SPIDENetwork whose forward attaches SPIDE's spike-based gradient in training.

    ``forward(inputs)`` takes time-first input (T, B, *input_shape) and returns logits (B, classes). The readout
    gets its ordinary gradient; every other parameter gets the SPIDE update (divided by ``loss_scale``) through a
    custom autograd function, so the shared loop and DDP drive it like any method. ``record``: a list to which
    each backward appends its ``SPIDERecord`` (None: nothing is kept).
    """

    def __init__(self, network: SPIDENetwork, config: SPIDEConfig) -> None:
        super().__init__()
        self.network = network
        self.config = config
        self.record: list[SPIDERecord] | None = None
        self.input_moments: InputMoments | None = None  # of the training set, kept by refresh_statistics

    def forward(self, inputs: Tensor) -> Tensor:
        network = self.network
        operators = network.batch_operators(inputs.shape[1], inputs)
        phase = network.forward_phase(inputs, operators)
        rates = phase.rates[-1]
        if self.training and torch.is_grad_enabled():
            parameters = [w for w in operators.weights if w is not None]
            parameters += [b for b in operators.biases if b is not None]
            rates = RuleGradient.apply(rates, partial(self._spide_gradients, phase, operators), *parameters)
        return network.readout(rates.flatten(1))

    @torch.no_grad()
    def refresh_statistics(self, inputs: Iterable[Tensor]) -> None:
        """With ``batch_norm``, set the input BatchNorm's stored statistics to the exact ones of ``inputs`` (the
        training set, time-first batches; ``Method.refresh_statistics``). A dense F keeps the inputs' moments from
        the first call, so later epochs cost one product instead of a pass over the data."""
        network = self.network
        norm = network.input_norm
        if norm is None:
            return
        averages = (mean_input(batch, network.neuron.leak, torch.float64) for batch in inputs)
        weight, bias = network.weights[0], network.biases[0]
        drive = None
        if isinstance(network.edges[0].operator, Conv):
            drive = partial(network.edges[0].operator.apply, weight=weight.double(), bias=bias.double())
        self.input_moments = store_exact_statistics(norm, weight, bias, averages, drive, self.input_moments)

    def _spide_gradients(self, phase: ForwardPhase, operators: BatchOperators, grad_rates: Tensor) -> list[Tensor]:
        """SPIDE's update for the loop's ∂L/∂a^N: the backward phase and the local update, divided by the loss
        scale; in forward's parameter order (every edge's weight, then every edge's bias)."""
        config = self.config
        injection = config.loss_scale * grad_rates  # g = scale·∂L/∂a^N; ∂L/∂a carries the batch mean's 1/B
        step = spide_update(self.network, phase, operators, injection, config.backward_steps, config.backward_neuron)
        if self.record is not None:
            self.record.append(step)
        weights = [w for (w, _), used in zip(step.updates, operators.weights, strict=True) if used is not None]
        biases = [b for (_, b), used in zip(step.updates, operators.biases, strict=True) if used is not None]
        return [update / config.loss_scale for update in weights + biases]


def build(config: SPIDEConfig, input_shape: tuple[int, ...], num_classes: int, time_steps: int,
          generator: torch.Generator) -> SPIDEModel:
    """Build a SPIDE network; ``generator`` draws its initial weights and its dropout masks."""
    if time_steps < 1:
        raise ConfigError(f"time_steps (T_f) must be at least 1, got {time_steps}")
    try:
        network = SPIDENetwork(tuple(input_shape), config.layers, config.feedback, num_classes, neuron=config.neuron,
                               feedback_norm_bound=config.feedback_norm_bound, dropout=config.dropout,
                               init=config.init, generator=generator, loop_norm_bound=config.loop_norm_bound,
                               batch_norm=config.batch_norm)
    except ValueError as error:
        raise ConfigError(f"model: {error}; fix model.layers / model.feedback in the config") from None
    return SPIDEModel(network, config)


def to_netspec(module: nn.Module, config: SPIDEConfig, input_shape: tuple[int, ...], encoding: str,
               time_steps: int) -> NetSpec:
    """Describe a trained SPIDE network's forward SNN as a NetSpec (dropout off, feedback capped)."""
    model = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    if not isinstance(model, SPIDEModel):
        raise TypeError(f"expected a SPIDEModel built by pipeline.spide.build, got {type(model).__name__}")
    if tuple(model.network.input_shape) != tuple(input_shape):
        raise ConfigError(f"input shape {tuple(input_shape)} differs from the network's {model.network.input_shape}")
    metadata = {"method": "spide", "layers": "; ".join(config.layers), "feedback": config.feedback}
    return spide_netspec(model.network, encoding=encoding, time_steps=time_steps, metadata=metadata)


METHOD = Method(
    name="spide",
    model_config=SPIDEConfig,
    build=build,
    to_netspec=to_netspec,
    initialise=initialise,
    refresh_statistics=SPIDEModel.refresh_statistics,
    # The reference's SGD (momentum 0.9, lr 0.05) with its weight decay 5e-4 divided by the default loss scale 100
    # (the update reaches the optimiser unscaled, spec §3.7); T_f = 30.
    training_defaults={"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 5e-6,
                       "milestones": (30, 60, 90), "gamma": 0.1, "epochs": 100, "batch_size": 128,
                       "time_steps": 30},
    description="SPIDE (Xiao et al. 2023): a purely spike-based update for feedback SNNs; forward equilibrium of "
                "θ = 1, u_rest = −1 neurons, backward equilibrium of ternary neurons, local rate × rate update.",
)
