"""One generator of random graphs across every neuron kind, every synapse (Dense, Sparse, Conv, pooling), delays
of 1..8 (mixed onto one target, recurrent and feedback links) and both readouts (rate, potential), every
population's spikes and v recorded: Lava float equals the float reference spike for spike, Lava fixed equals the
integer reference bit for bit, on the fused batched model and on the plain graph of Lava's own processes.

Lava has no delayed Conv, so conv links between populations keep Dense's own step (1); Dense and Sparse links take
any delay. Several samples in a row, so that a residue leaking from one sample into the next would show.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lavaflow.deploy.quantize import quantize
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.kinds import KINDS
from lavaflow.models.kinds.cuba_refractory import CubaRefractoryNeurons
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.lif_potential import PotentialLIFNeurons
from lavaflow.models.netspec import (
    Connection,
    Conv,
    CubaNeurons,
    Dense,
    Input,
    NetSpec,
    Readout,
    SoftResetNeurons,
    Sparse,
    pool_conv,
)
from lavaflow.models.reference import input_payload, simulate
from lavaflow.pipeline.lava.run import run_lava

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only
TIME_STEPS = 12
NUM_SAMPLES = 3
INPUT_SHAPE = (2, 6, 6)
SPIKING_KINDS = ("soft_reset", "cuba", "cuba_refractory", "lif_potential")


def _neurons(kind: str, size: int, shape: tuple[int, ...], rng: np.random.Generator):
    """A population of ``kind`` with random parameters, in the range where random graphs keep firing."""
    bias = rng.normal(0.08, 0.05, size)
    threshold = float(rng.choice([0.6, 1.0, 1.4]))
    decay = float(rng.choice([0.0, 0.125]))
    if kind == "soft_reset":
        reset = float(rng.choice([0.0, -threshold]))
        return SoftResetNeurons(bias, threshold, reset_potential=reset, voltage_decay=decay, shape=shape)
    if kind == "cuba":
        current_decay = float(rng.choice([1.0, 0.5]))
        return CubaNeurons(bias, threshold, current_decay=current_decay, voltage_decay=decay, shape=shape)
    if kind == "cuba_refractory":
        period = int(rng.integers(1, 4))
        return CubaRefractoryNeurons(bias, threshold, 0.5, decay, refractory_period=period, shape=shape)
    if kind == "lif_potential":
        mode = str(rng.choice(["reset", "subtract"]))
        return PotentialLIFNeurons(
            bias, threshold, voltage_decay=0.125, leak_potential=0.2, reset_potential=-0.2, reset_mode=mode, shape=shape
        )
    if kind == "li":
        return LeakyIntegrator(bias, current_decay=0.5, voltage_decay=0.125, shape=shape)
    raise AssertionError(f"no example population for the kind {kind!r}: add one here")


def random_graph(seed: int) -> NetSpec:
    """input (2, 6, 6) → conv → c (3, 6, 6) → sum pool → p (3, 3, 3) → sparse → h ⟲ sparse; input → dense → h;
    h → dense → out and c → dense → out (mixed delays onto out); out → dense → h (feedback). Kinds are drawn per
    population (out may be the non-spiking li, read as a potential), delays of Dense and Sparse links from 1..8."""
    rng = np.random.default_rng(seed)
    kinds = {name: str(rng.choice(SPIKING_KINDS)) for name in ("c", "p", "h")}
    kinds["out"] = str(rng.choice([*SPIKING_KINDS, "li"]))
    shapes = {"c": (3, 6, 6), "p": (3, 3, 3), "h": (), "out": ()}
    sizes = {"c": 108, "p": 27, "h": 10, "out": 4}
    populations = {name: _neurons(kinds[name], sizes[name], shapes[name], rng) for name in sizes}

    def sparse(rows: int, cols: int, density: float, mean: float, spread: float) -> Sparse:
        mask = rng.random((rows, cols)) < density
        return Sparse.from_dense(np.where(mask, rng.normal(mean, spread, (rows, cols)), 0.0))

    def dense(rows: int, cols: int, mean: float, spread: float) -> Dense:
        return Dense(rng.normal(mean, spread, (rows, cols)))

    delays = [int(d) for d in rng.integers(1, 9, size=5)]
    delays[3] = 1 if delays[2] != 1 else 5  # mixed delays onto out: h → out and c → out differ
    kernel = rng.normal(0.25, 0.5, (3, 2, 3, 3))
    connections = (
        Connection("input", "c", Conv(kernel, INPUT_SHAPE, padding=(1, 1)), 0),
        Connection("c", "p", pool_conv("sum", (3, 6, 6), (2, 2)), 1),
        Connection("p", "h", sparse(10, 27, 0.4, 0.3, 0.5), delays[0]),
        Connection("input", "h", dense(10, 72, 0.02, 0.1), 0),
        Connection("h", "h", sparse(10, 10, 0.3, -0.1, 0.4), delays[1]),
        Connection("h", "out", dense(4, 10, 0.3, 0.5), delays[2]),
        Connection("c", "out", dense(4, 108, 0.02, 0.1), delays[3]),
        Connection("out", "h", dense(10, 4, 0.0, 0.4), delays[4]),
    )
    quantity = "potential" if kinds["out"] == "li" or rng.random() < 0.3 else "rate"
    readout = Readout("out", rng.normal(0.0, 1.0, (3, 4)), rng.normal(0.0, 0.1, 3), quantity=quantity)
    return NetSpec(Input(INPUT_SHAPE, "current"), populations, connections, readout, TIME_STEPS)


def _inputs(seed: int) -> np.ndarray:
    """(T, N, 2, 6, 6) constant intensities; the last sample gets none, so a residue of the one before would show."""
    intensities = np.random.default_rng(seed).random((NUM_SAMPLES, *INPUT_SHAPE))
    intensities[-1] = 0.0
    return np.broadcast_to(intensities, (TIME_STEPS, *intensities.shape)).copy()


def _fixed(spec: NetSpec, inputs: np.ndarray) -> tuple[FixedNetSpec, np.ndarray]:
    """The quantised spec with input_scale 1 and its integer payloads, so both simulators read the same numbers."""
    fixed = quantize(spec)[0]
    payloads = input_payload(fixed, inputs).astype(np.float64)
    return dataclasses.replace(fixed, input_scale=1.0), payloads


def _records(spec: NetSpec | FixedNetSpec) -> list[str]:
    return [f"{name}.{variable}" for name in spec.populations for variable in ("spikes", "v")]


SEEDS = [3, 4, 5, 6]
GRAPHS = [pytest.param(True, 2, id="fused-batched"), pytest.param(False, 1, id="plain")]


def test_the_generator_covers_every_kind_synapse_delay_and_readout() -> None:
    """The fixtures test what they claim: across the seeds every kind, both readouts, delays up to 8 and mixed
    delays onto one target occur, and every spiking population fires."""
    kinds, quantities, longest = set(), set(), 0
    for seed in SEEDS:
        spec = random_graph(seed)
        kinds |= {type(p).__name__ for p in spec.populations.values()}
        quantities.add(spec.readout.quantity)
        longest = max(longest, *(c.delay_steps for c in spec.connections))
        assert len({c.delay_steps for c in spec.connections if c.target == "out"}) == 2
        assert {type(c.synapse) for c in spec.connections} == {Conv, Dense, Sparse}
        result = simulate(spec, _inputs(seed))
        for name, neurons in spec.populations.items():
            if not isinstance(neurons, LeakyIntegrator):
                assert result.counts[name][:-1].sum() > 0, (seed, name)
    assert kinds == {KINDS[name].node.__name__ for name in KINDS}
    assert quantities == {"rate", "potential"}
    assert longest >= 6


@LAVA_TIMEOUT
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fused", "batch_size"), GRAPHS)
def test_float_random_graphs_equal_the_reference(seed: int, fused: bool, batch_size: int) -> None:
    spec, inputs = random_graph(seed), _inputs(seed)
    record = _records(spec)
    reference = simulate(spec, inputs, record=record)

    result = run_lava(spec, inputs, backend="lava-float", fused=fused, batch_size=batch_size, record=record)

    for name in record:
        expected = reference.records[name].transpose(1, 0, 2)
        if name.endswith(".spikes"):
            np.testing.assert_array_equal(result.records[name], expected, err_msg=name)
        else:
            np.testing.assert_allclose(result.records[name], expected, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(result.logits, reference.logits, rtol=1e-12, atol=1e-12)


@LAVA_TIMEOUT
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fused", "batch_size"), GRAPHS)
def test_fixed_random_graphs_equal_the_integer_reference(seed: int, fused: bool, batch_size: int) -> None:
    fixed, payloads = _fixed(random_graph(seed), _inputs(seed))
    record = _records(fixed)
    reference = simulate(fixed, payloads, record=record)

    result = run_lava(fixed, payloads, backend="lava-fixed", fused=fused, batch_size=batch_size, record=record)

    for name in record:
        np.testing.assert_array_equal(result.records[name], reference.records[name].transpose(1, 0, 2), err_msg=name)
    np.testing.assert_array_equal(result.logits, reference.logits)


def test_a_potential_readout_reads_the_final_voltage() -> None:
    """logits = W·v[T] + b in float, and the fixed point's integer v times its unit comes within its rounding."""
    spec = random_graph(SEEDS[0])
    spec = dataclasses.replace(spec, readout=dataclasses.replace(spec.readout, quantity="potential"))
    inputs = _inputs(SEEDS[0])
    result = simulate(spec, inputs, record=["out.v"])
    final = result.records["out.v"][-1]
    np.testing.assert_allclose(result.logits, final @ spec.readout.weight.T + spec.readout.bias, rtol=1e-12)
    rates = simulate(dataclasses.replace(spec, readout=dataclasses.replace(spec.readout, quantity="rate")), inputs)
    assert not np.allclose(rates.logits, result.logits)
