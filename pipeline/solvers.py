"""Fixed-point solvers of one signature, picked by name: ``solve(f, z0, *, max_iterations, tolerance)``.

Each solver looks for z = f(z), batched over the first dimension of ``z0``: sample i's residual is
``‖f(z_i) − z_i‖ / ‖f(z_i)‖`` (relative, so the tolerance does not depend on the scale of the loss gradient),
the run stops once every sample is at or below ``tolerance`` (or, with ``batch_tolerance`` > 0, once the whole
batch's absolute residual ‖f(z) − z‖ is at most ``batch_tolerance``·√(z.numel()), the IDE reference code's rule),
and each sample returns its lowest-residual iterate (Broyden's steps are not monotone). IDE's backward pass uses
them on the linear problem β = Jᵀβ + g; they know nothing about it and work for any map (the examples find the
fixed point of cos).

Options beyond the signature are bound with ``functools.partial`` (see ``get_solver``), never passed as kwargs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from lavaflow.models.errors import ConfigError

# Broyden keeps at most this many rank-one updates of its inverse-Jacobian estimate (the oldest are dropped):
# memory is 2·BROYDEN_MEMORY·z0.numel() numbers, enough for the ≤ 30 iterations IDE uses.
BROYDEN_MEMORY = 30


@dataclass(frozen=True)
class SolverResult:
    """What a solver found.

    Attributes:
        solution: z0's shape; per sample, the iterate with the lowest residual.
        residual: (B,) relative residual of each sample's ``solution``.
        residual_history: (evaluations, B) relative residual of each evaluated iterate, in order.
        iterations: evaluations of f made.
        converged: every sample's residual is at or below the tolerance, or the batch met ``batch_tolerance``.
    """

    solution: Tensor
    residual: Tensor
    residual_history: Tensor
    iterations: int
    converged: bool


Map = Callable[[Tensor], Tensor]


class Solver(Protocol):
    """A solver with its options bound: ``solver(f, z0) -> SolverResult``."""

    def __call__(self, f: Map, z0: Tensor) -> SolverResult: ...


def _check_options(max_iterations: int, tolerance: float, batch_tolerance: float = 0.0) -> None:
    if not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be non-negative, got {tolerance!r}")
    if not batch_tolerance >= 0:
        raise ValueError(f"batch_tolerance must be non-negative, got {batch_tolerance!r}")


def _relative_residual(value: Tensor, point: Tensor) -> Tensor:
    """(B,) ‖f(z) − z‖ / ‖f(z)‖ per sample; 0 where f(z) = z = 0."""
    difference = (value - point).flatten(1).norm(dim=1)
    scale = value.flatten(1).norm(dim=1)
    return difference / scale.clamp_min(torch.finfo(value.dtype).tiny)


class _Best:
    """Per sample, the iterate with the lowest residual seen so far; and whether the stopping rule is met."""

    def __init__(self, point: Tensor, residual: Tensor, tolerance: float, batch_limit: float, absolute: Tensor) -> None:
        self.point = point.clone()
        self.residual = residual.clone()
        self.history = [residual.clone()]
        self.tolerance, self.batch_limit = tolerance, batch_limit
        self.batch_met = self._batch_met(absolute)

    def _batch_met(self, absolute: Tensor) -> bool:
        return self.batch_limit > 0 and bool(absolute <= self.batch_limit)

    def done(self) -> bool:
        """Every sample is within the relative tolerance, or the latest iterate met the whole-batch rule."""
        return self.batch_met or bool((self.residual <= self.tolerance).all())

    def offer(self, point: Tensor, residual: Tensor, absolute: Tensor) -> None:
        self.batch_met = self.batch_met or self._batch_met(absolute)
        self.history.append(residual.clone())
        better = residual < self.residual
        if bool(better.all()):  # the usual case: every sample improved (callers never modify ``point`` later)
            self.residual, self.point = residual, point
            return
        self.residual = torch.where(better, residual, self.residual)
        mask = better.reshape(-1, *([1] * (point.dim() - 1)))
        self.point = torch.where(mask, point, self.point)

    def result(self) -> SolverResult:
        return SolverResult(
            solution=self.point,
            residual=self.residual,
            residual_history=torch.stack(self.history),
            iterations=len(self.history),
            converged=self.done(),
        )


def _batch_limit(batch_tolerance: float, z0: Tensor) -> float:
    """The whole-batch residual bound: batch_tolerance·√(number of entries), as the reference code's Broyden."""
    return batch_tolerance * z0.numel() ** 0.5


def fixed_point(f: Map, z0: Tensor, *, max_iterations: int, tolerance: float,
                batch_tolerance: float = 0.0) -> SolverResult:
    """Plain iteration z ← f(z); converges for a contraction at its contraction rate.

    For IDE's linear problem this is β ← Jᵀβ + g, whose fixed point is (I − Jᵀ)⁻¹g. (The reference code's
    ``iter`` averages with the current iterate, v ← (Jᵀv + g)/2, and so converges to (2I − Jᵀ)⁻¹g instead.)

    Example:
        >>> result = fixed_point(torch.cos, torch.zeros(1, 1), max_iterations=100, tolerance=1e-6)
        >>> round(result.solution.item(), 5), result.converged
        (0.73909, True)
    """
    _check_options(max_iterations, tolerance, batch_tolerance)
    limit = _batch_limit(batch_tolerance, z0)
    point = z0
    value = f(point)
    best = _Best(point, _relative_residual(value, point), tolerance, limit, (value - point).norm())
    while len(best.history) < max_iterations and not best.done():
        point = value
        value = f(point)
        best.offer(point, _relative_residual(value, point), (value - point).norm())
    return best.result()


