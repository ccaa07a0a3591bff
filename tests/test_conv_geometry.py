"""NetSpec v2 conv geometry: dilation, groups and pooling (pool_conv) against numpy loops written here; the quantiser's
bounds with groups; Lava float spike for spike and fixed bit for bit with the reference (fused and plain graphs); and
NetSpec files written before dilation and groups existed."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from lavaflow.deploy.lowering import conv_matrix, convolution
from lavaflow.deploy.quantize import dequantize, quantize
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import activation_bounds
from lavaflow.models.netspec import (
    Connection,
    Conv,
    Dense,
    Input,
    NetSpec,
    Readout,
    SoftResetNeurons,
    assert_netspec_equal,
    pool_conv,
)
from lavaflow.models.reference import _synapse, simulate
from lavaflow.pipeline.lava.run import run_lava

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only: these graphs run in seconds


# ------------------------------------------------------------------------------------------ oracles
def _conv_loops(image: np.ndarray, kernel: np.ndarray, stride, padding, dilation, groups: int) -> np.ndarray:
    """torch's conv2d (cross-correlation, zero padding) of one (C_in, H, W) image, one multiply-add at a time."""
    _, height, width = image.shape
    c_out, in_group, k_h, k_w = kernel.shape
    out_group = c_out // groups
    out_h = (height + 2 * padding[0] - dilation[0] * (k_h - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (k_w - 1) - 1) // stride[1] + 1
    out = np.zeros((c_out, out_h, out_w))
    for o, y, x in itertools.product(range(c_out), range(out_h), range(out_w)):
        total = 0.0
        for i, dy, dx in itertools.product(range(in_group), range(k_h), range(k_w)):
            in_y = y * stride[0] - padding[0] + dy * dilation[0]
            in_x = x * stride[1] - padding[1] + dx * dilation[1]
            if 0 <= in_y < height and 0 <= in_x < width:
                total += kernel[o, i, dy, dx] * image[(o // out_group) * in_group + i, in_y, in_x]
        out[o, y, x] = total
    return out


def _pool_loops(image: np.ndarray, kind: str, kernel, stride, padding) -> np.ndarray:
    """SumPool2d / AvgPool2d (zero padding counted in the average, as torch's default) by windows."""
    channels, height, width = image.shape
    padded = np.zeros((channels, height + 2 * padding[0], width + 2 * padding[1]))
    padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width] = image
    out_h = (padded.shape[1] - kernel[0]) // stride[0] + 1
    out_w = (padded.shape[2] - kernel[1]) // stride[1] + 1
    out = np.zeros((channels, out_h, out_w))
    for c, y, x in itertools.product(range(channels), range(out_h), range(out_w)):
        window = padded[c, y * stride[0] : y * stride[0] + kernel[0], x * stride[1] : x * stride[1] + kernel[1]]
        out[c, y, x] = window.sum() if kind == "sum" else window.mean()
    return out


GEOMETRIES = [
    pytest.param((4, 6, 7), (6, 2, 3, 3), (1, 1), (2, 1), (2, 1), 2, id="groups2-dilation21"),
    pytest.param((3, 7, 7), (3, 1, 3, 2), (2, 1), (1, 0), (1, 2), 3, id="depthwise-stride-dilation"),
    pytest.param((2, 5, 6), (4, 2, 2, 2), (1, 2), (0, 1), (3, 2), 1, id="dilation-only"),
    pytest.param((6, 4, 4), (4, 3, 1, 1), (1, 1), (0, 0), (1, 1), 2, id="pointwise-groups"),
]


# ------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize(("input_shape", "kernel_shape", "stride", "padding", "dilation", "groups"), GEOMETRIES)
def test_reference_conv_equals_the_loops(input_shape, kernel_shape, stride, padding, dilation, groups) -> None:
    """Float and integer reference synapses, and conv_matrix, against the loops; the output shape formula too."""
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=kernel_shape)
    conv = Conv(kernel, input_shape, stride, padding, dilation, groups)
    images = rng.normal(size=(3, *input_shape))
    expected = np.stack([_conv_loops(image, kernel, stride, padding, dilation, groups) for image in images])
    assert conv.output_shape == expected.shape[1:]
    assert convolution(conv).output_shape(kernel.shape) == conv.output_shape

    out = np.zeros((3, conv.out_size))
    _synapse(kernel, conv, None).apply(images.reshape(3, -1), out)
    np.testing.assert_allclose(out, expected.reshape(3, -1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(images.reshape(3, -1) @ conv_matrix(kernel, conv).T, out, rtol=1e-12, atol=1e-12)

    integer_kernel = rng.integers(-128, 128, size=kernel_shape) * 2
    payloads = rng.integers(0, 256, size=(3, *input_shape)).astype(np.float64)
    exact = np.stack([_conv_loops(p, integer_kernel, stride, padding, dilation, groups) for p in payloads])
    fixed_out = np.zeros((3, conv.out_size))
    _synapse(integer_kernel, conv, -3).apply(payloads.reshape(3, -1), fixed_out)  # W·x >> 3, floored
    np.testing.assert_array_equal(fixed_out, np.floor(exact.reshape(3, -1) / 8))


@pytest.mark.parametrize("kind", ["sum", "avg"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [((2, 2), None, (0, 0)), ((3, 2), (2, 1), (1, 0))], ids=["2x2", "3x2-s21-p10"]
)
def test_pool_conv_pools_like_the_loops(kind: str, kernel, stride, padding) -> None:
    rng = np.random.default_rng(4)
    input_shape = (3, 6, 5)
    pool = pool_conv(kind, input_shape, kernel, stride, padding)
    assert pool.groups == 3 and pool.weight.shape == (3, 1, *kernel)
    images = rng.normal(size=(2, *input_shape))
    expected = np.stack([_pool_loops(image, kind, kernel, stride or kernel, padding) for image in images])
    out = np.zeros((2, pool.out_size))
    _synapse(pool.weight, pool, None).apply(images.reshape(2, -1), out)
    assert pool.output_shape == expected.shape[1:]
    np.testing.assert_allclose(out, expected.reshape(2, -1), rtol=1e-12, atol=1e-12)


def test_bad_geometries_are_refused() -> None:
    kernel = np.ones((4, 2, 3, 3))
    with pytest.raises(NetSpecError, match="groups"):
        Conv(kernel, (4, 6, 6), groups=3)  # 4 input channels are not 3 groups of 2
    with pytest.raises(NetSpecError, match="groups"):
        Conv(np.ones((3, 2, 3, 3)), (4, 6, 6), groups=2)  # 3 out-channels in 2 groups
    with pytest.raises(NetSpecError, match="dilation"):
        Conv(kernel, (2, 6, 6), dilation=(0, 1))
    with pytest.raises(NetSpecError, match="empty output"):
        Conv(kernel, (2, 6, 6), dilation=(3, 3))  # a span of 7 on 6 pixels
    with pytest.raises(NetSpecError, match="pool kind"):
        pool_conv("max", (2, 4, 4), (2, 2))


# ------------------------------------------------------------------------------------------ networks
def _dyadic(rng: np.random.Generator, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
    """Multiples of 1/32, so every float sum is exact in any order (spike-exact float parity)."""
    return rng.integers(low, high, size=shape) / 32.0


def _geometry_spec(seed: int) -> NetSpec:
    """Input (4, 6, 6) → grouped dilated conv → a (4, 6, 6); a → avg pool 2×2 → b (4, 3, 3), plus input → sum pool
    3×3 (stride 2, pad 1) → b; b → grouped conv (pointwise, groups 2) → c (2, 3, 3); c → dense → out."""
    rng = np.random.default_rng(seed)
    first = Conv(_dyadic(rng, (4, 2, 3, 3), -10, 24), (4, 6, 6), (1, 1), (2, 2), (2, 2), 2)
    average = pool_conv("avg", first.output_shape, (2, 2))
    summed = pool_conv("sum", (4, 6, 6), (3, 3), (2, 2), (1, 1))
    summed = Conv(summed.weight / 8.0, summed.input_shape, summed.stride, summed.padding, groups=summed.groups)
    pointwise = Conv(_dyadic(rng, (2, 2, 1, 1), 8, 40), average.output_shape, groups=2)
    populations = {
        "a": SoftResetNeurons(_dyadic(rng, (first.out_size,), -2, 3), 1.0, shape=first.output_shape),
        "b": SoftResetNeurons(np.zeros(average.out_size), 0.75, reset_potential=-0.25, shape=average.output_shape),
        "c": SoftResetNeurons(np.zeros(pointwise.out_size), 0.5, shape=pointwise.output_shape),
        "out": SoftResetNeurons(np.full(3, 1 / 32), 1.0),
    }
    connections = (
        Connection("input", "a", first, 0),
        Connection("a", "b", average, 1),
        Connection("input", "b", summed, 0),
        Connection("b", "c", pointwise, 1),
        Connection("c", "out", Dense(_dyadic(rng, (3, pointwise.out_size), -4, 16)), 1),
    )
    readout = Readout("out", np.eye(3), np.zeros(3))
    return NetSpec(Input((4, 6, 6), "current"), populations, connections, readout, 8)


def _geometry_inputs(seed: int, samples: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.broadcast_to(rng.integers(0, 16, (samples, 4, 6, 6)) / 16.0, (8, samples, 4, 6, 6)).copy()


def test_quantised_bounds_cover_grouped_convs() -> None:
    """activation_bounds with groups: no a_in of the integer reference leaves them, and dequantize keeps geometry."""
    spec = _geometry_spec(7)
    fixed, _ = quantize(spec)
    grouped = [c.conv for c in fixed.connections if c.conv is not None]
    assert {c.groups for c in grouped} == {2, 4} and any(c.dilation == (2, 2) for c in grouped)
    restored = dequantize(fixed)
    for before, after in zip(spec.connections, restored.connections, strict=True):
        if isinstance(before.synapse, Conv):
            assert (after.synapse.dilation, after.synapse.groups) == (before.synapse.dilation, before.synapse.groups)
    bounds = activation_bounds(fixed, np.full(fixed.input.size, 255))
    into_a = next(c for c in fixed.connections if c.target == "a")  # the grouped, dilated input conv
    for sign, side in ((1, 1), (-1, 0)):  # the unrolled matrix reaches the bound where the whole kernel is inside
        matrix = conv_matrix(np.maximum(sign * into_a.weight, 0), into_a.conv)
        exact = sign * (matrix @ np.full(fixed.input.size, 255)).max()
        shifted = exact << into_a.weight_exp if into_a.weight_exp >= 0 else exact >> -into_a.weight_exp
        assert bounds["a"][side] == shifted
    assert bounds["b"][1] > 0 and bounds["c"][1] > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 2), (False, 1)], ids=["fused-batched", "plain"])
def test_dilated_grouped_and_pooling_network_matches_the_reference(backend: str, fused: bool, batch_size: int) -> None:
    """Lava float spike for spike with the float reference, Lava fixed bit for bit with the integer reference."""
    spec = _geometry_spec(5)
    inputs = _geometry_inputs(6)
    simulated = quantize(spec)[0] if backend == "lava-fixed" else spec
    reference = simulate(simulated, inputs)
    assert all(counts.sum() > 0 for counts in reference.counts.values())  # every population takes part

    result = run_lava(simulated, inputs, backend=backend, fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)


# ------------------------------------------------------------------------------------------ files
def test_files_without_dilation_and_groups_still_load(tmp_path: Path) -> None:
    """A file of the first NetSpec format (Conv without dilation and groups) loads with (1, 1) and 1."""
    rng = np.random.default_rng(8)
    conv = Conv(rng.normal(size=(3, 2, 3, 3)), (2, 5, 5), (2, 2), (1, 1))
    spec = NetSpec(
        Input((2, 5, 5), "current"),
        {"h": SoftResetNeurons(np.zeros(conv.out_size), 1.0, shape=conv.output_shape)},
        (Connection("input", "h", conv, 0),),
        Readout("h", np.ones((2, conv.out_size)), np.zeros(2)),
        4,
    )
    path = tmp_path / "new.npz"
    spec.save(path)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(arrays["__header__"].tobytes().decode())
    synapse = header["connections"]["__tuple__"][0]["synapse"]
    assert synapse["__type__"] == "Conv" and "dilation" in synapse and "groups" in synapse
    del synapse["dilation"], synapse["groups"]
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)

    loaded = NetSpec.load(old)

    loaded_conv = loaded.connections[0].synapse
    assert loaded_conv.dilation == (1, 1) and loaded_conv.groups == 1
    assert_netspec_equal(loaded, spec)
    inputs = rng.random((4, 2, 2, 5, 5))
    np.testing.assert_array_equal(simulate(loaded, inputs).counts["h"], simulate(spec, inputs).counts["h"])
