"""New neuron kinds, each through every layer: reference float vs Lava float spike for spike, reference integers vs
Lava fixed bit for bit (fused and plain graph), the quantiser's output, and the kind's dynamics in closed form."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lavaflow.deploy.lowering import network_records
from lavaflow.deploy.quantize import dequantize, quantize
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.kinds.cuba_refractory import (
    CubaRefractoryNeurons,
    CubaRefractoryParams,
    CubaRefractoryState,
    cuba_refractory_step,
)
from lavaflow.models.kinds.lif_potential import PotentialLIFNeurons, PotentialLIFParams, potential_lif_step
from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import run_lava
from lavaflow.processes.kinds import PROCESS_KINDS, process_kind

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only


# ------------------------------------------------------------------------------------------ cuba_refractory
def _refractory_spec(seed: int, refractory: int | None = None, time_steps: int = 14) -> NetSpec:
    """Input → hidden ⇄ out, all refractory CUBA, strong enough weights that holding v changes the spikes."""
    rng = np.random.default_rng(seed)
    n_in, hidden, out = 5, 7, 4

    def neurons(size: int) -> CubaRefractoryNeurons:
        return CubaRefractoryNeurons(
            bias=rng.normal(0.02, 0.05, size),
            threshold=float(rng.choice([0.5, 1.0])),
            current_decay=float(rng.choice([1.0, 0.5])),
            voltage_decay=float(rng.choice([0.0, 0.125])),
            refractory_period=int(rng.integers(1, 4)) if refractory is None else refractory,
        )

    connections = (
        Connection(INPUT, "hidden", Dense(rng.normal(0.25, 0.5, (hidden, n_in))), 0),
        Connection("hidden", "out", Dense(rng.normal(0.15, 0.6, (out, hidden))), 1),
        Connection("out", "hidden", Dense(rng.normal(0.0, 0.4, (hidden, out))), 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, out)), np.zeros(3))
    populations = {"hidden": neurons(hidden), "out": neurons(out)}
    return NetSpec(Input((n_in,), "current"), populations, connections, readout, time_steps)


def _current(spec: NetSpec, samples: int, seed: int) -> np.ndarray:
    """Constant intensities on a 1/16 grid (exact 8-bit payloads in fixed point)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 17, (samples, *spec.input.shape)) / 16.0
    return np.broadcast_to(values, (spec.time_steps, *values.shape)).copy()


def test_refractory_changes_the_spikes() -> None:
    """The parity tests below would prove little if R did nothing on their networks."""
    spec, inputs = _refractory_spec(3), _current(_refractory_spec(3), 4, seed=1)
    held = simulate(spec, inputs).counts["hidden"]
    free = simulate(_refractory_spec(3, refractory=0), inputs).counts["hidden"]
    assert held.sum() > 0 and not np.array_equal(held, free)


@LAVA_TIMEOUT
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_refractory_lava_float_equals_the_reference(fused: bool, batch_size: int) -> None:
    spec = _refractory_spec(3)
    inputs = _current(spec, 3, seed=1)
    reference = simulate(spec, inputs)
    result = run_lava(spec, inputs, backend="lava-float", fused=fused, batch_size=batch_size)
    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_allclose(result.logits, reference.logits, rtol=0, atol=1e-12)
    assert reference.counts["out"].sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_refractory_lava_fixed_equals_the_integer_reference(fused: bool, batch_size: int) -> None:
    spec = _refractory_spec(4)
    fixed, _ = quantize(spec)
    inputs = _current(spec, 3, seed=2)
    reference = simulate(fixed, inputs)
    result = run_lava(fixed, inputs, backend="lava-fixed", fused=fused, batch_size=batch_size)
    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    assert reference.counts["out"].sum() > 0


def test_refractory_quantises_to_a_valid_fixed_spec(tmp_path) -> None:
    spec = _refractory_spec(5)
    fixed, _ = quantize(spec)
    for name, population in fixed.populations.items():
        assert population.kind == "cuba_refractory"
        assert population.refractory == spec.populations[name].refractory_period
    path = tmp_path / "fixed.npz"
    fixed.save(path)
    loaded = FixedNetSpec.load(path)
    assert [p.refractory for p in loaded.populations.values()] == [p.refractory for p in fixed.populations.values()]
    restored = dequantize(fixed)
    for name, neurons in restored.populations.items():
        assert isinstance(neurons, CubaRefractoryNeurons)
        assert neurons.refractory_period == spec.populations[name].refractory_period
    for records in (network_records(spec)[0], network_records(fixed)[0]):
        assert all(process_kind(r) is PROCESS_KINDS["cuba_refractory"] for r in records)
    object.__setattr__(fixed.populations["out"], "refractory", 256)
    with pytest.raises(Exception, match="refractory"):
        fixed.validate()


