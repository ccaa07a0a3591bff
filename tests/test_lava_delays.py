"""Connections with delays of 1..MAX_DELAY steps in the Lava export: spike parity with the reference simulator
(float spike for spike, fixed point bit for bit) on the fused batched model and on the plain graph of Lava's
DelayDense, on random graphs with feedback and mixed delays onto one target, several samples in a row so that a
delayed spike leaking from one sample into the next would show."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lavaflow.deploy.lowering import check_lava_export, network_records
from lavaflow.deploy.quantize import quantize
from lavaflow.deploy.run_config import run_config
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import Connection, Conv, CubaNeurons, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.reference import input_payload, simulate
from lavaflow.pipeline.lava.run import build_lava_graph, run_lava
from lavaflow.pipeline.lava.session import run_and_read
from lavaflow.processes.topology import INPUT_SOURCE, MAX_DELAY, Projection, check_topology

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only
TIME_STEPS = 14
NUM_SAMPLES = 3
N_IN = 5


def _random_spec(seed: int, *, time_steps: int = TIME_STEPS) -> NetSpec:
    """input → a → b → out, a → out and b → out (mixed delays onto out), out → a (feedback), b → b (recurrent);
    random sizes, neuron kinds, weights, thresholds and biases, and delays of 2..8 steps (one link keeps 1)."""
    rng = np.random.default_rng(seed)
    sizes = {"a": int(rng.integers(5, 9)), "b": int(rng.integers(4, 8)), "out": int(rng.integers(3, 6))}

    def neurons(size: int) -> SoftResetNeurons | CubaNeurons:
        threshold = float(rng.choice([0.6, 1.0, 1.4]))
        bias = rng.normal(0.08, 0.05, size)
        if rng.random() < 0.3:
            return CubaNeurons(bias, threshold, current_decay=float(rng.choice([1.0, 0.5])), voltage_decay=0.1)
        reset = float(rng.choice([0.0, -threshold]))
        return SoftResetNeurons(bias, threshold, reset_potential=reset, voltage_decay=float(rng.choice([0.0, 0.15])))

    def dense(target: str, source_size: int, mean: float, spread: float) -> Dense:
        return Dense(rng.normal(mean, spread, (sizes[target], source_size)))

    delays = rng.integers(2, 9, size=5)
    delays[rng.integers(0, 5)] = 1  # Dense's own step beside DelayDense, onto the same targets
    connections = (
        Connection("input", "a", dense("a", N_IN, 0.3, 0.6), 0),
        Connection("a", "b", dense("b", sizes["a"], 0.25, 0.6), int(delays[0])),
        Connection("a", "out", dense("out", sizes["a"], 0.2, 0.6), int(delays[1])),
        Connection("b", "out", dense("out", sizes["b"], 0.2, 0.6), int(delays[2])),
        Connection("out", "a", dense("a", sizes["out"], 0.0, 0.5), int(delays[3])),
        Connection("b", "b", dense("b", sizes["b"], -0.1, 0.4), int(delays[4])),
    )
    populations = {name: neurons(size) for name, size in sizes.items()}
    readout = Readout("out", rng.normal(0.0, 1.0, (3, sizes["out"])), rng.normal(0.0, 0.1, 3))
    return NetSpec(Input((N_IN,), "current"), populations, connections, readout, time_steps)


def _inputs(num_samples: int, seed: int, time_steps: int = TIME_STEPS) -> np.ndarray:
    """(T, N, n_in) constant intensities; the last sample gets no input: biases alone drive it, so a residue leaked
    from the busy sample before it would stand out."""
    rng = np.random.default_rng(seed)
    intensities = rng.random((num_samples, N_IN))
    intensities[-1] = 0.0
    return np.broadcast_to(intensities, (time_steps, num_samples, N_IN)).copy()


def _fixed(spec: NetSpec, inputs: np.ndarray) -> tuple[FixedNetSpec, np.ndarray]:
    """The quantised spec with input_scale 1 and its integer payloads, so both simulators read the same numbers."""
    fixed = quantize(spec)[0]
    payloads = input_payload(fixed, inputs).astype(np.float64)
    return dataclasses.replace(fixed, input_scale=1.0), payloads


def _sample_counts(spec: NetSpec | FixedNetSpec, payloads: np.ndarray, backend: str, *, fused: bool, record: str):
    """Per-sample spike counts of population ``record`` from the sink, (N, n)."""
    batch_size = 2 if fused else 1
    graph = build_lava_graph(spec, payloads, fused=fused, batch_size=batch_size, record=record)
    config = run_config(backend, select_sub_proc_model=not fused)
    counts = run_and_read(graph.sink, graph.num_steps, config, graph.sink.counts.get, timeout_s=120).value
    return counts[: graph.num_samples]


GRAPHS = [pytest.param(True, 2, id="fused-batched"), pytest.param(False, 1, id="plain")]
SEEDS = [21, 22]


def test_random_graphs_have_long_and_mixed_delays_and_make_every_population_fire() -> None:
    """The fixtures test what they claim: delays up to 8 and mixed delays onto 'out', and spikes everywhere."""
    for seed in SEEDS:
        spec = _random_spec(seed)
        onto_out = {c.delay_steps for c in spec.connections if c.target == "out"}
        assert max(c.delay_steps for c in spec.connections) >= 4
        assert len(onto_out) == 2
        reference = simulate(spec, _inputs(NUM_SAMPLES, seed))
        assert all(counts[:-1].sum() > 0 for counts in reference.counts.values()), seed


@LAVA_TIMEOUT
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fused", "batch_size"), GRAPHS)
def test_float_delays_equal_the_reference_spike_for_spike(seed: int, fused: bool, batch_size: int) -> None:
    spec = _random_spec(seed)
    inputs = _inputs(NUM_SAMPLES, seed)
    reference = simulate(spec, inputs)

    result = run_lava(spec, inputs, backend="lava-float", fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_allclose(result.logits, reference.logits, rtol=0, atol=1e-12)
    assert reference.counts["out"].sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fused", "batch_size"), GRAPHS)
def test_fixed_delays_equal_the_reference_bit_for_bit(seed: int, fused: bool, batch_size: int) -> None:
    spec = _random_spec(seed)
    fixed, payloads = _fixed(spec, _inputs(NUM_SAMPLES, seed))
    reference = simulate(fixed, payloads)

    result = run_lava(fixed, payloads, backend="lava-fixed", fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    assert reference.counts["out"].sum() > 0


def _uniform_delays(delay: int) -> NetSpec:
    """A random graph whose links all have ``delay`` steps, but a → out keeps 1 (mixed delays onto 'out')."""
    spec = _random_spec(25)
    connections = tuple(
        c if c.source == "input" or (c.source, c.target) == ("a", "out") else dataclasses.replace(c, delay_steps=delay)
        for c in spec.connections
    )
    return dataclasses.replace(spec, connections=connections)


@LAVA_TIMEOUT
@pytest.mark.parametrize("delay", [*range(2, 9), TIME_STEPS + 6])  # the last: longer than a sample, never arrives
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
@pytest.mark.parametrize(("fused", "batch_size"), GRAPHS)
def test_every_delay_from_2_to_8_matches_the_reference(delay: int, backend: str, fused: bool, batch_size: int) -> None:
    spec = _uniform_delays(delay)
    inputs = _inputs(NUM_SAMPLES, delay)
    simulated: NetSpec | FixedNetSpec = spec
    if backend == "lava-fixed":
        simulated, inputs = _fixed(spec, inputs)
    reference = simulate(simulated, inputs)
    assert reference.counts["out"].sum() > 0 and (reference.counts["b"][:-1].sum() > 0 or delay > TIME_STEPS)

    result = run_lava(simulated, inputs, backend=backend, fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused-batched", "plain"])
def test_a_recorded_hidden_population_with_delayed_inputs_matches_the_reference(backend: str, fused: bool) -> None:
    """'b' is fed with a delay and by its own delayed recurrence; the sink counts it instead of the readout's."""
    spec = _random_spec(23)
    inputs = _inputs(NUM_SAMPLES, 23)
    simulated: NetSpec | FixedNetSpec = spec
    if backend == "lava-fixed":
        simulated, inputs = _fixed(spec, inputs)
    reference = simulate(simulated, inputs).counts["b"]
    payloads = inputs.reshape(TIME_STEPS, NUM_SAMPLES, -1).transpose(1, 0, 2)

    counts = _sample_counts(simulated, payloads, backend, fused=fused, record="b")

    np.testing.assert_array_equal(counts, reference)
    assert reference.sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize(("fused", "batch_size"), GRAPHS)
