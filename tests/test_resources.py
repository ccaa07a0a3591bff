"""The Loihi 2 resource report (deploy.resources): hand-counted numbers, the partition's limits on random networks,
fit errors that name the layer and the fix, and the core count of Intel's MNIST network against its real one."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lavaflow.deploy.lowering import conv_matrix
from lavaflow.deploy.resources import (
    LIMIT_SOURCES,
    CoreLimits,
    DoesNotFitError,
    ResourceReport,
    check_fit,
    fan_outs,
    partition_order,
    resource_report,
    weight_bits,
)
from lavaflow.models.fixed import FixedConnection, FixedNetSpec, FixedPopulation
from lavaflow.models.netspec import INPUT, Conv, Input, Readout, Sparse

MNIST_NET = Path(__file__).resolve().parent / "data" / "trained_mnist_network.net"


def cuba(size: int, shape: tuple[int, ...] = ()) -> FixedPopulation:
    return FixedPopulation("cuba", size, vth=100, dv=0, bias_mant=np.zeros(size, dtype=np.int64), bias_exp=0,
                           scale=1.0, du=4095, shape=shape)


def tiny() -> FixedNetSpec:
    """input (1, 3, 3) → conv (2, 4, 4): 2×2 kernel, padding 1 → dense (3) → sparse (2), delay 3 → readout.

    Hand counts (the test's expectations), per connection:
    - conv: output rows 0..3 see 1, 2, 2, 1 input rows (padding 1), columns alike: Σ = 6 · 6 = 36 taps per output
      channel, 2 channels → 72 synapses; every input pixel feeds 4 positions × 2 channels = 8; an output neuron
      reads at most 4. Kernel values 2, 4, −6, 8 → /2 → 1, 2, −3, 4: signed 4 bits. Memory 72 · 4 = 288 bits.
    - dense (3, 32): 96 synapses of 32 inputs (zeros stored too); weights 0, 4, −8 → /4 → 0, 1, −2: signed 2 bits;
      192 bits.
    - sparse (2, 3), 3 non-zeros at (0, 0), (0, 2), (1, 1), weights 4, 4, 12 → /4 → 1, 1, 3: unsigned 2 bits;
      synaptic delay 3 − 1 = 2 → 2 bits; target index of 2 neurons → 1 bit: 5 bits · 3 = 15 bits.
    """
    conv_kernel = np.array([[[[2, 4], [-6, 8]]], [[[2, 4], [-6, 8]]]], dtype=np.int64)
    conv = Conv(conv_kernel.astype(np.float64), (1, 3, 3), padding=(1, 1))
    dense = np.zeros((3, 32), dtype=np.int64)
    dense[0, :] = 4
    dense[1, ::2] = -8
    sparse = Sparse(np.array([4.0, 4.0, 12.0]), np.array([0, 0, 1]), np.array([0, 2, 1]), (2, 3))
    populations = {"conv": cuba(32, (2, 4, 4)), "hidden": cuba(3), "out": cuba(2)}
    connections = (
        FixedConnection(INPUT, "conv", conv_kernel, 0, 0, conv=conv),
        FixedConnection("conv", "hidden", dense, 0, 1),
        FixedConnection("hidden", "out", np.array([4, 4, 12], dtype=np.int64), -2, 3, sparse=sparse),
    )
    return FixedNetSpec(Input((1, 3, 3), "events"), 1.0, populations, connections,
                        Readout("out", np.eye(2), np.zeros(2)), 4)


def test_the_report_of_a_tiny_network_equals_hand_counts() -> None:
    report = resource_report(tiny())
    conv, dense, sparse = report.connections
    assert (conv.kind, conv.synapses, conv.max_fan_in, conv.max_fan_out, conv.weight_bits) == ("conv", 72, 4, 8, 4)
    assert (conv.parameters, conv.synaptic_memory_bits, conv.macs) == (8, 288, 72)
    assert (dense.kind, dense.synapses, dense.max_fan_in, dense.max_fan_out, dense.weight_bits) == ("dense", 96, 32,
                                                                                                       3, 2)
    assert (dense.synaptic_delay, dense.delay_bits, dense.synaptic_memory_bits) == (0, 0, 192)
    assert (sparse.kind, sparse.synapses, sparse.max_fan_in, sparse.max_fan_out) == ("sparse", 3, 2, 1)
    assert (sparse.weight_bits, sparse.synaptic_delay, sparse.delay_bits, sparse.index_bits) == (2, 2, 2, 1)
    assert (sparse.bits_per_synapse, sparse.synaptic_memory_bits) == (5, 15)
    assert report.cores_per_layer() == {"conv": 1, "hidden": 1, "out": 1}
    assert (report.num_cores, report.num_chips, report.synapses, report.macs) == (3, 1, 171, 171)
    layers = {layer.name: layer for layer in report.layers}
    # fan-out of a layer: over all its outgoing connections; routing: one entry per destination core
    assert (layers["conv"].max_fan_out, layers["hidden"].max_fan_out, layers["out"].max_fan_out) == (3, 1, 0)
    assert (layers["conv"].routing_entries, layers["hidden"].routing_entries, layers["out"].routing_entries) == (
        32, 3, 0)
    assert report.input_neurons == 9 and report.input_routing_entries == 9
    assert [core.input_axons for core in report.cores] == [9, 32, 3]  # the distinct sources of each core
    assert [core.synaptic_memory_bits for core in report.cores] == [288, 192, 15]
    assert (layers["conv"].order, layers["hidden"].order) == ("position-major", "flat")
    # a (C, H, W) = (2, 2, 2) layer is cut into cores pixel by pixel, both channels of a pixel together
    assert partition_order(cuba(8, (2, 2, 2))).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    json.loads(json.dumps(report.to_dict()))  # the bundle's resources.json
    table = str(report)
    assert "3 neurocores on 1 Loihi 2 chip (1 + 1 + 1)" in table and "96" in table


@pytest.mark.parametrize(("weights", "bits"), [
    ([2, -2, 4, 6, -8], 3),  # /2 → 1, −1, 2, 3, −4
    ([-256, 254], 8),  # /2 → −128, 127: an 8-bit mixed-sign layer
    ([254, 2], 7),  # /2 → 127, 1, no sign bit
    ([-256, -2], 8),  # /2 → −128, −1: shared sign, magnitude 128
    ([0, 0], 1),
    ([3, -1], 3),  # odd: no common factor, 3 needs 2 bits + sign
    ([301, 0], 9),
])
def test_weight_bits_are_the_narrowest_field_after_the_common_power_of_two(weights: list[int], bits: int) -> None:
    assert weight_bits(np.array(weights)) == bits


def test_every_limit_is_cited_or_derived() -> None:
    for name, entry in CoreLimits().to_dict().items():
        assert entry["source"] == LIMIT_SOURCES[name]
        assert any(word in entry["source"] for word in ("documented", "derived", "figure"))


# ------------------------------------------------------------------------------------------ fit errors
def replaced(spec: FixedNetSpec, index: int, name: str, value: object) -> FixedNetSpec:
    """``spec`` with a connection field written in after validation (as a hand-edited or damaged spec would be)."""
    object.__setattr__(spec.connections[index], name, value)
    return spec


@pytest.mark.parametrize(("case", "layer", "words"), [
    ("weight precision", "hidden", ("10-bit weights", "fix: quantise again")),
    ("weight exponent", "out", ("weight_exp 9", "-8..7", "fix:")),
    ("delay range", "out", ("delay of 64 steps", "0..62", "fix: split the delay")),
    ("fan-in", "hidden", ("32 input axons", "fix: reduce the fan-in")),
    ("fan-out", "conv", ("reach 3 cores", "fix:")),
])
def test_each_fit_error_names_the_layer_and_the_fix(case: str, layer: str, words: tuple[str, ...]) -> None:
    spec, limits = tiny(), CoreLimits()
    if case == "weight precision":
        spec.connections[1].weight[0, 0] = 301  # written in after validation: with −8 beside it, 10 signed bits
    elif case == "weight exponent":
        spec = replaced(spec, 2, "weight_exp", 9)
    elif case == "delay range":
        spec = replaced(spec, 2, "delay_steps", 64)  # synaptic delay 63: one beyond Loihi 2's 6-bit field
    elif case == "fan-in":
        limits = CoreLimits(input_axons_per_core=31)
    else:  # hidden split into 3 one-neuron cores, so every conv neuron routes to 3 cores
        limits = CoreLimits(neurons_per_core=1, output_axons_per_core=2)
    with pytest.raises(DoesNotFitError) as caught:
        check_fit(spec, limits)
    problems = caught.value.problems
    assert [p.layer for p in problems] == [layer]
    message = str(caught.value)
    assert f"layer {layer!r}" in message
    for word in words:
        assert word in message


def test_a_delay_of_63_steps_fits() -> None:
    check_fit(replaced(tiny(), 2, "delay_steps", 63))  # synaptic delay 62, the largest Loihi 2 holds


# ------------------------------------------------------------------------------------------ the partition
def incidence_matrix(spec: FixedNetSpec, connection: FixedConnection) -> np.ndarray:
    """(n_out, n_in) True where a synapse is stored: a second, brute-force count (dense unrolling)."""
    n_in = spec.input.size if connection.source == INPUT else spec.populations[connection.source].size
    n_out = spec.populations[connection.target].size
    if connection.sparse is not None:
        return connection.sparse.dense(np.ones(connection.weight.shape)) != 0
    if connection.conv is not None:
        return conv_matrix(np.ones(connection.conv.weight.shape), connection.conv) != 0
    return np.ones((n_out, n_in), dtype=bool)


def brute_force_cores(spec: FixedNetSpec, report: ResourceReport) -> list[tuple[int, int, int]]:
    """Per core (memory bits, input axons, output axons) recounted from the unrolled matrices."""
    blocks = {core.layer: [] for core in report.cores}
    for core in report.cores:
        blocks[core.layer].append(core.neurons)
    routing = {name: np.zeros(size, dtype=np.int64) for name, size in
               {INPUT: spec.input.size, **{n: p.size for n, p in spec.populations.items()}}.items()}
    orders = {name: partition_order(population) for name, population in spec.populations.items()}
    for connection in spec.connections:
        matrix = incidence_matrix(spec, connection)
        for start, stop in blocks[connection.target]:
            routing[connection.source] += matrix[orders[connection.target][start:stop]].any(axis=0)
    usage = []
    for core in report.cores:
        neurons = orders[core.layer][core.neurons[0]:core.neurons[1]]
        memory = axons = 0
        for record, connection in zip(report.connections, spec.connections, strict=True):
            if connection.target == core.layer:
                matrix = incidence_matrix(spec, connection)[neurons]
                memory += int(matrix.sum()) * record.bits_per_synapse
                axons += int(matrix.any(axis=0).sum())
        usage.append((memory, axons, int(routing[core.layer][neurons].sum())))
    return usage


@st.composite
def random_networks(draw: st.DrawFn) -> FixedNetSpec:
    """A few populations (some with a conv geometry) joined by dense, sparse and conv connections, feedback too."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(1, 4))
    shapes = [(int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(2, 5))) for _ in range(count)]
    populations = {f"p{i}": cuba(int(np.prod(shape)), shape) for i, shape in enumerate(shapes)}
    input_shape = (1, int(rng.integers(2, 6)), int(rng.integers(2, 6)))
    names = list(populations)
    connections = []
    for index, name in enumerate(names):
        sources = [INPUT] if index == 0 else [names[index - 1]]
        sources += [names[int(rng.integers(0, count))]] if rng.random() < 0.4 else []
        for source in sources:
            shape_in = input_shape if source == INPUT else shapes[names.index(source)]
            n_in, n_out = int(np.prod(shape_in)), populations[name].size
            delay = 0 if source == INPUT else int(rng.integers(1, 64))
            kind = rng.choice(["dense", "sparse", "conv"])
            if kind == "conv":
                kernel_size = int(rng.integers(1, 3))
                pad = int(rng.integers(0, 2))
                out_h = shape_in[1] + 2 * pad - kernel_size + 1
                out_w = shape_in[2] + 2 * pad - kernel_size + 1
                c_out = n_out // max(out_h * out_w, 1)
                if out_h >= 1 and out_w >= 1 and c_out * out_h * out_w == n_out:
                    kernel = 2 * rng.integers(-3, 4, size=(c_out, shape_in[0], kernel_size, kernel_size))
                    conv = Conv(kernel.astype(np.float64), shape_in, padding=(pad, pad))
                    connections.append(FixedConnection(source, name, kernel, 0, delay, conv=conv))
                    continue
                kind = "dense"
            matrix = 2 * rng.integers(-5, 6, size=(n_out, n_in))
            if kind == "sparse":
                matrix[rng.random(matrix.shape) < 0.6] = 0
                if not matrix.any():
                    matrix[0, 0] = 2
                sparse = Sparse.from_dense(matrix.astype(np.float64))
                connections.append(FixedConnection(source, name, sparse.weight.astype(np.int64), 0, delay,
                                                   sparse=sparse))
            else:
                connections.append(FixedConnection(source, name, matrix, 0, delay))
    last = names[-1]
    return FixedNetSpec(Input(input_shape, "rate"), 1.0, populations, tuple(connections),
                        Readout(last, np.eye(populations[last].size), np.zeros(populations[last].size)), 3)