def _single(bias: float, threshold: float, refractory: int, current_decay: float = 1.0, voltage_decay: float = 0.0):
    """One refractory neuron driven by its bias only (the input weight is 0), T = 20."""
    neurons = CubaRefractoryNeurons(
        np.array([bias]), threshold, current_decay, voltage_decay, refractory_period=refractory
    )
    connection = Connection(INPUT, "out", Dense(np.zeros((1, 1))), 0)
    return NetSpec(Input((1,), "current"), {"out": neurons}, (connection,), Readout("out", np.eye(1), np.zeros(1)), 20)


@pytest.mark.parametrize(("step", "threshold", "refractory"), [(0.25, 0.6, 2), (0.5, 0.5, 3), (0.125, 0.3, 0)])
def test_refractory_spike_times_in_closed_form(step: float, threshold: float, refractory: int) -> None:
    """A constant drive b with no leak fires first at k = ⌊θ/b⌋ + 1 (v = k·b > θ), then is held R steps and
    needs k more: spikes at t = k, 2k + R, 3k + 2R, … (1-based); also the integer reference, b and θ exact."""
    k = int(np.floor(threshold / step)) + 1
    expected = np.zeros(20, dtype=np.uint8)
    expected[k - 1 :: k + refractory] = 1
    spec = _single(step, threshold, refractory)
    inputs = np.zeros((20, 1, 1))
    spikes = simulate(spec, inputs, record=["out.spikes"]).records["out.spikes"][:, 0, 0]
    np.testing.assert_array_equal(spikes, expected)
    fixed, _ = quantize(spec)
    fixed_spikes = simulate(fixed, inputs, record=["out.spikes"]).records["out.spikes"][:, 0, 0]
    np.testing.assert_array_equal(fixed_spikes, expected)


def test_refractory_impulse_response_in_closed_form() -> None:
    """Below threshold the kind is CUBA: one input pulse A at step 1 gives u[t] = A·a^(t−1) and
    v[t] = A·Σ_{j=1..t} a^(j−1)·b^(t−j), with a = 1 − du, b = 1 − dv."""
    a, b, amplitude = 0.75, 0.875, 0.5
    neurons = CubaRefractoryNeurons(np.zeros(1), 100.0, 1 - a, 1 - b, refractory_period=2)
    connection = Connection(INPUT, "out", Dense(np.ones((1, 1))), 0)
    spec = NetSpec(Input((1,), "events"), {"out": neurons}, (connection,), Readout("out", np.eye(1), np.zeros(1)), 10)
    inputs = np.zeros((10, 1, 1))
    inputs[0] = amplitude
    records = simulate(spec, inputs, record=["out.u", "out.v"]).records
    t = np.arange(1, 11)
    expected_u = amplitude * a ** (t - 1)
    expected_v = np.array([amplitude * sum(a ** (j - 1) * b ** (n - j) for j in range(1, n + 1)) for n in t])
    np.testing.assert_allclose(records["out.u"][:, 0, 0], expected_u, rtol=1e-12)
    np.testing.assert_allclose(records["out.v"][:, 0, 0], expected_v, rtol=1e-12)


def test_refractory_torch_step_equals_the_reference() -> None:
    """The trainers' torch step gives the float reference's spikes (bias 0: the current carries the drive)."""
    spec = _single(0.0, 0.6, 2, current_decay=0.5, voltage_decay=0.125)
    drive = np.random.default_rng(0).uniform(0, 0.8, (20, 1, 1))
    connection = Connection(INPUT, "out", Dense(np.ones((1, 1))), 0)
    spec = NetSpec(spec.input, spec.populations, (connection,), spec.readout, 20)
    expected = simulate(spec, drive, record=["out.spikes"]).records["out.spikes"][:, 0, 0]
    params = CubaRefractoryParams(0.6, 0.5, 0.125, 2)
    zeros = torch.zeros(1, dtype=torch.float64)
    state = CubaRefractoryState(zeros, zeros, zeros)
    spikes = []
    for t in range(20):
        fired, state = cuba_refractory_step(torch.tensor(drive[t, 0], dtype=torch.float64), state, params)
        spikes.append(int(fired.item()))
    np.testing.assert_array_equal(spikes, expected)


