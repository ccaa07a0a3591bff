"""Fixed-point solvers: residuals, the lowest-residual iterate, the name table (pipeline.solvers)."""

from __future__ import annotations

import doctest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline import solvers
from lavaflow.pipeline.solvers import SOLVERS, broyden, fixed_point, get_solver


def linear_problem(contraction: float, batch: int = 3, size: int = 40, seed: int = 0):
    """f(z) = A z + b with A symmetric, eigenvalues spread over [−contraction, contraction]; exact z = (I − A)⁻¹ b."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(batch, size, size, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(-contraction, contraction, size, dtype=torch.float64).expand(batch, size)
    matrix = basis @ torch.diag_embed(eigenvalues) @ basis.transpose(1, 2)
    offset = torch.randn(batch, size, generator=generator, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.bmm(matrix, z.unsqueeze(2)).squeeze(2) + offset

    exact = torch.linalg.solve(torch.eye(size, dtype=torch.float64) - matrix, offset)
    return f, exact


def relative_residual(f, z: torch.Tensor) -> torch.Tensor:
    value = f(z)
    return (value - z).flatten(1).norm(dim=1) / value.flatten(1).norm(dim=1)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_residual_below_tolerance_on_a_contractive_linear_problem(name):
    f, exact = linear_problem(contraction=0.8)
    result = SOLVERS[name](f, torch.zeros_like(exact), max_iterations=200, tolerance=1e-10)
    assert result.converged
    assert torch.all(result.residual <= 1e-10)
    # The reported residual is the solution's own, recomputed here.
    torch.testing.assert_close(relative_residual(f, result.solution), result.residual, rtol=1e-6, atol=1e-14)
    # Relative residual r bounds the error: ‖z − z*‖ ≤ ‖(I − A)⁻¹‖·‖f(z) − z‖ ≤ 5·r·‖f(z)‖ for ‖A‖ ≤ 0.8.
    error = (result.solution - exact).norm(dim=1) / exact.norm(dim=1)
    assert torch.all(error < 1e-8)
    assert result.residual_history.shape == (result.iterations, 3)


def test_broyden_needs_fewer_evaluations_than_plain_iteration_on_a_weak_contraction():
    # Plain iteration shrinks the slowest error component by only 0.97 per step (hundreds of steps to 1e-6);
    # Broyden learns the spectrum from its updates.
    f, exact = linear_problem(contraction=0.97)
    fast = broyden(f, torch.zeros_like(exact), max_iterations=1000, tolerance=1e-6)
    slow = fixed_point(f, torch.zeros_like(exact), max_iterations=1000, tolerance=1e-6)
    assert fast.converged and slow.converged
    assert slow.iterations > 200 and fast.iterations * 4 < slow.iterations


def scripted_map(values: list[float]):
    """A map that ignores its argument and returns the scripted values in turn: it fixes every iterate."""
    remaining = iter(values)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.full_like(z, next(remaining))

    return f


def test_fixed_point_returns_the_lowest_residual_iterate():
    # Iterates are z0 = 0 then the previous values: 0, 1, 2, 2.1, 5 with values 1, 2, 2.1, 5, 20, so the residuals
    # |v_k − z_k| / |v_k| are 1, 1/2, 0.1/2.1, 2.9/5, 15/20: the best is the third iterate, z = 2.
    result = fixed_point(
        scripted_map([1, 2, 2.1, 5, 20]), torch.zeros(1, 1, dtype=torch.float64), max_iterations=5, tolerance=0.0
    )
    expected = torch.tensor([1, 0.5, 0.1 / 2.1, 2.9 / 5, 0.75], dtype=torch.float64)
    torch.testing.assert_close(result.residual_history[:, 0], expected)
    assert result.solution.item() == 2.0
    assert result.residual.item() == pytest.approx(0.1 / 2.1)
    assert result.iterations == 5 and not result.converged


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), iterations=st.integers(2, 12), name=st.sampled_from(sorted(SOLVERS)))
def test_each_sample_gets_its_lowest_residual_iterate(seed, iterations, name):
    # A non-contractive map (spectral radius up to 1.5): neither solver converges monotonically.
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(4, 6, 6, generator=generator, dtype=torch.float64) * 0.6
    offset = torch.randn(4, 6, generator=generator, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.bmm(matrix, z.unsqueeze(2)).squeeze(2) + offset

    result = SOLVERS[name](f, torch.zeros(4, 6, dtype=torch.float64), max_iterations=iterations, tolerance=0.0)
    torch.testing.assert_close(result.residual, result.residual_history.min(0).values)
    torch.testing.assert_close(relative_residual(f, result.solution), result.residual)


def test_samples_stop_together_when_all_converge():
    f, exact = linear_problem(contraction=0.5, batch=2)
    result = fixed_point(f, torch.zeros_like(exact), max_iterations=500, tolerance=1e-8)
    # Error after k plain steps from 0 is ≤ 0.5^k·‖z*‖, so 1e-8 is reached within ~30 steps, long before 500.
    assert result.converged and result.iterations < 40
    assert torch.all(result.residual_history[-1] <= 1e-8)


def test_unknown_solver_name_lists_the_names():
    with pytest.raises(ConfigError) as error:
        get_solver("anderson", max_iterations=10, tolerance=1e-4)
    assert set(SOLVERS) == {"broyden", "fixed_point"}
    assert "anderson" in str(error.value)
    assert "broyden" in str(error.value) and "fixed_point" in str(error.value)


def test_get_solver_binds_options():
    solver = get_solver("fixed_point", max_iterations=3, tolerance=0.0)
    result = solver(torch.cos, torch.zeros(2, 1))
    assert result.iterations == 3
    # z0 = 0, z1 = cos 0 = 1, z2 = cos 1; the last residual is |cos(cos 1) − cos 1| / |cos(cos 1)|.
    last = torch.cos(torch.cos(torch.tensor(1.0)))
    expected = (last - torch.cos(torch.tensor(1.0))).abs() / last
    torch.testing.assert_close(result.residual_history[-1], expected.expand(2))


@pytest.mark.parametrize(
    "options", [{"max_iterations": 0, "tolerance": 1e-4}, {"max_iterations": 5, "tolerance": -1.0}]
)
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        get_solver("broyden", **options)


def test_docstring_examples_run():
    failures, attempted = doctest.testmod(solvers, raise_on_error=False)
    assert attempted >= 2 and failures == 0