def test_delayed_projections_floor_negative_weight_exponents_as_denses_do(fused: bool, batch_size: int) -> None:
    """DelayDense shifts each step's W·s by weight_exp before buffering it, as Dense shifts before sending."""
    fixed, payloads = _fixed(_random_spec(24), _inputs(NUM_SAMPLES, 24))
    connections = tuple(
        dataclasses.replace(c, weight_exp=c.weight_exp - 2) if c.delay_steps > 1 else c for c in fixed.connections
    )
    shifted = dataclasses.replace(fixed, connections=connections)
    reference = simulate(shifted, payloads)
    assert not np.array_equal(reference.counts["out"], simulate(fixed, payloads).counts["out"])

    result = run_lava(shifted, payloads, backend="lava-fixed", fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])


def _delayed_conv_spec(delay: int) -> NetSpec:
    """input (1, 5, 5) → conv (2, 3, 3) → dense out, the conv's output reaching 'out' ``delay`` steps later."""
    rng = np.random.default_rng(5)
    conv = Conv(rng.normal(0.2, 0.4, (2, 1, 3, 3)), (1, 5, 5), (1, 1), (0, 0))
    populations = {
        "conv": SoftResetNeurons(rng.normal(0.05, 0.05, conv.out_size), 0.8, shape=conv.output_shape),
        "mid": SoftResetNeurons(rng.normal(0.05, 0.05, conv.out_size), 0.7, shape=conv.output_shape),
        "out": SoftResetNeurons(rng.normal(0.05, 0.05, 3), 0.8),
    }
    relay = Conv(rng.normal(0.3, 0.3, (2, 2, 1, 1)), conv.output_shape, (1, 1), (0, 0))
    connections = (
        Connection("input", "conv", conv, 0),
        Connection("conv", "mid", relay, delay),
        Connection("mid", "out", Dense(rng.normal(0.2, 0.4, (3, conv.out_size))), 1),
    )
    return NetSpec(Input((1, 5, 5), "current"), populations, connections, Readout("out", np.eye(3), np.zeros(3)), 10)


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_the_fused_model_delays_convolutions_too(backend: str) -> None:
    spec = _delayed_conv_spec(3)
    inputs = np.broadcast_to(np.random.default_rng(6).random((3, 1, 5, 5)), (10, 3, 1, 5, 5)).copy()
    simulated: NetSpec | FixedNetSpec = spec
    if backend == "lava-fixed":
        simulated, inputs = _fixed(spec, inputs)
    reference = simulate(simulated, inputs)

    result = run_lava(simulated, inputs, backend=backend, fused=True, batch_size=2)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    assert reference.counts["out"].sum() > 0