# ------------------------------------------------------------------------------------------ lif_potential
def _potential_spec(seed: int, reset_mode: str, time_steps: int = 14) -> NetSpec:
    """Input → hidden ⇄ out, all LIF with random leak and reset potentials."""
    rng = np.random.default_rng(seed)
    n_in, hidden, out = 5, 7, 4

    def neurons(size: int) -> PotentialLIFNeurons:
        return PotentialLIFNeurons(
            bias=rng.normal(0.02, 0.05, size),
            threshold=float(rng.choice([0.5, 1.0])),
            voltage_decay=float(rng.choice([0.125, 0.25])),
            leak_potential=float(rng.uniform(-0.5, 0.5)),
            reset_potential=float(rng.uniform(-0.5, 0.25)),
            reset_mode=reset_mode,
        )

    connections = (
        Connection(INPUT, "hidden", Dense(rng.normal(0.3, 0.5, (hidden, n_in))), 0),
        Connection("hidden", "out", Dense(rng.normal(0.2, 0.6, (out, hidden))), 1),
        Connection("out", "hidden", Dense(rng.normal(0.0, 0.4, (hidden, out))), 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, out)), np.zeros(3))
    populations = {"hidden": neurons(hidden), "out": neurons(out)}
    return NetSpec(Input((n_in,), "current"), populations, connections, readout, time_steps)


@pytest.mark.parametrize("reset_mode", ["reset", "subtract"])
def test_potentials_change_the_spikes(reset_mode: str) -> None:
    """Leak and reset potentials matter on the parity networks: zeroing them changes the spikes."""
    spec = _potential_spec(7, reset_mode)
    inputs = _current(spec, 3, seed=2)
    plain = {
        name: dataclasses.replace(n, leak_potential=0.0, reset_potential=0.0) for name, n in spec.populations.items()
    }
    held = simulate(spec, inputs).counts
    free = simulate(dataclasses.replace(spec, populations=plain), inputs).counts
    assert held["out"].sum() > 0 and held["hidden"].sum() > 0
    assert not np.array_equal(held["hidden"], free["hidden"])


@LAVA_TIMEOUT
@pytest.mark.parametrize("reset_mode", ["reset", "subtract"])
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_potential_lava_float_equals_the_reference(reset_mode: str, fused: bool, batch_size: int) -> None:
    spec = _potential_spec(7, reset_mode)
    inputs = _current(spec, 3, seed=2)
    reference = simulate(spec, inputs)
    result = run_lava(spec, inputs, backend="lava-float", fused=fused, batch_size=batch_size)
    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_allclose(result.logits, reference.logits, rtol=0, atol=1e-12)
    assert reference.counts["out"].sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize("reset_mode", ["reset", "subtract"])
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_potential_lava_fixed_equals_the_integer_reference(reset_mode: str, fused: bool, batch_size: int) -> None:
    spec = _potential_spec(7, reset_mode)
    fixed, _ = quantize(spec)
    inputs = _current(spec, 3, seed=2)
    reference = simulate(fixed, inputs)
    result = run_lava(fixed, inputs, backend="lava-fixed", fused=fused, batch_size=batch_size)
    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    assert reference.counts["out"].sum() > 0


@pytest.mark.parametrize("reset_mode", ["reset", "subtract"])
def test_potential_quantises_to_a_valid_fixed_spec(reset_mode: str, tmp_path) -> None:
    spec = _potential_spec(8, reset_mode)
    fixed, _ = quantize(spec)
    for name, population in fixed.populations.items():
        neurons = spec.populations[name]
        assert population.kind == "lif_potential"
        assert population.reset_mode == ("reset", "subtract").index(reset_mode)
        assert abs(population.v_reset * population.scale - neurons.reset_potential) <= population.scale / 2
        dv = population.dv / 4096
        leak_term = population.leak * population.scale / 64
        assert abs(leak_term - dv * neurons.leak_potential) <= population.scale / 128
    fixed.save(tmp_path / "fixed.npz")
    loaded = FixedNetSpec.load(tmp_path / "fixed.npz")
    assert [(p.v_reset, p.leak, p.reset_mode) for p in loaded.populations.values()] == [
        (p.v_reset, p.leak, p.reset_mode) for p in fixed.populations.values()
    ]
    for name, neurons in dequantize(fixed).populations.items():
        assert isinstance(neurons, PotentialLIFNeurons) and neurons.reset_mode == reset_mode
        assert abs(neurons.leak_potential - spec.populations[name].leak_potential) < 0.05
    for records in (network_records(spec)[0], network_records(fixed)[0]):
        assert all(process_kind(r) is PROCESS_KINDS["lif_potential"] for r in records)
    object.__setattr__(fixed.populations["out"], "v_reset", fixed.populations["out"].vth)
    with pytest.raises(NetSpecError, match="v_reset"):
        fixed.validate()