def broyden(f: Map, z0: Tensor, *, max_iterations: int, tolerance: float,
            batch_tolerance: float = 0.0) -> SolverResult:
    """Broyden's ("good") method on g(z) = f(z) − z with a low-rank inverse-Jacobian estimate, full steps.

    H ≈ (∂g/∂z)⁻¹ starts at −I (so the first step is a fixed-point step) and is kept as −I + Σ uᵢvᵢᵀ, one pair
    per step (at most ``BROYDEN_MEMORY``): after a step Δz with change Δg, u = (Δz − HΔg)/(ΔzᵀHΔg), v = HᵀΔz.
    Each sample of the batch has its own estimate. On a linear problem it needs far fewer evaluations than
    plain iteration when the contraction is weak.

    Example:
        >>> result = broyden(torch.cos, torch.zeros(1, 1), max_iterations=30, tolerance=1e-6)
        >>> round(result.solution.item(), 5), result.converged, result.iterations < 10
        (0.73909, True, True)
    """
    _check_options(max_iterations, tolerance, batch_tolerance)
    limit = _batch_limit(batch_tolerance, z0)
    batch = z0.shape[0]
    point = z0.reshape(batch, -1)
    shape = z0.shape

    def g(z: Tensor) -> tuple[Tensor, Tensor]:
        value = f(z.reshape(shape)).reshape(batch, -1)
        return value - z, value

    capacity = max(1, min(BROYDEN_MEMORY, max_iterations - 1))
    # (B, m, D) rows uᵢ and vᵢ; the buffers double as needed up to `capacity` rows (memory follows the iterations
    # actually made), then row stored % capacity is overwritten (the order of the sum is irrelevant).
    update_u = point.new_empty(batch, min(8, capacity), point.shape[1])
    update_v = torch.empty_like(update_u)
    stored = 0

    def low_rank(left: Tensor, right: Tensor, x: Tensor) -> Tensor:  # −x + Σᵢ leftᵢ (rightᵢ · x)
        used = min(stored, capacity)
        # Products and sums rather than bmm: batched matrix-vector bmm is several times slower on CPU.
        coefficients = (right[:, :used] * x.unsqueeze(1)).sum(2, keepdim=True)  # (B, m, 1)
        return (left[:, :used] * coefficients).sum(1) - x

    def apply_inverse(x: Tensor) -> Tensor:  # H·x
        return low_rank(update_u, update_v, x)

    def apply_inverse_transposed(x: Tensor) -> Tensor:  # Hᵀ·x
        return low_rank(update_v, update_u, x)

    residual_vector, value = g(point)
    best = _Best(point.reshape(shape), _relative_residual(value, point), tolerance, limit, residual_vector.norm())
    inverse_residual = -residual_vector  # H·g, H = −I
    while len(best.history) < max_iterations and not best.done():
        step = -inverse_residual
        new_point = point + step
        new_residual_vector, value = g(new_point)
        best.offer(new_point.reshape(shape), _relative_residual(value, new_point), new_residual_vector.norm())
        if len(best.history) >= max_iterations or best.done():
            break  # no further step would use this update
        change = new_residual_vector - residual_vector
        # H·Δg = H·g' − H·g = H·g' + Δz: one product with H per step serves this update and the next step.
        inverse_new = apply_inverse(new_residual_vector)
        v = apply_inverse_transposed(step)
        denominator = (v * change).sum(1, keepdim=True)  # Δzᵀ H Δg
        scale = v.norm(dim=1, keepdim=True) * change.norm(dim=1, keepdim=True)
        usable = denominator.abs() > torch.finfo(point.dtype).eps * scale  # else skip this sample's update
        every = bool(usable.all())
        u = -inverse_new / (denominator if every else torch.where(usable, denominator, 1.0))  # (Δz − HΔg) / …
        if stored == update_u.shape[1] < capacity:
            extra = point.new_empty(batch, min(capacity, 2 * stored) - stored, point.shape[1])
            update_u, update_v = torch.cat([update_u, extra], 1), torch.cat([update_v, extra], 1)
        row, overwrite = stored % capacity, stored >= capacity
        update_u[:, row] = u if every else torch.where(usable, u, 0.0)
        update_v[:, row] = v if every else torch.where(usable, v, 0.0)
        stored += 1
        if overwrite:  # the oldest pair left H as well: apply the new H in full
            inverse_residual = apply_inverse(new_residual_vector)
        else:  # H⁺·g' = H·g' + u (v·g')
            inverse_residual = inverse_new + update_u[:, row] * (update_v[:, row] * new_residual_vector).sum(
                1, keepdim=True)
        point, residual_vector = new_point, new_residual_vector
    return best.result()


SOLVERS: dict[str, Callable[..., SolverResult]] = {"broyden": broyden, "fixed_point": fixed_point}


def get_solver(name: str, *, max_iterations: int, tolerance: float, batch_tolerance: float = 0.0) -> Solver:
    """Return the solver called ``name`` with its options bound; ConfigError lists the names otherwise."""
    if name not in SOLVERS:
        raise ConfigError(f"unknown solver {name!r}; choose one of: {', '.join(sorted(SOLVERS))}")
    _check_options(max_iterations, tolerance, batch_tolerance)
    return functools.partial(SOLVERS[name], max_iterations=max_iterations, tolerance=tolerance,
                             batch_tolerance=batch_tolerance)
