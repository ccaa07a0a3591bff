"""Native convolutions in the SpikingNetwork process: the fused model (numpy, batched) and the Loihi graph (Lava's
Conv) against the same network with unrolled dense matrices and against a numpy ground truth, in floating and
fixed point. Small graphs, always stopped; one MNIST-sized layer checks that nothing is unrolled."""

from __future__ import annotations

import itertools
import resource
from dataclasses import replace

import numpy as np
import pytest

from lavaflow.deploy.run_config import run_config
from lavaflow.processes import dynamics
from lavaflow.processes.network.process import SpikingNetwork
from lavaflow.processes.sink.process import SpikeCounter
from lavaflow.processes.source.process import PayloadSource
from lavaflow.processes.synapses import ConvMap, lava_conv_arguments
from lavaflow.processes.topology import (
    INPUT_SOURCE,
    Convolution,
    CubaPopulation,
    Population,
    Projection,
    SoftResetPopulation,
)

try:  # the runners are moving into pipeline/lava/
    from lavaflow.pipeline.lava.session import run_and_read
except ImportError:  # pragma: no cover - the layout before the move
    from lavaflow.pipeline.lava_session import run_and_read

BACKENDS = {"floating_pt": "lava-float", "fixed_pt": "lava-fixed"}
LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only: these graphs run in seconds
INPUT_SHAPE = (2, 6, 6)
TIME_STEPS = 8