def test_the_plain_graph_refuses_a_delayed_convolution_and_says_why() -> None:
    spec = _delayed_conv_spec(2)
    graph = build_lava_graph(spec, np.zeros((1, spec.time_steps, 25)), fused=False, batch_size=1)
    with pytest.raises(Exception, match="no delayed Conv"):
        run_and_read(graph.sink, graph.num_steps, run_config("lava-float", select_sub_proc_model=True),
                     graph.sink.counts.get, timeout_s=60)


# ------------------------------------------------------------------------------------------ lowering and checks
def test_projections_carry_the_connections_delays() -> None:
    spec = _random_spec(21)
    _, projections = network_records(spec)
    assert [p.delay for p in projections] == [1, *(c.delay_steps for c in spec.connections[1:])]
    assert projections[0].source == INPUT_SOURCE
    fixed_projections = network_records(quantize(spec)[0])[1]
    assert [p.delay for p in fixed_projections] == [p.delay for p in projections]


def test_delays_beyond_loihis_range_are_refused_before_anything_runs() -> None:
    spec = _random_spec(21)
    connections = (*spec.connections[:-1], dataclasses.replace(spec.connections[-1], delay_steps=MAX_DELAY + 1))
    slow = dataclasses.replace(spec, connections=connections)
    check_lava_export(spec)
    with pytest.raises(NetSpecError, match=f"delay of {MAX_DELAY + 1} steps"):
        check_lava_export(slow)
    with pytest.raises(NetSpecError, match=f"delay of {MAX_DELAY + 1} steps"):
        network_records(slow)


def test_topology_checks_projection_delays() -> None:
    populations, projections = network_records(_random_spec(21))
    check_topology(N_IN, tuple(populations), tuple(projections), 2)
    for index, delay in ((1, 0), (1, MAX_DELAY + 1), (0, 2)):  # (0, 2): input projections keep Dense's step
        changed = list(projections)
        changed[index] = dataclasses.replace(projections[index], delay=delay)
        with pytest.raises(ValueError, match="delay"):
            check_topology(N_IN, tuple(populations), tuple(changed), 2)


def test_a_single_projection_record_defaults_to_denses_one_step() -> None:
    assert Projection(0, 1, np.ones((2, 3))).delay == 1