@given(spec=random_networks(), neurons=st.integers(1, 9), memory=st.integers(40, 2000),
       input_axons=st.integers(4, 80), output_axons=st.integers(4, 80))
def test_the_partition_never_exceeds_a_limit_on_random_networks(spec: FixedNetSpec, neurons: int, memory: int,
                                                                 input_axons: int, output_axons: int) -> None:
    limits = CoreLimits(neurons_per_core=neurons, synaptic_memory_bits=memory, input_axons_per_core=input_axons,
                        output_axons_per_core=output_axons, cores_per_chip=4)
    try:
        report = resource_report(spec, limits)
    except DoesNotFitError as error:
        assert {p.layer for p in error.problems} <= set(spec.populations)
        for problem in error.problems:  # a fan-in problem is real: one neuron alone exceeds a core
            assert problem.fix
            if "input axons" in problem.problem or "synaptic memory" in problem.problem:
                axons = memory_bits = np.zeros(spec.populations[problem.layer].size, dtype=np.int64)
                for connection in spec.connections:
                    if connection.target == problem.layer:
                        stored = incidence_matrix(spec, connection).sum(axis=1)
                        bits = resource_report(spec).connections[spec.connections.index(connection)].bits_per_synapse
                        axons, memory_bits = axons + stored, memory_bits + stored * bits
                assert axons.max() > input_axons or memory_bits.max() > memory
        return
    for core, (memory_bits, axons, routes) in zip(report.cores, brute_force_cores(spec, report), strict=True):
        assert (core.synaptic_memory_bits, core.input_axons, core.output_axons) == (memory_bits, axons, routes)
        assert core.neurons[1] - core.neurons[0] <= limits.neurons_per_core
        assert memory_bits <= limits.synaptic_memory_bits
        assert axons <= limits.input_axons_per_core
        assert routes <= limits.output_axons_per_core
        assert core.chip == core.index // limits.cores_per_chip
    for name, population in spec.populations.items():  # each layer's cores tile its neurons (partition order)
        ranges = [core.neurons for core in report.cores if core.layer == name]
        assert ranges[0][0] == 0 and ranges[-1][1] == population.size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert report.num_chips == math.ceil(report.num_cores / limits.cores_per_chip)


