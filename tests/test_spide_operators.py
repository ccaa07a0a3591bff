"""SPIDE's numpy edge maps (processes/spide_maps.py, what the Lava graph's fused model applies) against the
torch operators the torch SPIDE runs (models/spide_network.py): forward, adjoint, weight and bias gradients over
strides, paddings, output paddings and pooling sizes, on random values, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lavaflow.models import spide_network
from lavaflow.pipeline.lava.spide_graph import lava_operator

GEOMETRIES = [  # (layer or feedback string, input shape, output shape of the feedback's target)
    ("conv 4 k3", (2, 7, 7), None),
    ("conv 3 k3 p1", (2, 5, 6), None),
    ("conv 5 k3 s2 p1", (3, 7, 7), None),  # the stride drops the last row and column
    ("conv 2 k5 s2 p2", (1, 8, 8), None),
    ("conv 6 k1", (4, 3, 3), None),
    ("pool 2", (3, 4, 6), None),
    ("pool 4", (2, 8, 4), None),
    ("convT k3 s2 p1 op1", (5, 4, 4), (3, 8, 8)),
    ("convT k2 s2", (4, 3, 3), (2, 6, 6)),
    ("convT k3 s2 p1", (2, 4, 4), (3, 7, 7)),
    ("conv k3 p1", (4, 5, 5), (2, 5, 5)),
]


def _operator(text: str, input_shape: tuple[int, ...], target: tuple[int, ...] | None) -> spide_network.Operator:
    if target is None:
        return spide_network.layer_operator(text, input_shape, "test")
    return spide_network.feedback_operator(text, input_shape, target)


@pytest.mark.parametrize(("text", "input_shape", "target"), GEOMETRIES)
def test_numpy_maps_equal_the_torch_operators(text: str, input_shape: tuple[int, ...],
                                              target: tuple[int, ...] | None) -> None:
    generator = torch.Generator().manual_seed(len(text) + sum(input_shape))
    operator = _operator(text, input_shape, target)
    ours = lava_operator(operator)
    batch = 3
    x = torch.randn((batch, *operator.input_shape), generator=generator, dtype=torch.float64)
    error = torch.randn((batch, *operator.output_shape), generator=generator, dtype=torch.float64)
    weight = (torch.randn(operator.weight_shape, generator=generator, dtype=torch.float64)
              if operator.weight_shape else None)
    flat = {"x": x.flatten(1).numpy(), "error": error.flatten(1).numpy(),
            "weight": None if weight is None else weight.numpy()}

    expected = operator.apply(x, weight, None).flatten(1).numpy()
    np.testing.assert_allclose(ours.apply(flat["x"], flat["weight"]), expected, rtol=0, atol=1e-12)
    expected_adjoint = operator.adjoint(error, weight).flatten(1).numpy()
    adjoint = ours.adjoint(flat["error"], flat["weight"])
    np.testing.assert_allclose(adjoint, expected_adjoint, rtol=0, atol=1e-12)
    # the adjoint is the transpose: ⟨A·x, e⟩ = ⟨x, Aᵀ·e⟩ (independent of torch)
    forward = ours.apply(flat["x"], flat["weight"])
    assert float(np.sum(forward * flat["error"])) == pytest.approx(float(np.sum(flat["x"] * adjoint)), rel=1e-12)
    if weight is None:
        assert ours.weight_shape is None and ours.bias_shape is None
        return
    expected_weight, expected_bias = operator.weight_gradient(x, error)
    np.testing.assert_allclose(ours.weight_gradient(flat["x"], flat["error"]), expected_weight.numpy(), rtol=0,
                               atol=1e-11)
    np.testing.assert_allclose(ours.bias_gradient(flat["error"]), expected_bias.numpy(), rtol=0, atol=1e-12)
    bias = torch.randn(ours.bias_shape, generator=generator, dtype=torch.float64)
    if not isinstance(operator, spide_network.ConvTranspose):  # the transposed conv carries no bias in SPIDE
        with_bias = operator.apply(x, weight, bias).flatten(1).numpy()
        np.testing.assert_allclose(forward + ours.expand_bias(bias.numpy()), with_bias, rtol=0, atol=1e-12)
