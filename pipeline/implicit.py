"""Implicit differentiation at an SNN's equilibrium: the one place IDE's gradient is computed.

The SNN's average rates a satisfy a ≈ f(a) (the fixed-point map of ``models.feedback``). Differentiating the
equilibrium gives, for a loss L read from a,

    ∂L/∂params = (∂f/∂params)ᵀ β,    (I − Jᵀ) β = g,    J = ∂f/∂a at the measured rates,  g = ∂L/∂a.

The rates come from a simulation run without a graph, so memory does not depend on the number of time steps:
autograd keeps one evaluation of f and the (B, N) rates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lavaflow.pipeline.solvers import Solver, SolverResult

TransposedJacobian = Callable[[Tensor], Callable[[Tensor], Tensor]]  # a ↦ (β ↦ Jᵀβ), J = ∂f/∂a at a


class _ImplicitGradient(torch.autograd.Function):
    """Forward: pass the measured rates on. Backward: turn ∂L/∂a into β and send it into f's graph."""

    @staticmethod
    def forward(ctx: Any, mapped: Tensor, rates: Tensor, rate_map: Callable[[Tensor], Tensor], solver: Solver,
                record: list[SolverResult] | None, transposed_jacobian: TransposedJacobian | None) -> Tensor:
        # `mapped` = f(rates) carries the graph into the parameters; the output's value is the SNN's own
        # rates (the reference code's "Replace" op), so the readout sees what the spiking network measured.
        ctx.rate_map, ctx.solver, ctx.record, ctx.transposed_jacobian = rate_map, solver, record, transposed_jacobian
        ctx.save_for_backward(rates)
        return rates.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (rates,) = ctx.saved_tensors
        with torch.enable_grad():
            if ctx.transposed_jacobian is not None:
                product = ctx.transposed_jacobian(rates.detach())
            else:  # Jᵀβ by autograd through f at the rates
                point = rates.detach().requires_grad_(True)
                mapped = ctx.rate_map(point)

                def product(beta: Tensor) -> Tensor:
                    return torch.autograd.grad(mapped, point, beta, retain_graph=True)[0]

            result = ctx.solver(lambda beta: product(beta) + grad_output, torch.zeros_like(grad_output))
        if ctx.record is not None:
            ctx.record.append(result)
        return result.solution, None, None, None, None, None


def implicit_backward(
    rate_map: Callable[[Tensor], Tensor],
    rates: Tensor,
    solver: Solver,
    record: list[SolverResult] | None = None,
    transposed_jacobian: TransposedJacobian | None = None,
) -> Tensor:
    """Return a tensor valued as ``rates`` whose gradient flows into ``rate_map``'s parameters implicitly.

    Forward evaluates f = ``rate_map`` once at the measured ``rates`` (with a graph into its parameters) and
    returns the rates themselves. Backward receives g = ∂L/∂a, solves β = Jᵀβ + g with ``solver`` (vector-Jacobian
    products of f at the rates, batched over the first dimension) and back-propagates β through f(rates).

    Args:
        rate_map: f, a → rates; its parameters (and inputs that need a gradient) receive the gradient. It is
            called again in backward to form Jᵀ products, so it must be deterministic (fixed dropout masks and
            normalisation statistics, no side effects).
        rates: (B, ...) equilibrium rates measured by simulating the SNN; used as a constant.
        solver: a solver with its options bound (``pipeline.solvers.get_solver``); it sees only the linear
            fixed-point problem, so Broyden and plain iteration are interchangeable.
        record: if given, each backward pass appends its ``SolverResult`` (for tests and diagnostics).
        transposed_jacobian: a ↦ (β ↦ Jᵀβ), the same products written out (``FeedbackSNN.transposed_jacobian``);
            the solve then makes no autograd call. Default: autograd through ``rate_map``.

    Returns:
        ``rates``' values, attached to the graph of ``rate_map(rates)``.
    """
    rates = rates.detach()
    mapped = rate_map(rates)
    if mapped.shape != rates.shape:
        raise ValueError(f"rate_map must return the rates' shape {tuple(rates.shape)}, got {tuple(mapped.shape)}")
    return _ImplicitGradient.apply(mapped, rates, rate_map, solver, record, transposed_jacobian)