# ------------------------------------------------------------------------------------------ Intel's MNIST network
@pytest.mark.skipif(not MNIST_NET.is_file(), reason="tests/data/trained_mnist_network.net is not there")
def test_intel_mnist_network_needs_the_cores_intels_compiler_used() -> None:
    """lava-dl's trained MNIST netx network (784-128-64-10 CUBA) ran on 3 + 1 + 1 = 5 Loihi 2 cores."""
    from lavaflow.deploy.netx import read_netx

    report = resource_report(read_netx(MNIST_NET).spec)
    print(f"lavaflow: {report.num_cores} cores {list(report.cores_per_layer().values())}; Intel's compiler: 5 "
          "cores [3, 1, 1]")
    assert abs(report.num_cores - 5) <= 1
    assert list(report.cores_per_layer().values()) == [3, 1, 1]


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"),
                         [((1, 1), (1, 1), (1, 1), 1), ((2, 1), (0, 2), (1, 1), 2), ((1, 2), (1, 0), (2, 1), 3)])
def test_fan_outs_equal_the_columns_of_the_unrolled_matrix(stride, padding, dilation, groups) -> None:
    """Each source's fan-out of a conv (stored synapses, and with nonzero_only the non-zero ones) equals the count of
    its column in the dense matrix the conv unrolls to (deploy.lowering.conv_matrix), with zeros in the kernel;
    a dense connection counts every target, or its non-zero weights."""
    rng = np.random.default_rng(5)
    kernel = rng.integers(-3, 4, size=(6, 6 // groups, 3, 2)).astype(float)
    kernel[kernel == 0] = 1.0
    kernel[rng.random(kernel.shape) < 0.3] = 0.0  # zero weights: stored, but no accumulate
    conv = Conv(kernel, (6, 7, 6), stride=stride, padding=padding, dilation=dilation, groups=groups)
    stored = conv_matrix(np.ones_like(kernel), conv) != 0
    nonzero = conv_matrix(kernel, conv) != 0
    assert nonzero.sum() < stored.sum()
    np.testing.assert_array_equal(fan_outs(kernel, 6 * 7 * 6, conv=conv), stored.sum(0))
    np.testing.assert_array_equal(fan_outs(kernel, 6 * 7 * 6, conv=conv, nonzero_only=True), nonzero.sum(0))
    dense = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    np.testing.assert_array_equal(fan_outs(dense, 3), [2, 2, 2])
    np.testing.assert_array_equal(fan_outs(dense, 3, nonzero_only=True), [1, 1, 1])
