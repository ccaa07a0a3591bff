"""ST-RSBP: spike-train level backprop through recurrent SNNs (Zhang & Li, NeurIPS 2019; spec strsbp_stdb.md part A).

The network (models.rsnn) is simulated exactly, without a graph. The gradient is taken at the level of spike
counts o: each post neuron's count is tied to its inputs through the spike-train level post-synaptic potentials
(S-PSPs) e_{i|j}, the part of v_i at its own spike times that pre neuron j contributed (spec A.3):

    ν·o_i ≈ a_i = Σ_j w_ij·e_{i|j} + Σ_p w^r_ip·e_{i|p}           (T-PSP; exact: a_i = Σ_m v_i(t_m))

Differentiating with ∂e_{i|j}/∂o_j ≈ r_ij = e_{i|j}/o_j (effect ratio) and ∂e_{i|j}/∂o_i ≈ P'_{o_j}(o_i) (a fitted
Monte-Carlo curve, spec A.4) gives, per layer and per sample, the linear system

    M·do = (1/ν)·(R·do_below + E ∘ dW),   M = I − diag(S) − (W^r ∘ r^r)/ν,   S_i = (1/ν)·Σ_j w_ij·P'_{o_j}(o_i)

(W^r: the trainable recurrent weights of a recurrent layer, the fixed lateral inhibition of the output; a dense
layer has a diagonal M). With g = ∂E/∂o and β = M^{-T}·g (one batched transposed solve):

    ∂E/∂w_ij = β_i·e_{i|j}/ν,   ∂E/∂w^r_ip = β_i·e_{i|p}/ν,   ∂E/∂o_j(below) = Σ_i β_i·w_ij·r_ij/ν.

The reference code uses g_i/M_ii in place of β_i for the weight gradients ("diagonal", kept as an option; its
error propagation is already exact), and treats the output's lateral inhibition by a two-cycle factor that the
exact solve subsumes. S-PSPs come from a closed form (``effects``): with Q_j the unit membrane response of pre
neuron j without resets, e_{i|j} = Σ_m (Q_j[t_m] − α^{t_m − r_{m−1}}·Q_j[r_{m−1}]), r_m = t_m + R the step after
which the post neuron restarts from 0, so E = A·Q is a matmul per sample over the neurons that fired
(``SpikeTrainProduct``; silent rows and columns are exact zeros), each train's A and Q computed once per backward
(``TrainFilters``), and the first layer's E never formed (only Σ_b β_b·E_b is needed there).

Loss (spec A.5): target counts y = desired (label) / undesired (others), E = Σ_i [|o_i − y_i| > m]·(o_i − y_i)²
with the reference's gradient [|o − y| > m]·(o − y); a silent label neuron gets injected spikes for its S-PSPs.
The shared loop minimises cross-entropy on the logits (the counts) and gives targets to no method; the label is
the one entry of ∂CE/∂logits = (softmax − onehot)/B that is negative, so backward reads it from there (exact for
the loop's cross-entropy). ``loss: cross_entropy`` instead back-propagates ∂CE/∂counts itself.

Deviations (documented): mini-batches averaged (the reference takes an Adam step per sample), the loop's
learning-rate schedule in place of lr/√(epoch+1), no boosting of misclassified samples, rate codes redrawn
each epoch with P(spike) = intensity (the reference draws once with intensity/5.5), the exact recurrent solve
by default, self-connections' ratio term kept on M's diagonal.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lavaflow.models.errors import ConfigError
from lavaflow.models.netspec import NetSpec
from lavaflow.models.rsnn import RSNN, TOPOLOGIES, RSNNArchitecture, RSNNLayer, rsnn_netspec
from lavaflow.pipeline.methods import Method, RuleGradient

LOSSES = ("spike_count", "cross_entropy")
SOLVES = ("exact", "diagonal")
SILENT_RATIO = 0.5  # r_ij where the pre or the post neuron is silent (reference: effect ratio 0.5)
COMPACT_FRACTION = 0.7  # SpikeTrainProduct: one batched matmul above this fraction of non-silent (post, pre) pairs


@dataclass(frozen=True)
class STRSBPConfig:
    """The RSNN and its spike-train level gradient (the ``model:`` section). Defaults: Fashion-MNIST 400-R400.

    Attributes:
        layers: hidden layers, "N" dense or "rN" recurrent (400-R400: ["400", "r400"]).
        thresholds: ν per hidden layer and for the output (spec A.10: 20 / 20 / 15).
        tau_m, tau_s, refractory_steps: the neuron (64 or 128, 8, 2).
        lateral_inhibition: w0 of the fixed output inhibition −w0 (1).
        initial_weight: weights start U(−initial_weight, initial_weight) (1).
        topology: recurrent connections, "grid" (the spec's 3-D reservoir) or "dense".
        loss: "spike_count" (spec A.5) or "cross_entropy" (on logits = counts).
        desired_rate, undesired_rate, margin_rate: target counts and margin per step (35, 5, 5 of 400).
        silent_label_spikes: inject spikes into a silent label neuron's train for its S-PSPs (spec A.5).
        recurrent_solve: "exact" (β = M^{-T}g) or "diagonal" (the reference's g/M_ii for weight gradients).
        min_denominator: |M_ii| is kept at least this (sign kept), as the reference does in recurrent layers.
        regularizer_lambda, regularizer_beta, weight_limit: the soft weight-norm penalty of spec A.8 (λ = 0: off).
        table_draws, table_seed: Monte-Carlo draws and seed of the P' tables (computed per T and neuron).
    """

    layers: tuple[str, ...] = ("400", "r400")
    thresholds: tuple[float, ...] = (20.0, 20.0, 15.0)
    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory_steps: int = 2
    lateral_inhibition: float = 1.0
    initial_weight: float = 1.0
    topology: str = "grid"
    loss: str = "spike_count"
    desired_rate: float = 35 / 400
    undesired_rate: float = 5 / 400
    margin_rate: float = 5 / 400
    silent_label_spikes: bool = True
    recurrent_solve: str = "exact"
    min_denominator: float = 1e-4
    regularizer_lambda: float = 10.0
    regularizer_beta: float = 0.04
    weight_limit: float = 8.0
    table_draws: int = 1000
    table_seed: int = 0

    def __post_init__(self) -> None:
        for text in self.layers:
            RSNNLayer.parse(text)  # raises ConfigError for a malformed layer
        if len(self.thresholds) != len(self.layers) + 1:
            raise ConfigError(f"model.thresholds needs one ν per hidden layer and one for the output "
                              f"({len(self.layers) + 1}), got {len(self.thresholds)}")
        choices = {"loss": LOSSES, "recurrent_solve": SOLVES, "topology": TOPOLOGIES}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"model.{name} {getattr(self, name)!r} is not one of {valid}")
        checks = {
            "tau_m": (self.tau_m >= 1, "≥ 1 step"), "tau_s": (self.tau_s >= 1, "≥ 1 step"),
            "refractory_steps": (self.refractory_steps >= 0, "≥ 0"),
            "lateral_inhibition": (self.lateral_inhibition >= 0, "≥ 0"),
            "initial_weight": (self.initial_weight > 0, "> 0"),
            "desired_rate": (0 < self.desired_rate <= 1, "in (0, 1]"),
            "undesired_rate": (0 <= self.undesired_rate < self.desired_rate, "in [0, desired_rate)"),
            "margin_rate": (self.margin_rate >= 0, "≥ 0"),
            "min_denominator": (self.min_denominator > 0, "> 0"),
            "regularizer_lambda": (self.regularizer_lambda >= 0, "≥ 0"),
            "regularizer_beta": (self.regularizer_beta >= 0, "≥ 0"),
            "weight_limit": (self.weight_limit > 0, "> 0"),
            "table_draws": (self.table_draws >= 1, "≥ 1"),
        }
        for name, (valid, bound) in checks.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and valid):
                raise ConfigError(f"model.{name} = {value!r} must be {bound}")

    def architecture(self, input_size: int, num_classes: int) -> RSNNArchitecture:
        return RSNNArchitecture(
            input_size=input_size, layers=tuple(RSNNLayer.parse(text) for text in self.layers),
            num_classes=num_classes, thresholds=tuple(float(v) for v in self.thresholds), tau_m=self.tau_m,
            tau_s=self.tau_s, refractory_steps=self.refractory_steps, lateral_inhibition=self.lateral_inhibition,
            topology=self.topology)


# ------------------------------------------------------------------------------------------------ S-PSPs
def unit_responses(trains: Tensor, delay: int, current_decay: float, voltage_decay: float) -> Tensor:
    """Q (B, T, M): the membrane response, without resets, of a post neuron to each pre train of (T, B, M).

    p[t] = (1 − 1/τ_s)·p[t−1] + x[t − delay];  Q[t] = (1 − 1/τ_m)·Q[t−1] + p[t]/τ_s  (the neuron's own filters:
    v_i = Σ_j w_ij·q_ij, and q_ij equals Q_j between the post neuron's restarts). Written step by step into the
    (B, T, M) result, in place: the loop is memory-bound, and the matmul ``effects`` wants Q contiguous per sample.
    """
    time_steps = trains.shape[0]
    current_keep, voltage_keep = 1.0 - current_decay, 1.0 - voltage_decay
    trace = torch.zeros_like(trains[0])
    scaled = torch.empty_like(trace)
    out = torch.zeros(trains.shape[1], time_steps, trains.shape[2], dtype=trains.dtype, device=trains.device)
    previous = torch.zeros_like(trace)
    for t in range(delay, time_steps):
        trace.mul_(current_keep).add_(trains[t - delay])
        response = out[:, t]
        torch.mul(previous, voltage_keep, out=response)
        response.add_(torch.mul(trace, current_decay, out=scaled))
        previous = response
    return out


def readout_kernel(post: Tensor, refractory_steps: int, voltage_decay: float) -> Tensor:
    """A (B, N, T) with e = A·Q: +1 at each post spike t_m, −α^{t_m − r_{m−1}} at each restart r_{m−1} = t_{m−1} + R.

    A post neuron's unit response restarts from 0 after step r = t_spike + R (reset, then R held steps), so at its
    m-th spike it reads Q[t_m] − α^{t_m − r_{m−1}}·Q[r_{m−1}] (α = 1 − 1/τ_m; nothing to subtract for m = 1).
    Built from the spikes' coordinates (spike trains are sparse): ``nonzero`` lists them by (sample, neuron, step),
    so a spike's predecessor in the list is its neuron's previous spike when both have the same (sample, neuron).
    """
    sample, neuron, step = post.ne(0).permute(1, 2, 0).nonzero(as_tuple=True)
    kernel = post.new_zeros(post.shape[1], post.shape[2], post.shape[0])
    kernel[sample, neuron, step] = post[step, sample, neuron]
    follows = (sample[1:] == sample[:-1]) & (neuron[1:] == neuron[:-1])
    restart = step[:-1][follows] + refractory_steps
    alpha = 1.0 - voltage_decay
    value = -(alpha ** (step[1:][follows] - restart).to(kernel.dtype))
    return kernel.index_put_((sample[1:][follows], neuron[1:][follows], restart), value, accumulate=True)


def nonzero_somewhere(trains: Tensor) -> Tensor:
    """(B, M) bool: which of the trains (T, B, M) are not all zero (two reductions, cheaper than ne().any())."""
    return (trains.amax(0) > 0) | (trains.amin(0) < 0)


class SpikeTrainProduct(NamedTuple):
    """S-PSPs e = A·Q (B, N, M) kept factored: the readout kernels A of the post trains and the unit responses Q
    of the pre trains, with masks of the rows of A and columns of Q that are not all zero.

    A silent post neuron's row of A and a silent pre neuron's column of Q are exactly 0 (on images about half of
    each at the start of training), so the products below leave them out: no value changes (only the order of
    the sums' nonzero terms may) and most of the flops go. Where little is silent one batched matmul is cheaper
    than the per-sample gathers.
    """

    kernel: Tensor  # (B, N, T) A
    responses: Tensor  # (B, T, M) Q
    rows: Tensor  # (B, N) bool: the post neuron fired (its row of A is not all zero)
    cols: Tensor  # (B, M) bool: the pre neuron's column of Q is not all zero

    def _compact(self) -> bool:
        """Per-sample products pay on CPU; an accelerator is better served by one batched matmul."""
        if self.kernel.device.type != "cpu":
            return False
        batch, size, inputs = self.kernel.shape[0], self.kernel.shape[1], self.responses.shape[2]
        pairs = (self.rows.sum(1).to(torch.float64) * self.cols.sum(1).to(torch.float64)).sum()
        return float(pairs) <= COMPACT_FRACTION * batch * size * inputs

    def _parts(self, scale: Tensor | None = None) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
        """Per sample with any pair: (b, rows, cols, the (rows, cols) block of scale_b ∘ A_b·Q_b)."""
        for b in range(self.kernel.shape[0]):
            row, col = self.rows[b].nonzero().squeeze(1), self.cols[b].nonzero().squeeze(1)
            if row.numel() == 0 or col.numel() == 0:
                continue
            kernel = self.kernel[b].index_select(0, row)
            if scale is not None:
                kernel = scale[b].index_select(0, row)[:, None] * kernel
            yield b, row, col, kernel @ self.responses[b].index_select(1, col)

    def dense(self) -> Tensor:
        """e (B, N, M)."""
        if not self._compact():
            return self.kernel @ self.responses
        batch, size, inputs = self.kernel.shape[0], self.kernel.shape[1], self.responses.shape[2]
        out = self.kernel.new_zeros(batch, size, inputs)
        for b, row, col, part in self._parts():
            out[b].index_put_((row[:, None], col[None, :]), part)
        return out

    def weighted_sum(self, scale: Tensor) -> Tensor:
        """Σ_b scale_b[:, None] ∘ e_b (N, M) for scale (B, N), without forming e (the first layer's ∂E/∂W)."""
        batch, size, time_steps = self.kernel.shape
        inputs = self.responses.shape[2]
        if not self._compact():
            weighted = (scale[:, :, None] * self.kernel).transpose(0, 1).reshape(size, batch * time_steps)
            return weighted @ self.responses.reshape(batch * time_steps, inputs)
        out = self.kernel.new_zeros(size, inputs)
        for _, row, col, part in self._parts(scale):
            out.index_put_((row[:, None], col[None, :]), part, accumulate=True)
        return out


def effects(pre: Tensor, delay: int, post: Tensor, architecture: RSNNArchitecture) -> Tensor:
    """S-PSPs e (B, N, M) of pre trains (T, B, M) arriving with ``delay`` on post trains (T, B, N)."""
    return TrainFilters(architecture).product(pre, delay, post).dense()


class TrainFilters:
    """Readout kernels A and unit responses Q of spike trains, each computed once per backward pass: a layer's
    trains are the post side of its own S-PSPs and the pre side of the next layer's, and a recurrent layer's or
    the output's own trains are both (its loop). Keyed by the tensor's identity, which it holds on to."""

    def __init__(self, architecture: RSNNArchitecture) -> None:
        self.architecture = architecture
        self._kernels: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        self._responses: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor]] = {}

    def kernel(self, post: Tensor) -> tuple[Tensor, Tensor]:
        """A (B, N, T) and which post neurons fired (B, N)."""
        if id(post) not in self._kernels:
            a = self.architecture
            fired = nonzero_somewhere(post)
            self._kernels[id(post)] = (post, readout_kernel(post, a.refractory_steps, a.voltage_decay), fired)
        return self._kernels[id(post)][1:]

    def responses(self, pre: Tensor, delay: int) -> tuple[Tensor, Tensor]:
        """Q (B, T, M) and which of its columns are not all zero (B, M): a spike before step T − delay."""
        key = (id(pre), delay)
        if key not in self._responses:
            a = self.architecture
            reaching = nonzero_somewhere(pre[: pre.shape[0] - delay])
            self._responses[key] = (pre, unit_responses(pre, delay, a.current_decay, a.voltage_decay), reaching)
        return self._responses[key][1:]

    def product(self, pre: Tensor, delay: int, post: Tensor) -> SpikeTrainProduct:
        kernel, rows = self.kernel(post)
        responses, cols = self.responses(pre, delay)
        return SpikeTrainProduct(kernel, responses, rows, cols)


def effect_ratios(effect: Tensor, pre_counts: Tensor, post_counts: Tensor) -> Tensor:
    """r_ij = e_ij / o_j, and SILENT_RATIO where o_j or o_i is 0 (spec A.4.1)."""
    ratio = effect / pre_counts[:, None, :].clamp(min=1)
    ratio.masked_fill_((pre_counts == 0)[:, None, :], SILENT_RATIO)
    return ratio.masked_fill_((post_counts == 0)[:, :, None], SILENT_RATIO)


# ------------------------------------------------------------------------------------------------ P' tables
@dataclass(frozen=True)
class EffectTable:
    """Fitted mean S-PSP P_n(o) ≈ E[e | n pre spikes, o post spikes] for one (T, τ_m, τ_s, R) (spec A.4.2).

    ``coefficients[n − 1]`` holds P_n's polynomial in o (highest power first), n = 1..max_pre, fitted on
    o = 1..max_post; outside those ranges counts are clamped, as the reference clamps to [1, 100].
    """

    coefficients: np.ndarray  # (max_pre, degree + 1)
    max_post: int

    @property
    def max_pre(self) -> int:
        return int(self.coefficients.shape[0])

    def derivative_coefficients(self) -> np.ndarray:
        """(max_pre, degree): P'_n's coefficients, highest power first."""
        degree = self.coefficients.shape[1] - 1
        powers = np.arange(degree, 0, -1, dtype=np.float64)
        return self.coefficients[:, :-1] * powers

    def derivative(self, pre_counts: np.ndarray, post_counts: np.ndarray) -> np.ndarray:
        """P'_{n}(o) for arrays of counts (broadcast), 0 where either count is 0 (no spikes: e ≡ 0)."""
        pre_counts, post_counts = np.broadcast_arrays(np.asarray(pre_counts), np.asarray(post_counts))
        rows = self.derivative_coefficients()[np.clip(pre_counts, 1, self.max_pre).astype(np.int64) - 1]
        o = np.clip(post_counts, 1, self.max_post).astype(np.float64)
        value = np.zeros(o.shape)
        for k in range(rows.shape[-1]):
            value = value * o + rows[..., k]
        return np.where((pre_counts > 0) & (post_counts > 0), value, 0.0)


def _random_spike_times(rng: np.random.Generator, count: int, draws: int, time_steps: int,
                        gap: int) -> np.ndarray:
    """(draws, count) sorted spike steps, uniform among trains of ``count`` spikes at least ``gap`` steps apart."""
    free = time_steps - (count - 1) * (gap - 1)
    chosen = np.sort(np.argpartition(rng.random((draws, free)), count - 1, axis=1)[:, :count], axis=1)
    return chosen + np.arange(count) * (gap - 1)


def mean_readout_kernel(times: np.ndarray, time_steps: int, refractory_steps: int,
                        voltage_decay: float) -> np.ndarray:
    """The mean over trains of ``readout_kernel`` (T,), from spike steps (draws, o): +1 at each spike and
    −α^{t_m − t_{m−1} − R} at each restart t_{m−1} + R, accumulated sparsely."""
    alpha = 1.0 - voltage_decay
    kernel = np.bincount(times.ravel(), minlength=time_steps).astype(np.float64)
    if times.shape[1] > 1:
        restarts = times[:, :-1] + refractory_steps
        values = -(alpha ** (times[:, 1:] - restarts))
        kernel += np.bincount(restarts.ravel(), weights=values.ravel(), minlength=time_steps)
    return kernel / times.shape[0]


@functools.lru_cache(maxsize=8)
def effect_table(time_steps: int, tau_m: float, tau_s: float, refractory_steps: int, *, max_count: int = 100,
                 draws: int = 1000, seed: int = 0, degree: int = 4) -> EffectTable:
    """Our version of the reference's ``eij_function``: the mean S-PSP over random trains, a quartic in o per n.

    Post trains hold o spikes at least R + 1 steps apart (the neuron's refractory bound), uniformly among such
    trains, o = 1..min(max_count, ⌊(T + R)/(R + 1)⌋); pre trains hold n spikes at distinct uniform steps,
    n = 1..min(max_count, T). Pre and post are independent and e = A·Q is bilinear, so the mean S-PSP is
    E[A_o]·E[Q_n], and E[Q_n] is the unit response to the constant rate n/T: P_n(o) = (n/T)·E[A_o]·K exactly
    (the reference's rows are this line up to its Monte-Carlo noise). E[A_o] is a Monte-Carlo mean over
    ``draws`` trains of one seeded generator; the result is cached per argument set.
    """
    gap = refractory_steps + 1
    max_post = min(max_count, (time_steps + refractory_steps) // gap)
    max_pre = min(max_count, time_steps)
    rng = np.random.default_rng(seed)
    kernels = np.stack([
        mean_readout_kernel(_random_spike_times(rng, o, draws, time_steps, gap), time_steps, refractory_steps,
                            1.0 / tau_m)
        for o in range(1, max_post + 1)])  # (O, T): E[A_o]
    constant = torch.ones(time_steps, 1, 1, dtype=torch.float64)
    response = unit_responses(constant, 0, 1.0 / tau_s, 1.0 / tau_m)[0, :, 0]  # K: response to 1 per step
    per_rate = kernels @ response.numpy()  # (O,): E[A_o]·K
    mean = per_rate[:, None] * (np.arange(1, max_pre + 1) / time_steps)[None, :]  # (O, n)
    degree = min(degree, max_post - 1)
    if degree == 0:
        return EffectTable(np.ascontiguousarray(mean.T), max_post)
    coefficients = np.polyfit(np.arange(1, max_post + 1, dtype=np.float64), mean, degree).T
    return EffectTable(np.ascontiguousarray(coefficients), max_post)


def self_sensitivity(weight: Tensor, pre_counts: Tensor, post_counts: Tensor, table: EffectTable) -> Tensor:
    """ν·S (B, N): Σ_j w_ij·P'_{o_j}(o_i), without forming the (B, N, M) table of P' values."""
    derivative = torch.from_numpy(table.derivative_coefficients()).to(weight.device, weight.dtype)
    rows = derivative[pre_counts.clamp(1, table.max_pre).long() - 1] * (pre_counts > 0)[..., None]  # (B, M, K)
    weighted = torch.einsum("ij,bjk->bik", weight, rows)
    o = post_counts.clamp(1, table.max_post)
    degree = derivative.shape[1]
    powers = torch.stack([o ** (degree - 1 - k) for k in range(degree)], dim=-1)
    return (weighted * powers).sum(-1) * (post_counts > 0)


# ------------------------------------------------------------------------------------------------ one layer
class LayerTables(NamedTuple):
    """What a layer's backward needs; B samples, N neurons, M inputs from below."""

    effect: Tensor | None  # (B, N, M) e_ij (None where nothing is propagated below: then only ``factors``)
    ratio: Tensor | None  # (B, N, M) r_ij (None where nothing is propagated below)
    loop_effect: Tensor | None  # (B, N, N) e_ip of the layer's own spikes (recurrent or lateral)
    loop_ratio: Tensor | None  # (B, N, N)
    sensitivity: Tensor  # (B, N) S_i = (1/ν)·Σ w·P' over inputs from below and the loop
    factors: SpikeTrainProduct | None = None  # e = A·Q factored, for ∂E/∂W where ``effect`` is not formed


def layer_tables(pre: Tensor, delay: int, post: Tensor, weight: Tensor, loop_weight: Tensor | None,
                 threshold: float, architecture: RSNNArchitecture, table: EffectTable,
                 need_ratio: bool = True, filters: TrainFilters | None = None) -> LayerTables:
    """S-PSPs, effect ratios and S of one population from its spike trains (T, B, ·); weights in paper units.
    ``filters`` shares the trains' A and Q with the other layers of the same backward pass."""
    filters = TrainFilters(architecture) if filters is None else filters
    pre_counts, post_counts = pre.sum(0), post.sum(0)
    factors = filters.product(pre, delay, post)
    effect = factors.dense() if need_ratio else None
    ratio = effect_ratios(effect, pre_counts, post_counts) if need_ratio else None
    sensitivity = self_sensitivity(weight, pre_counts, post_counts, table)
    loop_effect = loop_ratio = None
    if loop_weight is not None:
        loop_effect = filters.product(post, 1, post).dense()
        loop_ratio = effect_ratios(loop_effect, post_counts, post_counts)
        sensitivity = sensitivity + self_sensitivity(loop_weight, post_counts, post_counts, table)
    return LayerTables(effect, ratio, loop_effect, loop_ratio, sensitivity / threshold, factors)


class LayerGradient(NamedTuple):
    weight: Tensor  # (N, M), summed over the batch
    loop_weight: Tensor | None  # (N, N)
    below: Tensor | None  # (B, M) ∂E/∂o of the layer below


def keep_from_zero(diagonal: Tensor, min_denominator: float) -> Tensor:
    """The diagonal of M with |M_ii| ≥ min_denominator, its sign kept (in place)."""
    sign = torch.where(diagonal < 0, -1.0, 1.0).to(diagonal.dtype)
    return diagonal.copy_(sign * diagonal.abs().clamp(min=min_denominator))


def system_matrix(tables: LayerTables, loop_weight: Tensor | None, threshold: float,
                  min_denominator: float) -> Tensor:
    """M (B, N, N) = I − diag(S) − (W^r ∘ r^r)/ν, its diagonal kept at |M_ii| ≥ min_denominator (sign kept)."""
    batch, size = tables.sensitivity.shape
    if loop_weight is None:
        matrix = torch.zeros(batch, size, size, dtype=tables.sensitivity.dtype, device=tables.sensitivity.device)
    else:
        matrix = -(loop_weight * tables.loop_ratio) / threshold
    diagonal = matrix.diagonal(dim1=1, dim2=2)
    diagonal += 1.0 - tables.sensitivity
    keep_from_zero(diagonal, min_denominator)
    return matrix


def layer_backward(tables: LayerTables, grad_counts: Tensor, weight: Tensor, loop_weight: Tensor | None,
                   threshold: float, *, solve: str = "exact", min_denominator: float = 1e-4) -> LayerGradient:
    """∂E/∂W (and ∂E/∂W^r, ∂E/∂o below) of one population from g = ∂E/∂o (B, N): β = M^{-T}·g, batched.
    Without a loop M is its diagonal, and only that is formed."""
    if loop_weight is None:
        diagonal = keep_from_zero(1.0 - tables.sensitivity, min_denominator)
        beta = grad_counts / diagonal
    else:
        matrix = system_matrix(tables, loop_weight, threshold, min_denominator)
        diagonal = matrix.diagonal(dim1=1, dim2=2)
        beta = torch.linalg.solve(matrix.transpose(1, 2), grad_counts.unsqueeze(-1)).squeeze(-1)
    scale = beta if solve == "exact" else grad_counts / diagonal
    if tables.effect is None:
        grad_weight = tables.factors.weighted_sum(scale) / threshold
    else:
        grad_weight = torch.einsum("bi,bij->ij", scale, tables.effect) / threshold
    grad_loop = None
    if loop_weight is not None:
        grad_loop = torch.einsum("bi,bij->ij", scale, tables.loop_effect) / threshold
    below = None
    if tables.ratio is not None:
        below = torch.einsum("bi,bij->bj", beta, weight * tables.ratio) / threshold
    return LayerGradient(grad_weight, grad_loop, below)


# ------------------------------------------------------------------------------------------------ network
def output_error(counts: Tensor, labels: Tensor, desired: float, undesired: float, margin: float) -> Tensor:
    """∂E/∂o (B, C) of E = Σ [|o − y| > m]·(o − y)² as the reference takes it (factor 2 dropped)."""
    target = torch.full_like(counts, undesired)
    target.scatter_(1, labels[:, None], desired)
    difference = counts - target
    return torch.where(difference.abs() > margin, difference, torch.zeros_like(difference))


def labels_from_gradient(grad_logits: Tensor, logits: Tensor) -> Tensor:
    """The label of each row of ∂CE/∂logits = (softmax − onehot)/B: its only negative entry; where softmax
    saturated to the one-hot itself (a zero row), the arg-max of the logits."""
    low, labels = grad_logits.min(dim=1)
    return torch.where(low < 0, labels, logits.argmax(dim=1))


def inject_label_spikes(output: Tensor, labels: Tensor, desired_rate: float) -> Tensor:
    """A copy of the output trains (T, B, C) where a silent label neuron fires every ⌊1/desired_rate⌋ steps."""
    time_steps = output.shape[0]
    interval = max(1, int(1.0 / desired_rate))
    rows = torch.arange(output.shape[1], device=output.device)
    silent = output.sum(0)[rows, labels] == 0
    if not bool(silent.any()):
        return output
    train = torch.zeros(time_steps, dtype=output.dtype, device=output.device)
    train[interval::interval] = 1.0
    patched = output.clone()
    patched[:, rows[silent], labels[silent]] = train[:, None]
    return patched


def regularizer_gradient(weight: Tensor, loop_weight: Tensor | None, loop_mask: Tensor | None, lam: float,
                         beta: float, limit: float) -> tuple[Tensor, Tensor | None]:
    """λβ·(w/L)·exp(β(s_i − 1)), s_i the mean of (w/L)² over neuron i's weights (spec A.8, with its denominators:
    fan-in + 1, plus every recurrent connection of the layer for a recurrent layer)."""
    squares = (weight / limit).square().sum(1)
    count = weight.shape[1] + 1
    if loop_weight is not None:
        squares = squares + (loop_weight / limit).square().sum(1)
        count += int(loop_mask.sum())
    factor = lam * beta * torch.exp(beta * (squares / count - 1.0))[:, None] / limit
    loop = None if loop_weight is None else factor * loop_weight * loop_mask
    return factor * weight, loop


def spike_train_gradients(model: RSNN, inputs: Tensor, spikes: list[Tensor], grad_output: Tensor,
                          config: STRSBPConfig, table: EffectTable,
                          labels: Tensor | None = None) -> list[LayerGradient]:
    """Per population (input side first), the spike-train level gradients for ∂E/∂o_output = ``grad_output``.

    ``labels`` (B,) enables the silent-label spike injection at the output (when the config asks for it).
    """
    architecture = model.architecture
    time_steps, batch = inputs.shape[:2]
    trains = [inputs.reshape(time_steps, batch, -1).to(torch.float64), *spikes]
    grad = grad_output.to(torch.float64)
    filters = TrainFilters(architecture)
    results: list[LayerGradient] = []
    for index in reversed(range(len(spikes))):
        population = model.populations[index]
        weight = population.weight.detach().to(torch.float64)
        loop = population.loop_weight()
        loop = None if loop is None else loop.detach().to(torch.float64)
        post = trains[index + 1]
        if index == len(spikes) - 1 and labels is not None and config.silent_label_spikes:
            post = inject_label_spikes(post, labels, config.desired_rate)
        threshold = architecture.thresholds[index]
        tables = layer_tables(trains[index], 0 if index == 0 else 1, post, weight, loop, threshold, architecture,
                              table, need_ratio=index > 0, filters=filters)
        result = layer_backward(tables, grad, weight, loop, threshold, solve=config.recurrent_solve,
                                min_denominator=config.min_denominator)
        if population.recurrent_weight is not None:
            result = result._replace(loop_weight=result.loop_weight * population.recurrent_mask)
        results.append(result)
        grad = result.below
    return results[::-1]


class STRSBPNetwork(nn.Module):
    """An RSNN whose forward attaches ST-RSBP's gradient in training. Input (T, B, *shape); logits = counts."""

    def __init__(self, rsnn: RSNN, config: STRSBPConfig) -> None:
        super().__init__()
        self.rsnn = rsnn
        self.config = config

    def trainable(self) -> list[Tensor]:
        """The parameters ST-RSBP trains, in the order ``parameter_gradients`` returns their gradients."""
        parameters = []
        for population in self.rsnn.populations:
            parameters.append(population.weight)
            if population.recurrent_weight is not None:
                parameters.append(population.recurrent_weight)
        return parameters

    def table(self, time_steps: int) -> EffectTable:
        c = self.config
        return effect_table(time_steps, float(c.tau_m), float(c.tau_s), int(c.refractory_steps),
                            draws=c.table_draws, seed=c.table_seed)

    def forward(self, inputs: Tensor) -> Tensor:
        spikes = self.rsnn.simulate(inputs)
        logits = spikes[-1].sum(0).to(self.rsnn.populations[0].weight.dtype)
        if self.training and torch.is_grad_enabled():
            rule = partial(self.parameter_gradients, inputs, spikes, logits.detach())
            logits = RuleGradient.apply(logits, rule, *self.trainable())
        return logits

    def parameter_gradients(self, inputs: Tensor, spikes: list[Tensor], logits: Tensor,
                            grad_logits: Tensor) -> list[Tensor]:
        """Gradients of ``trainable()`` for the loop's ∂CE/∂logits (see the module docstring for the labels)."""
        c = self.config
        time_steps, batch = inputs.shape[:2]
        labels = labels_from_gradient(grad_logits, logits)
        if c.loss == "spike_count":
            counts = spikes[-1].sum(0)
            grad_output = output_error(counts, labels, c.desired_rate * time_steps, c.undesired_rate * time_steps,
                                       c.margin_rate * time_steps) / batch
        else:
            grad_output = grad_logits
        layers = spike_train_gradients(self.rsnn, inputs, spikes, grad_output, c, self.table(time_steps), labels)
        grads = []
        for population, layer in zip(self.rsnn.populations, layers, strict=True):
            weight_grad, loop_grad = layer.weight, layer.loop_weight
            if c.regularizer_lambda > 0:
                loop = population.recurrent_weight
                extra, extra_loop = regularizer_gradient(
                    population.weight.detach().to(torch.float64),
                    None if loop is None else loop.detach().to(torch.float64), population.recurrent_mask,
                    c.regularizer_lambda, c.regularizer_beta, c.weight_limit)
                weight_grad = weight_grad + extra
                loop_grad = None if loop is None else loop_grad + extra_loop
            grads.append(weight_grad.to(population.weight.dtype))
            if population.recurrent_weight is not None:
                grads.append(loop_grad.to(population.weight.dtype))
        return grads


def build(config: STRSBPConfig, input_shape: tuple[int, ...], num_classes: int, time_steps: int,
          generator: torch.Generator) -> STRSBPNetwork:
    """An RSNN for ``input_shape`` (flattened), its weights drawn from ``generator``."""
    if time_steps < 1:
        raise ConfigError(f"time_steps must be at least 1, got {time_steps}")
    architecture = config.architecture(int(np.prod(input_shape)), num_classes)
    return STRSBPNetwork(RSNN(architecture, generator, config.initial_weight), config)


def to_netspec(module: nn.Module, config: STRSBPConfig, input_shape: tuple[int, ...], encoding: str,
               time_steps: int) -> NetSpec:
    """The trained RSNN as "cuba_refractory" populations whose readout is the output's spike counts."""
    network = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    if not isinstance(network, STRSBPNetwork):
        raise TypeError(f"expected an STRSBPNetwork built by pipeline.strsbp.build, got {type(network).__name__}")
    metadata = {"method": "strsbp", "layers": "-".join(config.layers), "recurrent_solve": config.recurrent_solve}
    return rsnn_netspec(network.rsnn, input_shape=input_shape, encoding=encoding, time_steps=time_steps,
                        metadata=metadata)


METHOD = Method(
    name="strsbp",
    model_config=STRSBPConfig,
    build=build,
    to_netspec=to_netspec,
    training_defaults={"optimizer": "adam", "learning_rate": 1e-3, "epochs": 100, "batch_size": 16,
                       "time_steps": 400},
    description="ST-RSBP (Zhang & Li 2019): spike-train level backprop through recurrent CUBA-LIF SNNs with a "
                "refractory period; recurrent layers solved exactly; target spike counts.",
)
