"""BatchNorm on an input layer's drive F·x̄ + b: exact training-set statistics and the fold into F and b.

IDE (``models.feedback``) and SPIDE (``models.spide_network``) both normalise the current their input layer drives
into layer 0 with BatchNorm: batch statistics in training, and for evaluation and export statistics that the
training loop recomputes exactly from the whole training set after every epoch (``batch_norm_statistics:
exact``). This module holds what both need: the statistics (``input_moments`` + ``dense_statistics`` for a dense
F, ``drive_statistics`` for any drive), their refresh (``store_exact_statistics``) and ``fold``, which turns
BatchNorm(F·x + b) into F'·x + b'. (The SPIDE Lava graph's fused model computes the dense statistics and the fold
again in numpy: processes depend on Lava and numpy only.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor, nn


class InputMoments(NamedTuple):
    """Sample count, mean (D,) and covariance (D, D; divided by the count) of flattened mean inputs, in float64:
    all that the statistics of a dense layer's drive W·x + b need, for any W and b."""

    count: int
    mean: Tensor
    covariance: Tensor


@torch.no_grad()
def input_moments(mean_inputs: Iterable[Tensor]) -> InputMoments:
    """The InputMoments of every batch (B, *input_shape) of ``mean_inputs`` (one pass; sums about the first
    batch's mean, in float64)."""
    shift = first = second = None
    count = 0
    for average in mean_inputs:
        values = average.flatten(1).to(torch.float64)
        shift = values.mean(0) if shift is None else shift
        centred = values - shift
        first = centred.sum(0) if first is None else first + centred.sum(0)
        second = centred.T @ centred if second is None else second + centred.T @ centred
        count += values.shape[0]
    if shift is None or first is None or second is None or count < 2:
        raise ValueError("BatchNorm statistics need at least two samples; the data gave fewer")
    offset = first / count
    return InputMoments(count, shift + offset, second / count - torch.outer(offset, offset))


@torch.no_grad()
def dense_statistics(weight: Tensor, bias: Tensor, moments: InputMoments) -> tuple[Tensor, Tensor]:
    """Mean and unbiased variance of a dense drive W·x + b over the samples ``moments`` describe (W's dtype)."""
    flat = weight.detach().flatten(1).to(torch.float64)
    mean = flat @ moments.mean + bias.detach().to(torch.float64)
    variance = ((flat @ moments.covariance) * flat).sum(1).clamp_min(0) * moments.count / (moments.count - 1)
    return mean.to(weight.dtype), variance.to(weight.dtype)


@torch.no_grad()
def drive_statistics(drives: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-channel (dim 1) mean and unbiased variance over every batch of ``drives`` (B, C, ...): what BatchNorm's
    batch statistics would give on one batch holding all of them. Sums in float64, so the figures do not depend
    on the batch size; the results come back in the drives' dtype."""
    total = squares = None
    count, dtype = 0, torch.float32
    for drive in drives:
        dtype = drive.dtype
        values = drive.transpose(0, 1).reshape(drive.shape[1], -1).to(torch.float64)  # (channels, values)
        total = values.sum(1) if total is None else total + values.sum(1)
        squares = values.square().sum(1) if squares is None else squares + values.square().sum(1)
        count += values.shape[1]
    if total is None or squares is None or count < 2:
        raise ValueError("BatchNorm statistics need at least two values per channel; the data gave fewer")
    mean = total / count
    variance = (squares - count * mean.square()).clamp_min(0) / (count - 1)
    return mean.to(dtype), variance.to(dtype)


@torch.no_grad()
def store_exact_statistics(norm: nn.modules.batchnorm._BatchNorm, weight: Tensor, bias: Tensor,
                           mean_inputs: Iterable[Tensor], drive: Callable[[Tensor], Tensor] | None = None,
                           moments: InputMoments | None = None) -> InputMoments | None:
    """Set ``norm``'s running statistics to the exact ones of the drive F·x̄ + b over ``mean_inputs`` (the
    training set's λ-weighted mean inputs, batch by batch). A conv F passes its ``drive`` (x̄ ↦ F·x̄ + b) and is
    summed batch by batch; a dense F needs only the inputs' moments, computed at the first call and passed back
    in later (``moments``, returned): later refreshes then cost one n_out × n_in × n_in product instead of a pass
    over the data. Returns the moments (None for a conv F)."""
    if drive is not None:
        mean, variance = drive_statistics(drive(average) for average in mean_inputs)
    else:
        moments = moments if moments is not None else input_moments(mean_inputs)
        mean, variance = dense_statistics(weight, bias, moments)
    norm.running_mean.copy_(mean)
    norm.running_var.copy_(variance)
    return moments


def fold(norm: nn.modules.batchnorm._BatchNorm, weight: Tensor, bias: Tensor, mean: Tensor,
         variance: Tensor) -> tuple[Tensor, Tensor]:
    """(F', b') with F'·x + b' = BatchNorm(F·x + b) for the per-channel ``mean`` and ``variance`` given (the batch's
    in training, the stored ones otherwise): F' = s·F, b' = s·(b − μ) + β, s = γ/√(σ² + ε), per output channel
    (F's first axis). Differentiable in every argument: in training the gradient reaches γ, β, F and b through
    the batch statistics, as BatchNorm's own backward does."""
    scale = norm.weight * torch.rsqrt(variance + norm.eps)
    return weight * scale.reshape(-1, *[1] * (weight.dim() - 1)), scale * (bias - mean) + norm.bias
