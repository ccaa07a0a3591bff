"""The implicit-gradient autograd function against a dense linear solve (pipeline.implicit)."""

from __future__ import annotations

import pytest
import torch

from lavaflow.pipeline.implicit import implicit_backward
from lavaflow.pipeline.solvers import SOLVERS, get_solver


def clamp_network(seed: int, batch: int = 3, size: int = 16):
    """f(a) = clamp((W a + F x + b) / 2, 0, 1) with ‖W‖₂ = 1.2 (so ‖J‖ ≤ 0.6), IDE's single-layer map."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(size, size, generator=generator, dtype=torch.float64)
    weight = (1.2 * weight / torch.linalg.matrix_norm(weight, 2)).requires_grad_()
    input_weight = torch.randn(size, 5, generator=generator, dtype=torch.float64).requires_grad_()
    bias = torch.randn(size, generator=generator, dtype=torch.float64).requires_grad_()
    inputs = torch.rand(batch, 5, generator=generator, dtype=torch.float64).requires_grad_()

    def rate_map(rates: torch.Tensor) -> torch.Tensor:
        return torch.clamp((rates @ weight.T + inputs @ input_weight.T + bias) / 2, 0, 1)

    rates = torch.rand(batch, size, generator=generator, dtype=torch.float64)  # a measured, not exact, equilibrium
    readout = torch.randn(4, size, generator=generator, dtype=torch.float64)
    targets = torch.tensor([0, 3, 1])
    return rate_map, rates, (weight, input_weight, bias, inputs), readout, targets


def loss_of(rates: torch.Tensor, readout: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(rates @ readout.T, targets)


def exact_gradients(rate_map, rates, leaves, readout, targets) -> list[torch.Tensor]:
    """(∂f/∂θ)ᵀ β with β = (I − Jᵀ)⁻¹ g solved densely; J is block-diagonal over the batch."""
    point = rates.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss_of(point, readout, targets), point)
    jacobian = torch.autograd.functional.jacobian(lambda flat: rate_map(flat.reshape(rates.shape)).flatten(),
                                                  rates.flatten())
    identity = torch.eye(jacobian.shape[0], dtype=jacobian.dtype)
    beta = torch.linalg.solve(identity - jacobian.T, g.flatten()).reshape(rates.shape)
    return list(torch.autograd.grad(rate_map(rates), leaves, beta))


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parameter_gradient_equals_dense_implicit_solve(name, seed):
    rate_map, rates, leaves, readout, targets = clamp_network(seed)
    expected = exact_gradients(rate_map, rates, leaves, readout, targets)
    record: list = []
    solver = get_solver(name, max_iterations=100, tolerance=1e-12)
    loss_of(implicit_backward(rate_map, rates, solver, record), readout, targets).backward()
    for leaf, want in zip(leaves, expected, strict=True):
        torch.testing.assert_close(leaf.grad, want, rtol=1e-9, atol=1e-12)
    (result,) = record
    assert result.converged and result.residual.max() <= 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_a_written_out_transposed_jacobian_gives_the_same_gradient(seed):
    rate_map, rates, leaves, readout, targets = clamp_network(seed)
    expected = exact_gradients(rate_map, rates, leaves, readout, targets)
    weight, input_weight, bias, inputs = leaves
    calls = []

    def transposed_jacobian(point: torch.Tensor):
        with torch.no_grad():
            z = (point @ weight.T + inputs @ input_weight.T + bias) / 2
            factor = ((z >= 0) & (z <= 1)).to(z.dtype) / 2

        def product(beta: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return (beta * factor) @ weight.detach()

        return product

    solver = get_solver("broyden", max_iterations=100, tolerance=1e-12)
    loss_of(implicit_backward(rate_map, rates, solver, transposed_jacobian=transposed_jacobian), readout,
            targets).backward()
    assert calls  # the solve used the written-out product
    for leaf, want in zip(leaves, expected, strict=True):
        torch.testing.assert_close(leaf.grad, want, rtol=1e-9, atol=1e-12)


def test_forward_value_is_the_measured_rates_not_the_map():
    rate_map, rates, *_ = clamp_network(0)
    output = implicit_backward(rate_map, rates, get_solver("broyden", max_iterations=5, tolerance=1e-6))
    assert not torch.equal(rate_map(rates), rates)  # the measured rates are not an exact fixed point
    assert torch.equal(output, rates)
    assert output.requires_grad


def test_gradient_is_not_the_one_step_gradient():
    # Without the solve (β = g) the gradient would be (∂f/∂θ)ᵀ g; IDE's differs from it by the feedback term.
    rate_map, rates, leaves, readout, targets = clamp_network(0)
    implicit = exact_gradients(rate_map, rates, leaves, readout, targets)
    point = rates.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss_of(point, readout, targets), point)
    one_step = torch.autograd.grad(rate_map(rates), leaves, g)
    difference = (implicit[0] - one_step[0]).norm() / implicit[0].norm()
    assert difference > 0.05


def test_wrong_rate_map_shape_raises():
    rates = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        implicit_backward(lambda a: a.sum(1), rates, get_solver("broyden", max_iterations=3, tolerance=0.0))