# ------------------------------------------------------------------------------------------ oracles
def _unroll(kernel: np.ndarray, conv: Convolution) -> np.ndarray:
    """The dense (C_out·H'·W', C_in·H·W) matrix of torch's conv2d, entry by entry (the independent oracle)."""
    c_in, height, width = conv.input_shape
    c_out, out_h, out_w = conv.output_shape(kernel.shape)
    out_group, in_group = c_out // conv.groups, c_in // conv.groups
    matrix = np.zeros((c_out * out_h * out_w, c_in * height * width), dtype=kernel.dtype)
    for o, y, x, i, dy, dx in itertools.product(*(range(n) for n in (c_out, out_h, out_w, *kernel.shape[1:]))):
        in_y = y * conv.stride[0] - conv.padding[0] + dy * conv.dilation[0]
        in_x = x * conv.stride[1] - conv.padding[1] + dx * conv.dilation[1]
        if 0 <= in_y < height and 0 <= in_x < width:
            channel = (o // out_group) * in_group + i
            matrix[(o * out_h + y) * out_w + x, (channel * height + in_y) * width + in_x] = kernel[o, i, dy, dx]
    return matrix


def _unrolled(projections: list[Projection]) -> list[Projection]:
    """The same network with every convolution as its dense matrix (today's lowering)."""
    return [p if p.conv is None else replace(p, weights=_unroll(p.weights, p.conv), conv=None) for p in projections]


def _arithmetic(population: Population, fixed: bool) -> dynamics.NeuronArithmetic:
    if fixed:
        bias = dynamics.effective_bias(population.bias_mant, population.bias_exp)
        if isinstance(population, CubaPopulation):
            return dynamics.CubaFixed(vth=population.vth, du=population.du, dv=population.dv, bias=bias)
        return dynamics.SoftResetFixed(vth=population.vth, v_reset=population.v_reset, dv=population.dv, bias=bias)
    if isinstance(population, CubaPopulation):
        return dynamics.CubaFloat(vth=population.vth, du=population.du, dv=population.dv, bias=population.bias_mant)
    return dynamics.SoftResetFloat(
        vth=population.vth, v_reset=population.v_reset, dv=population.dv, bias=population.bias_mant
    )


def _ground_truth(
    populations: list[Population], projections: list[Projection], payloads: np.ndarray, fixed: bool
) -> list[np.ndarray]:
    """Per population, (N, T, n) spikes of the NetSpec time semantics: population inputs one step late, the input
    without delay; dense matrices only; integer sums shifted by weight_exp in fixed point, ignored in float."""
    num_samples, time_steps, _ = payloads.shape
    spikes = [np.zeros((num_samples, time_steps, p.size), dtype=bool) for p in populations]
    for sample in range(num_samples):
        arithmetic = [_arithmetic(p, fixed) for p in populations]
        dtype = np.int64 if fixed else np.float64
        states = [
            {name: np.zeros(p.size, dtype=dtype) for name in a.state_names}
            for a, p in zip(arithmetic, populations, strict=True)
        ]
        previous = [np.zeros(p.size, dtype=dtype) for p in populations]
        for step in range(time_steps):
            a_in = [np.zeros(p.size, dtype=dtype) for p in populations]
            for projection in projections:
                if projection.source == INPUT_SOURCE:
                    x = payloads[sample, step].astype(dtype)
                    x = (x != 0).astype(dtype) if projection.num_message_bits == 0 else x
                else:
                    x = previous[projection.source]
                product = np.asarray(projection.weights, dtype=dtype) @ x
                if fixed:
                    exponent = projection.weight_exp
                    product = product << exponent if exponent >= 0 else product >> -exponent
                a_in[projection.target] += product
            for index, (ops, state) in enumerate(zip(arithmetic, states, strict=True)):
                if fixed:  # the a_in range every fixed-point network must keep (a_in << 6 fits 24 bits)
                    assert np.abs(a_in[index]).max(initial=0) < 1 << 17
                ops.integrate(state, a_in[index])
                fired = ops.fire(state)
                ops.reset(state, fired)
                spikes[index][sample, step] = fired
            previous = [s[sample, step].astype(dtype) for s in spikes]
    return spikes


# ------------------------------------------------------------------------------------------ networks
def _network(fixed: bool, seed: int = 0) -> tuple[list[Population], list[Projection], np.ndarray]:
    """2×6×6 input → conv 3×3 (pad 1) → A: 4×6×6 IF soft reset, with a grouped, dilated recurrent conv A → A;
    A → conv 3×3 stride 2 → B: 3×3×3 CUBA; B → dense → C: 5 LIF soft reset, and C → B dense feedback.

    Float values are dyadic (multiples of 1/32), so every sum is exact in any order and float results are
    spike-exact too. Two conv projections have weight exponents (−4, 1): shifts in fixed point, ignored in float.
    Returns the populations, the projections and (N, T, 72) graded input payloads.
    """
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(INPUT_SHAPE))

    def weights(shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
        values = rng.integers(low, high, size=shape)
        return 2 * values if fixed else values / 32.0  # fixed point: even integers, as the Loihi graph's Dense needs

    def zeros(size: int) -> np.ndarray:
        return np.zeros(size, dtype=np.int64 if fixed else np.float64)

    if fixed:
        populations: list[Population] = [
            SoftResetPopulation(size=144, vth=1500, v_reset=0, dv=0, bias_mant=zeros(144)),
            CubaPopulation(size=27, vth=300, du=1024, dv=512, bias_mant=np.full(27, 64), bias_exp=2),
            SoftResetPopulation(size=5, vth=400, v_reset=-50, dv=400, bias_mant=zeros(5)),
        ]
        payloads = rng.integers(0, 256, size=(4, TIME_STEPS, n_in)) * (rng.random((4, TIME_STEPS, n_in)) < 0.6)
    else:
        populations = [
            SoftResetPopulation(size=144, vth=2.0, v_reset=0.0, dv=0.0, bias_mant=zeros(144)),
            CubaPopulation(size=27, vth=4.0, du=0.25, dv=0.125, bias_mant=np.full(27, 0.0625)),
            SoftResetPopulation(size=5, vth=8.0, v_reset=-0.25, dv=0.125, bias_mant=zeros(5)),
        ]
        payloads = rng.integers(0, 16, size=(4, TIME_STEPS, n_in)) / 16.0 * (rng.random((4, TIME_STEPS, n_in)) < 0.6)
    exponents = (-4, 0, 1, 0, 0)  # floating_pt ignores them, as Lava's float Dense does
    projections = [
        Projection(
            INPUT_SOURCE, 0, weights((4, 2, 3, 3), -60, 64), exponents[0], 8, Convolution(INPUT_SHAPE, padding=(1, 1))
        ),
        Projection(
            0, 0, weights((4, 2, 3, 3), -30, 30), exponents[1], 0, Convolution((4, 6, 6), (1, 1), (2, 2), (2, 2), 2)
        ),
        Projection(0, 1, weights((3, 4, 3, 3), -40, 44), exponents[2], 0, Convolution((4, 6, 6), (2, 2), (1, 1))),
        Projection(1, 2, weights((5, 27), -40, 50), exponents[3]),
        Projection(2, 1, weights((27, 5), -40, 40), exponents[4]),
    ]
    return populations, projections, payloads


# ------------------------------------------------------------------------------------------ Lava runs
def _run(
    populations: list[Population],
    projections: list[Projection],
    payloads: np.ndarray,
    *,
    output: int,
    tag: str,
    fused: bool,
    batch_size: int = 1,
    timeout_s: float = 120,
) -> np.ndarray:
    """Run source → SpikingNetwork → sink on Lava; (N, n_output) spike counts over the T dynamics steps."""
    num_samples, time_steps, input_size = payloads.shape
    window_steps = time_steps + 1
    source = PayloadSource(payloads=payloads, batch_size=batch_size, window_steps=window_steps)
    network = SpikingNetwork(
        input_size=input_size,
        populations=populations,
        projections=projections,
        output=output,
        batch_size=batch_size,
        window_steps=window_steps,
    )
    sink = SpikeCounter(
        shape=(populations[output].size,), num_samples=num_samples, batch_size=batch_size, window_steps=window_steps
    )
    source.s_out.connect(network.s_in)
    network.s_out.connect(sink.a_in)
    config = run_config(BACKENDS[tag], select_sub_proc_model=not fused)
    steps = num_samples // batch_size * window_steps
    counts = run_and_read(sink, steps, config, lambda: sink.receive_counts()[0], timeout_s=timeout_s).value
    return np.rint(counts).astype(np.int64)


@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
@pytest.mark.parametrize("graph", ["fused", "plain"])
@pytest.mark.parametrize("synapses", ["conv", "unrolled"])
def test_conv_network_spikes_like_the_ground_truth(tag: str, graph: str, synapses: str) -> None:
    """Native conv projections and their unrolled matrices give the ground truth's counts in both models."""
    fixed = tag == "fixed_pt"
    populations, projections, payloads = _network(fixed)
    expected = _ground_truth(populations, _unrolled(projections), payloads, fixed)[1].sum(axis=1)
    used = projections if synapses == "conv" else _unrolled(projections)
    fused = graph == "fused"

    counts = _run(populations, used, payloads, output=1, tag=tag, fused=fused, batch_size=2 if fused else 1)

    np.testing.assert_array_equal(counts, expected)
    assert 0 < counts.sum() < counts.size * TIME_STEPS  # neither silent nor saturated


@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
def test_fused_conv_population_itself_matches_the_ground_truth(tag: str) -> None:
    """The first conv population read directly (4 samples side by side), with its grouped recurrent conv."""
    fixed = tag == "fixed_pt"
    populations, projections, payloads = _network(fixed, seed=1)
    expected = _ground_truth(populations, _unrolled(projections), payloads, fixed)[0].sum(axis=1)

    counts = _run(populations, projections, payloads, output=0, tag=tag, fused=True, batch_size=4)

    np.testing.assert_array_equal(counts, expected)
    assert 0 < counts.sum() < counts.size * TIME_STEPS


@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
def test_plain_graph_uses_lavas_conv_and_shifts_only_where_an_exponent_needs_it(tag: str) -> None:
    fixed = tag == "fixed_pt"
    populations, projections, payloads = _network(fixed)
    source = PayloadSource(payloads=payloads, batch_size=1, window_steps=TIME_STEPS + 1)
    network = SpikingNetwork(
        input_size=payloads.shape[2],
        populations=populations,
        projections=projections,
        output=1,
        batch_size=1,
        window_steps=TIME_STEPS + 1,
    )
    source.s_out.connect(network.s_in)

    executable = source.compile(run_config(BACKENDS[tag], select_sub_proc_model=True))

    models = sorted(type(p).__name__ + ":" + p.model_class.__name__ for p in executable.process_list)
    suffix = "Fixed" if fixed else "Float"
    assert models.count(f"Conv:PyConvModel{suffix}") == 3
    assert models.count("Dense:" + ("PyDenseModelBitAcc" if fixed else "PyDenseModelFloat")) == 2  # no unrolled conv
    assert models.count(f"ExponentShift:PyExponentShiftModel{suffix}") == 2  # behind the exponents −4 and 1


# ------------------------------------------------------------------------------------------ an MNIST-sized layer
def _correlate(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """torch's conv2d with padding 1 of (N, C, H, W) images, via a sliding window view (an independent oracle)."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[2:], axis=(2, 3))  # (N, C, H, W, kH, kW)
    return np.einsum("nchwij,ocij->nohw", windows, kernel, optimize=True)


def _big_layer(fixed: bool) -> tuple[list[Population], list[Projection], np.ndarray]:
    """64×32×32 input spikes → 64→64 3×3 conv (pad 1) → 65,536 IF neurons; its unrolled matrix would hold 4.3·10^9
    entries (34 GB in float64)."""
    rng = np.random.default_rng(7)
    kernel = 2 * rng.integers(-10, 11, size=(64, 64, 3, 3))
    population = SoftResetPopulation(size=65536, vth=60, v_reset=0, dv=0, bias_mant=np.zeros(65536, dtype=np.int64))
    if not fixed:
        kernel = kernel / 16.0
        population = replace(population, vth=60 / 16.0, bias_mant=np.zeros(65536))
    conv = Projection(INPUT_SOURCE, 0, kernel, 0, 0, Convolution((64, 32, 32), padding=(1, 1)))
    payloads = (rng.random((2, 2, 65536)) < 0.1).astype(np.int64 if fixed else np.float64)
    return [population], [conv], payloads


def test_native_conv_map_keeps_memory_small() -> None:
    """The fused model's map of the big layer allocates O(B·C·H·W + kernel), not the unrolled matrix."""
    import tracemalloc

    _, (projection,), payloads = _big_layer(fixed=True)
    tracemalloc.start()
    try:
        result = ConvMap(projection.weights, projection.conv)(payloads[:, 0].astype(np.float64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20  # the input alone is 1 MiB; the unrolled matrix would be 34 GB
    expected = _correlate(payloads[:, 0].reshape(2, 64, 32, 32), projection.weights).reshape(2, -1)
    np.testing.assert_array_equal(result, expected)


@LAVA_TIMEOUT
@pytest.mark.parametrize(("tag", "graph"), [("fixed_pt", "fused"), ("floating_pt", "fused"), ("fixed_pt", "plain")])
def test_mnist_sized_conv_layer_runs_natively(tag: str, graph: str) -> None:
    fixed = tag == "fixed_pt"
    populations, projections, payloads = _big_layer(fixed)
    (population,), (projection,) = populations, projections
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    fused = graph == "fused"

    counts = _run(populations, projections, payloads, output=0, tag=tag, fused=fused, batch_size=2 if fused else 1)

    # Ground truth: the input connection has no delay, so step t integrates conv(x[t]) (IF neurons, soft reset).
    currents = _correlate(payloads.reshape(2, 2, 64, 32, 32).reshape(4, 64, 32, 32), projection.weights)
    currents = currents.reshape(2, 2, -1)
    ops = _arithmetic(population, fixed)
    state = {"v": np.zeros((2, 65536), dtype=np.int64 if fixed else np.float64)}
    expected = np.zeros((2, 65536), dtype=np.int64)
    for step in range(2):
        ops.integrate(state, currents[:, step])
        fired = ops.fire(state)
        ops.reset(state, fired)
        expected += fired
    np.testing.assert_array_equal(counts, expected)
    assert 0 < counts.sum() < counts.size
    # Every Lava OS process stayed far below the 34 GB of an unrolled matrix (the largest child so far, in KiB).
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert largest <= max(children_before, own + 2**20), f"a Lava process peaked at {largest / 2**20:.1f} GiB"


# ------------------------------------------------------------------------------------------ records and refusals
def test_the_oracle_unrolls_like_the_lowering() -> None:
    """Our entry-by-entry unrolling equals the lowering's conv_matrix (while the lowering still has one)."""
    from lavaflow.models.netspec import Conv

    try:
        from lavaflow.deploy import lowering
    except ImportError:  # pragma: no cover - the layout before the move
        from lavaflow.pipeline import export as lowering
    conv_matrix = getattr(lowering, "conv_matrix", None)
    if conv_matrix is None:
        pytest.skip("the lowering no longer unrolls convolutions")
    kernel = np.random.default_rng(2).integers(-9, 10, size=(3, 2, 3, 2)).astype(np.float64)
    spec_conv = Conv(weight=kernel, input_shape=(2, 7, 6), stride=(2, 1), padding=(1, 0))
    ours = Convolution((2, 7, 6), stride=(2, 1), padding=(1, 0))
    assert ours.output_shape(kernel.shape) == spec_conv.output_shape
    np.testing.assert_array_equal(_unroll(kernel, ours), conv_matrix(kernel, spec_conv))


@pytest.mark.parametrize(
    ("kernel_shape", "conv", "message"),
    [
        ((4, 2, 3, 3, 1), Convolution(INPUT_SHAPE), "a conv kernel is"),
        ((4, 1, 3, 3), Convolution(INPUT_SHAPE), "does not fit 2 input channels"),
        ((3, 1, 3, 3), Convolution(INPUT_SHAPE, groups=2), "does not fit 2 input channels"),
        ((4, 2, 3, 3), Convolution((2, 6, 5)), "does not hold the 72 sources"),
        ((4, 2, 3, 3), Convolution(INPUT_SHAPE, stride=(2, 2)), "not the 64 target neurons"),
        ((4, 2, 3, 3), Convolution(INPUT_SHAPE, stride=(0, 1)), "stride must be two integers"),
    ],
)
def test_a_conv_that_does_not_fit_its_populations_is_refused(
    kernel_shape: tuple[int, ...], conv: Convolution, message: str
) -> None:
    population = SoftResetPopulation(size=64, vth=1.0, v_reset=0.0, dv=0.0, bias_mant=np.zeros(64))
    projection = Projection(INPUT_SOURCE, 0, np.ones(kernel_shape), conv=conv)
    with pytest.raises(ValueError, match=f"projection 0: .*{message}"):
        SpikingNetwork(
            input_size=72, populations=[population], projections=[projection], output=0, batch_size=1, window_steps=3
        )


@LAVA_TIMEOUT
def test_plain_graph_refuses_a_kernel_whose_sum_lavas_conv_would_wrap() -> None:
    """Lava's fixed-point Conv wraps Σ w·x to 24 bits before any exponent; Dense and the fused model do not."""
    population = SoftResetPopulation(size=16, vth=100, v_reset=0, dv=0, bias_mant=np.zeros(16, dtype=np.int64))
    kernel = np.full((1, 64, 3, 3), 254)  # 576 · 254 · 255 ≥ 2^23 for 8-bit payloads
    projection = Projection(INPUT_SOURCE, 0, kernel, -8, 8, Convolution((64, 4, 4), padding=(1, 1)))
    network = SpikingNetwork(
        input_size=1024, populations=[population], projections=[projection], output=0, batch_size=1, window_steps=3
    )
    with pytest.raises(ValueError, match="wraps its accumulator"):
        network.compile(run_config("lava-fixed", select_sub_proc_model=True))


def test_lava_conv_arguments_refuse_what_int8_vars_cannot_hold() -> None:
    with pytest.raises(ValueError, match="int8"):
        lava_conv_arguments(np.ones((128, 1, 3, 3)), Convolution((128, 8, 8), groups=128))


def test_the_lowering_emits_native_conv_projections() -> None:
    """An MNIST-sized conv NetSpec lowers to its kernel and geometry, in float and after quantisation."""
    from lavaflow.deploy.lowering import network_records
    from lavaflow.deploy.quantize import quantize
    from lavaflow.models.netspec import INPUT, Connection, Conv, Input, NetSpec, Readout, SoftResetNeurons

    kernel = np.random.default_rng(3).normal(0.0, 0.05, (64, 64, 3, 3))
    conv = Conv(kernel, (64, 32, 32), stride=(1, 1), padding=(1, 1))
    spec = NetSpec(
        Input((64, 32, 32), "rate"),
        {"conv": SoftResetNeurons(np.zeros(conv.out_size), 1.0, shape=conv.output_shape)},
        (Connection(INPUT, "conv", conv, delay_steps=0),),
        Readout("conv", np.ones((10, conv.out_size)), np.zeros(10)),
        time_steps=4,
    )
    for lowered in (spec, quantize(spec)[0]):
        _, (projection,) = network_records(lowered)
        assert projection.conv == Convolution((64, 32, 32), stride=(1, 1), padding=(1, 1))
        assert projection.weights.shape == (64, 64, 3, 3)  # the kernel, not a 65536 × 65536 matrix
        assert (projection.source, projection.target, projection.num_message_bits) == (INPUT_SOURCE, 0, 0)