def _lone_potential(bias: float, threshold: float, **fields: object) -> NetSpec:
    neurons = PotentialLIFNeurons(np.array([bias]), threshold, **fields)  # type: ignore[arg-type]
    connection = Connection(INPUT, "out", Dense(np.zeros((1, 1))), 0)
    return NetSpec(Input((1,), "current"), {"out": neurons}, (connection,), Readout("out", np.eye(1), np.zeros(1)), 20)


def test_potential_relaxes_to_the_leak_potential_in_closed_form() -> None:
    """No input, v(0) = 0: v[t] = v_leak·(1 − (1 − dv)^t); in integers the same recursion with Lava's decay
    (toward zero) and the 24-bit leak constant, written out here with Python ints."""
    dv, v_leak = 0.25, -0.75
    spec = _lone_potential(0.0, 1.0, voltage_decay=dv, leak_potential=v_leak, reset_potential=-1.0)
    inputs = np.zeros((20, 1, 1))
    v = simulate(spec, inputs, record=["out.v"]).records["out.v"][:, 0, 0]
    t = np.arange(1, 21)
    np.testing.assert_allclose(v, v_leak * (1 - (1 - dv) ** t), rtol=1e-12, atol=1e-15)
    fixed, _ = quantize(spec)
    population = fixed.populations["out"]
    keep, leak, value, expected = 4096 - population.dv, population.leak, 0, []
    for _ in range(20):
        product = value * keep
        value = (abs(product) >> 12) * (1 if product >= 0 else -1) + leak
        expected.append(value)
    np.testing.assert_array_equal(simulate(fixed, inputs, record=["out.v"]).records["out.v"][:, 0, 0], expected)


@pytest.mark.parametrize("reset_mode", ["reset", "subtract"])
def test_potential_spike_counts_in_closed_form(reset_mode: str) -> None:
    """Constant drive b, no leak (dv = 0), D = θ − v_reset: reset mode fires at k₁ = ⌊θ/b⌋ + 1 and then every
    m = ⌊D/b⌋ + 1 steps; subtract mode has fired n(t) = max(0, ⌈(t·b − θ)/D⌉) times by step t. Dyadic values, so
    the float reference is exact."""
    b, theta, v_reset = 0.25, 0.625, -0.125
    spec = _lone_potential(b, theta, reset_potential=v_reset, leak_potential=3.0, reset_mode=reset_mode)
    spikes = simulate(spec, np.zeros((20, 1, 1)), record=["out.spikes"]).records["out.spikes"][:, 0, 0]
    t = np.arange(1, 21)
    d = theta - v_reset
    if reset_mode == "reset":
        first, period = int(theta // b) + 1, int(d // b) + 1
        expected = np.zeros(20, dtype=np.uint8)
        expected[first - 1 :: period] = 1
        np.testing.assert_array_equal(spikes, expected)
    else:
        counts = np.maximum(0, np.ceil((t * b - theta) / d)).astype(int)
        np.testing.assert_array_equal(np.cumsum(spikes), counts)


def test_potential_torch_step_equals_the_reference() -> None:
    """The trainers' torch step gives the float reference's spikes in both reset modes (bias 0: I carries it)."""
    drive = np.random.default_rng(1).uniform(0, 0.6, (20, 1, 1))
    for mode in ("reset", "subtract"):
        spec = _lone_potential(0.0, 0.6, voltage_decay=0.25, leak_potential=0.5, reset_potential=-0.25, reset_mode=mode)
        connection = Connection(INPUT, "out", Dense(np.ones((1, 1))), 0)
        spec = dataclasses.replace(spec, connections=(connection,))
        expected = simulate(spec, drive, record=["out.spikes"]).records["out.spikes"][:, 0, 0]
        params = PotentialLIFParams(0.6, 0.25, 0.5, -0.25, mode)
        voltage, spikes = torch.zeros(1, dtype=torch.float64), []
        for t in range(20):
            fired, voltage = potential_lif_step(torch.tensor(drive[t, 0], dtype=torch.float64), voltage, params)
            spikes.append(int(fired.item()))
        np.testing.assert_array_equal(spikes, expected)


# ------------------------------------------------------------------------------------------ both kinds
def test_new_kinds_save_and_load_as_themselves(tmp_path) -> None:
    """The NetSpec file keeps each new node with its own fields (reset_mode as a string, R as an int)."""
    populations = {**_refractory_spec(3).populations, "lif": _potential_spec(7, "subtract").populations["out"]}
    spec = dataclasses.replace(_refractory_spec(3), populations=populations)
    spec.save(tmp_path / "net.npz")
    loaded = NetSpec.load(tmp_path / "net.npz")
    for name, neurons in spec.populations.items():
        other = loaded.populations[name]
        assert type(other) is type(neurons)
        for field in dataclasses.fields(neurons):
            np.testing.assert_array_equal(getattr(other, field.name), getattr(neurons, field.name))
