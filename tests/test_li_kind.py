"""The non-spiking leaky integrator ``li`` (NIR's LI / CubaLI) through every layer: reference float vs Lava float
voltage traces, reference integers vs Lava fixed bit for bit (fused and plain graph), its impulse response in
closed form, its silence, and the quantiser's output."""

from __future__ import annotations

import numpy as np
import pytest

from lavaflow.deploy.lowering import network_records
from lavaflow.deploy.quantize import dequantize, quantize
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import run_lava
from lavaflow.processes.kinds import PROCESS_KINDS, process_kind

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only
TRACES = ["out.u", "out.v", "out.spikes"]


def _li_spec(seed: int, time_steps: int = 12) -> NetSpec:
    """Input → soft-reset hidden → li out; the hidden layer spikes, the output integrates them."""
    rng = np.random.default_rng(seed)
    n_in, hidden, out = 5, 7, 3
    hidden_neurons = SoftResetNeurons(bias=rng.normal(0.02, 0.05, hidden), threshold=1.0, voltage_decay=0.125)
    out_neurons = LeakyIntegrator(bias=rng.normal(0.0, 0.05, out), current_decay=0.5, voltage_decay=0.125)
    connections = (
        Connection(INPUT, "hidden", Dense(rng.normal(0.3, 0.5, (hidden, n_in))), 0),
        Connection("hidden", "out", Dense(rng.normal(0.0, 0.6, (out, hidden))), 1),
    )
    readout = Readout("hidden", rng.normal(0.0, 1.0, (2, hidden)), np.zeros(2))
    return NetSpec(
        Input((n_in,), "current"), {"hidden": hidden_neurons, "out": out_neurons}, connections, readout, time_steps
    )


def _current(spec: NetSpec, samples: int, seed: int) -> np.ndarray:
    """Constant intensities on a 1/16 grid (exact 8-bit payloads in fixed point)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 17, (samples, *spec.input.shape)) / 16.0
    return np.broadcast_to(values, (spec.time_steps, *values.shape)).copy()


@LAVA_TIMEOUT
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_li_lava_float_equals_the_reference(fused: bool, batch_size: int) -> None:
    spec = _li_spec(1)
    inputs = _current(spec, 3, seed=1)
    reference = simulate(spec, inputs, record=TRACES)
    result = run_lava(spec, inputs, backend="lava-float", fused=fused, batch_size=batch_size, record=TRACES)
    for name in TRACES:
        expected = reference.records[name].transpose(1, 0, 2)  # (T, N, n) → (N, T, n)
        np.testing.assert_allclose(result.records[name], expected, rtol=0, atol=1e-9)
    assert np.abs(reference.records["out.v"]).max() > 0.1  # the traces carry the hidden spikes
    assert reference.counts["hidden"].sum() > 0
    np.testing.assert_array_equal(result.records["out.spikes"], 0)


@LAVA_TIMEOUT
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_li_lava_fixed_equals_the_integer_reference(fused: bool, batch_size: int) -> None:
    spec = _li_spec(2)
    fixed, _ = quantize(spec)
    inputs = _current(spec, 3, seed=2)
    reference = simulate(fixed, inputs, record=TRACES)
    result = run_lava(fixed, inputs, backend="lava-fixed", fused=fused, batch_size=batch_size, record=TRACES)
    for name in TRACES:
        np.testing.assert_array_equal(result.records[name], reference.records[name].transpose(1, 0, 2))
    assert np.abs(reference.records["out.v"]).max() > 0
    np.testing.assert_array_equal(result.records["out.spikes"], 0)
    np.testing.assert_array_equal(result.predictions, reference.predictions)


def _lone(amplitude_weight: float, a: float, b: float, bias: float = 0.0, time_steps: int = 10) -> NetSpec:
    neurons = LeakyIntegrator(np.array([bias]), current_decay=1 - a, voltage_decay=1 - b)
    connection = Connection(INPUT, "out", Dense(np.full((1, 1), amplitude_weight)), 0)
    readout = Readout("out", np.eye(1), np.zeros(1))
    return NetSpec(Input((1,), "events"), {"out": neurons}, (connection,), readout, time_steps)


def test_li_impulse_response_in_closed_form() -> None:
    """One input pulse A at step 1 gives u[t] = A·a^(t−1) and v[t] = A·Σ_{j=1..t} a^(j−1)·b^(t−j)
    = A·(a^t − b^t)/(a − b) for a ≠ b, with a = 1 − du, b = 1 − dv; and no spike, however large v grows."""
    a, b, amplitude = 0.75, 0.875, 50.0
    spec = _lone(1.0, a, b)
    inputs = np.zeros((10, 1, 1))
    inputs[0] = amplitude
    result = simulate(spec, inputs, record=["out.u", "out.v", "out.spikes"])
    t = np.arange(1, 11)
    np.testing.assert_allclose(result.records["out.u"][:, 0, 0], amplitude * a ** (t - 1), rtol=1e-12)
    np.testing.assert_allclose(result.records["out.v"][:, 0, 0], amplitude * (a**t - b**t) / (a - b), rtol=1e-12)
    np.testing.assert_array_equal(result.records["out.spikes"], 0)


def test_li_bias_drives_v_to_its_fixed_point() -> None:
    """With no input, v[t] = bias·(1 − b^t)/(1 − b) → bias/dv."""
    b, bias = 0.5, 0.25
    spec = _lone(0.0, 0.5, b, bias=bias, time_steps=30)
    v = simulate(spec, np.zeros((30, 1, 1)), record=["out.v"]).records["out.v"][:, 0, 0]
    t = np.arange(1, 31)
    np.testing.assert_allclose(v, bias * (1 - b**t) / (1 - b), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_li_spike_count_is_always_zero(seed: int) -> None:
    spec = _li_spec(seed)
    inputs = _current(spec, 4, seed=seed) * 8.0
    assert simulate(spec, inputs).counts["out"].sum() == 0
    fixed, _ = quantize(spec)
    assert simulate(fixed, _current(spec, 4, seed=seed)).counts["out"].sum() == 0


def test_li_quantises_to_a_valid_fixed_spec(tmp_path) -> None:
    spec = _li_spec(5)
    fixed, _ = quantize(spec)
    fixed.validate()
    population = fixed.populations["out"]
    assert population.kind == "li"
    assert population.du == round(0.5 * 4096) - 1 and population.dv == round(0.125 * 4096)
    path = tmp_path / "fixed.npz"
    fixed.save(path)
    loaded = FixedNetSpec.load(path)
    assert loaded.populations["out"].kind == "li"
    assert loaded.populations["out"].du == population.du
    np.testing.assert_array_equal(loaded.populations["out"].bias_mant, population.bias_mant)
    restored = dequantize(fixed)
    assert isinstance(restored.populations["out"], LeakyIntegrator)
    assert restored.populations["out"].current_decay == 0.5
    for records in (network_records(spec)[0], network_records(fixed)[0]):
        assert process_kind(records[1]) is PROCESS_KINDS["li"]
    saved = tmp_path / "net.npz"
    spec.save(saved)
    assert isinstance(NetSpec.load(saved).populations["out"], LeakyIntegrator)
