"""Quantisation: error bounds, minimal exponents, round trips, float/fixed agreement, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lavaflow.deploy.quantize import (
    MIN_WEIGHT_EXP,
    dequantize,
    exact_input_range,
    quantize,
    spike_preserving_bias_range,
)
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import (
    ACTIVATION_MAX,
    BIAS_EXP_MAX,
    BIAS_MANT_MAX,
    FixedConnection,
    FixedNetSpec,
    FixedPopulation,
)
from lavaflow.models.netspec import (
    INPUT,
    Connection,
    Conv,
    CubaNeurons,
    Dense,
    Input,
    NetSpec,
    Readout,
    SoftResetNeurons,
)
from lavaflow.models.reference import input_payload, simulate


def feedback_net(
    rng: np.random.Generator,
    *,
    n_in: int = 20,
    n_hidden: int = 30,
    n_out: int = 6,
    encoding: str = "rate",
    input_std: float = 0.4,
    feedback_std: float = 0.15,
    time_steps: int = 16,
) -> NetSpec:
    """input → IF hidden with feedback (delay 1) → LIF output; soft reset."""
    populations = {
        "hidden": SoftResetNeurons(bias=rng.normal(0.0, 0.05, n_hidden), threshold=1.0, reset_potential=-0.2),
        "out": SoftResetNeurons(bias=rng.normal(0.0, 0.05, n_out), threshold=1.0, voltage_decay=0.1),
    }
    connections = (
        Connection(INPUT, "hidden", Dense(rng.normal(0.2, input_std, (n_hidden, n_in))), 0),
        Connection("hidden", "hidden", Dense(rng.normal(0.0, feedback_std, (n_hidden, n_hidden))), 1),
        Connection("hidden", "out", Dense(rng.normal(0.1, 0.4, (n_out, n_hidden))), 1),
    )
    readout = Readout("out", np.eye(n_out), np.zeros(n_out))
    return NetSpec(Input((n_in,), encoding), populations, connections, readout, time_steps)


def even_round(values: np.ndarray | float) -> np.ndarray:
    return 2.0 * np.rint(np.asarray(values, dtype=np.float64) / 2.0)


# ---------------------------------------------------------------------------------------- error bounds
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    feedback_octaves=st.integers(-12, 5),
    encoding=st.sampled_from(["rate", "current"]),
    input_range=st.floats(0.25, 4.0),
)
def test_weight_error_is_half_a_step_and_exponents_are_minimal(seed, feedback_octaves, encoding, input_range):
    """|w − ŵ| ≤ scale·2^e / unit (half the even-mantissa step); e is the least exponent ≥ −8 that fits 254."""
    rng = np.random.default_rng(seed)
    spec = feedback_net(rng, encoding=encoding, feedback_std=0.15 * 2.0**feedback_octaves)
    try:
        fixed, report = quantize(spec, input_range=input_range)
    except NetSpecError as error:  # weights 2^±12 apart can exceed what 8-bit mantissas and 18-bit a_in hold
        assert "rounds to zero" in str(error) and abs(feedback_octaves) >= 9
        return
    unit = input_range / 255 if encoding == "current" else 1.0
    for original, quantised in zip(spec.connections, fixed.connections, strict=True):
        scale = fixed.populations[quantised.target].scale
        payload_unit = unit if original.source == INPUT else 1.0
        step = scale * 2.0**quantised.weight_exp
        restored = quantised.weight * step / payload_unit
        weight = original.synapse.weight
        assert np.all(np.abs(weight - restored) <= step / payload_unit * (1 + 1e-9))
        assert np.all(quantised.weight % 2 == 0) and np.abs(quantised.weight).max() <= 254
        largest = np.abs(weight).max() * payload_unit
        assert quantised.weight_exp >= MIN_WEIGHT_EXP
        if quantised.weight_exp > MIN_WEIGHT_EXP:  # one exponent less would not fit
            assert even_round(largest / (scale * 2.0 ** (quantised.weight_exp - 1))) > 254
    coarsened = {note.split(":")[0] for note in report.notes if "coarsened" in note}
    for name, population in fixed.populations.items():
        incoming = [np.abs(c.synapse.weight).max() * (unit if c.source == INPUT else 1.0) for c in spec.incoming(name)]
        finest = min(incoming) / 254
        if name in coarsened:
            assert population.scale > finest
        else:
            assert population.scale == pytest.approx(finest, rel=1e-12)


def test_largest_possible_input_fits_18_bits():
    """Current input, 64 inputs: the scale is coarsened until the worst-case a_in fits, so simulation never raises."""
    rng = np.random.default_rng(3)
    spec = feedback_net(rng, n_in=64, n_hidden=40, encoding="current", input_std=0.5, time_steps=6)
    fixed, report = quantize(spec)
    assert any("hidden" in note and "a_in" in note for note in report.notes)
    for name in fixed.populations:
        positive, negative = 0, 0
        for c in fixed.connections:
            if c.target == name:
                largest_payload = 255 if c.source == INPUT else 1
                positive = positive + np.maximum(c.weight, 0).sum(axis=1) * largest_payload * 2**c.weight_exp
                negative = negative + np.maximum(-c.weight, 0).sum(axis=1) * largest_payload * 2**c.weight_exp
        assert max(positive.max(), negative.max()) <= ACTIVATION_MAX
    extremes = np.ones((6, 4, 64))
    extremes[:, 1] = 0.0
    extremes[:, 2] = rng.random((6, 64))
    extremes[:, 3] = rng.random(64) > 0.5
    result = simulate(fixed, extremes)  # raises NetSpecError if a_in left its range
    assert result.counts["hidden"].shape == (4, 40)


# ------------------------------------------------------------------------------------------ round trip
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_of_representable_integers(data):
    """Integers in the quantiser's canonical form (minimal exponents, full-range mantissas, dyadic scale) survive
    dequantize → quantize unchanged."""
    draw = data.draw
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 2.0 ** draw(st.integers(-8, 4))
    kind = draw(st.sampled_from(["soft_reset", "cuba"]))
    n_in, size = 4, 3

    def mantissas(shape: tuple[int, ...], largest: int) -> np.ndarray:
        values = 2 * rng.integers(-(largest // 2), largest // 2 + 1, shape)
        values.flat[rng.integers(values.size)] = largest * rng.choice([-1, 1])
        return values

    feedback_exp = draw(st.integers(0, 3))
    feedback_largest = 254 if feedback_exp == 0 else 2 * draw(st.integers(64, 127))
    bias_exp = draw(st.integers(0, 7))
    bias_mant = rng.integers(-4095, 4096, size)
    if bias_exp > 0:
        bias_mant[0] = draw(st.integers(2048, 4095)) * rng.choice([-1, 1])
    population = FixedPopulation(
        kind=kind,
        size=size,
        vth=draw(st.integers(0, 131071)),
        dv=draw(st.integers(0, 4095)),
        bias_mant=bias_mant,
        bias_exp=bias_exp,
        scale=scale,
        subtraction=draw(st.integers(1, 131071)) if kind == "soft_reset" else 0,
        du=draw(st.integers(0, 4095)) if kind == "cuba" else 4095,
    )
    connections = (
        FixedConnection(INPUT, "p", mantissas((size, n_in), 254), 0, 0),
        FixedConnection("p", "p", mantissas((size, size), feedback_largest), feedback_exp, 1),
    )
    original = FixedNetSpec(
        Input((n_in,), "rate"), 1.0, {"p": population}, connections, Readout("p", np.eye(size), np.zeros(size)), 5
    )
    fixed, report = quantize(dequantize(original))
    assert report.notes == ()
    restored = fixed.populations["p"]
    for key in ("kind", "size", "vth", "dv", "bias_exp", "scale", "subtraction", "du"):
        assert getattr(restored, key) == getattr(population, key), key
    np.testing.assert_array_equal(restored.bias_mant, population.bias_mant)
    for a, b in zip(fixed.connections, original.connections, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert a.weight_exp == b.weight_exp and a.delay_steps == b.delay_steps


def test_dyadic_if_network_spikes_identically_in_float_and_fixed():
    """IF neurons whose weights, thresholds, subtractions and biases are integer multiples of scale/64 = 2^−12.

    Why identical: with λ = 1 (dv = 0) no step multiplies, so the float voltage is a sum of multiples of 2^−12
    below 2^11 in magnitude, which float64 (53-bit mantissa) represents exactly; the fixed voltage is the same
    sum counted in units of 2^−12 (a_in << 6 and bias_mant << bias_exp are those units). Both compare the same
    number with the same threshold (v ≥ θ ⇔ v·2^12 ≥ vth << 6) and subtract the same D, and no value reaches the
    24-bit saturation, so every spike, and every voltage, agrees. Spike input keeps the input exact too.
    """
    rng = np.random.default_rng(11)
    scale, n_in, n_hidden, n_out, time_steps = 2.0**-6, 12, 16, 5, 20

    def grid_weight(shape: tuple[int, int]) -> np.ndarray:
        mantissa = 2 * rng.integers(-127, 128, shape)
        mantissa[0, 0] = 254  # the largest weight fixes scale = 254·2^−6 / 254
        return mantissa * scale

    populations = {
        "hidden": SoftResetNeurons(
            bias=rng.integers(-800, 800, n_hidden) * 2.0**-12, threshold=64 * scale, reset_potential=-32 * scale
        ),
        "out": SoftResetNeurons(bias=rng.integers(-800, 800, n_out) * 2.0**-12, threshold=80 * scale),
    }
    connections = (
        Connection(INPUT, "hidden", Dense(grid_weight((n_hidden, n_in)) + 0.0), 0),
        Connection("hidden", "hidden", Dense(grid_weight((n_hidden, n_hidden))), 1),
        Connection("hidden", "out", Dense(grid_weight((n_out, n_hidden))), 1),
    )
    spec = NetSpec(
        Input((n_in,), "rate"), populations, connections, Readout("out", np.eye(n_out), np.zeros(n_out)), time_steps
    )
    fixed, report = quantize(spec)
    assert report.notes == () and all(t.max_abs_error == 0 for t in report.tensors)
    spikes = (rng.random((time_steps, 32, n_in)) < 0.5).astype(np.float64)
    record = ["hidden.v", "out.v"]
    float_result, fixed_result = simulate(spec, spikes, record=record), simulate(fixed, spikes, record=record)
    for name in ("hidden", "out"):
        np.testing.assert_array_equal(float_result.counts[name], fixed_result.counts[name])
        np.testing.assert_array_equal(float_result.records[f"{name}.v"] * 2**12, fixed_result.records[f"{name}.v"])
    assert float_result.counts["hidden"].sum() > 100 and float_result.counts["out"].sum() > 10


# ----------------------------------------------------------------------------------- float/fixed agreement
def test_quantised_spike_counts_stay_close_to_float():
    """On a random feedback net, 8-bit weights move few spikes: counts correlate and differ by < 1 per neuron."""
    rng = np.random.default_rng(0)
    spec = feedback_net(rng, n_in=30, n_hidden=60, n_out=10, time_steps=20)
    fixed, _ = quantize(spec)
    spikes = (rng.random((20, 64, 30)) < rng.random((1, 64, 30))).astype(np.float64)
    float_result, fixed_result = simulate(spec, spikes), simulate(fixed, spikes)
    for name in ("hidden", "out"):
        a, b = float_result.counts[name].ravel(), fixed_result.counts[name].ravel()
        assert a.mean() > 1.0
        assert np.corrcoef(a, b)[0, 1] > 0.97
        assert np.abs(a - b).mean() < 0.5
    assert np.mean(float_result.predictions == fixed_result.predictions) > 0.8


def test_conv_and_cuba_quantise_and_run():
    rng = np.random.default_rng(4)
    conv = Conv(rng.normal(0.0, 0.5, (2, 1, 3, 3)), (1, 6, 6), (1, 1), (1, 1))
    populations = {
        "conv": SoftResetNeurons(bias=np.zeros(72), threshold=0.8, shape=conv.output_shape),
        "out": CubaNeurons(bias=np.full(4, 0.05), threshold=0.5, current_decay=0.5, voltage_decay=0.2),
    }
    connections = (
        Connection(INPUT, "conv", conv, 0),
        Connection("conv", "out", Dense(rng.normal(0.1, 0.3, (4, 72))), 1),
    )
    spec = NetSpec(Input((1, 6, 6), "current"), populations, connections, Readout("out", np.eye(4), np.zeros(4)), 12)
    fixed, report = quantize(spec)
    assert fixed.connections[0].conv is conv and fixed.connections[0].weight.shape == (2, 1, 3, 3)
    assert fixed.populations["conv"].shape == (2, 6, 6) and fixed.populations["out"].kind == "cuba"
    assert fixed.populations["out"].du == round(0.5 * 4096) - 1 and fixed.populations["out"].dv == round(0.2 * 4096)
    assert fixed.input_scale == pytest.approx(1 / 255)
    images = np.repeat(rng.random((1, 16, 1, 6, 6)), 12, axis=0)
    float_counts, fixed_counts = simulate(spec, images).counts, simulate(fixed, images).counts
    assert float_counts["conv"].sum() > 50
    assert np.abs(float_counts["conv"] - fixed_counts["conv"]).mean() < 0.5
    assert report.max_relative_error < 0.05


# -------------------------------------------------------------------------------------------- the report
def test_report_counts_clipped_decays_and_serialises():
    populations = {
        "a": SoftResetNeurons(bias=np.zeros(2), threshold=1.0, voltage_decay=1.0),
        "b": CubaNeurons(bias=np.zeros(2), threshold=1.0, current_decay=0.0),
    }
    connections = (
        Connection(INPUT, "a", Dense(np.array([[0.5], [-0.25]])), 0),
        Connection("a", "b", Dense(np.array([[1.0, 0.001], [0.0, 0.3]])), 1),
    )
    spec = NetSpec(Input((1,), "rate"), populations, connections, Readout("b", np.eye(2), np.zeros(2)), 4)
    fixed, report = quantize(spec)
    assert fixed.populations["a"].dv == 4095 and fixed.populations["b"].du == 0
    by_name = {t.name: t for t in report.tensors}
    assert by_name["a.voltage_decay"].clipped == 1 and by_name["b.current_decay"].clipped == 1
    assert "Lava adds 1" in by_name["b.current_decay"].note
    assert by_name["b.current_decay"].max_abs_error == pytest.approx(1 / 4096)
    weight = by_name["connection 1 (a → b).weight"]
    assert weight.zeroed == 1 and weight.max_abs_error == pytest.approx(0.001)  # 0.001 < one step of 1/254
    assert report.clipped == 2
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["clipped"] == 2 and as_dict["scales"]["b"] == pytest.approx(1 / 254)
    text = str(report)
    assert "a.voltage_decay" in text and "max abs err" in text


def test_quantize_is_pure():
    rng = np.random.default_rng(9)
    spec = feedback_net(rng)
    before = [c.synapse.weight.copy() for c in spec.connections]
    quantize(spec)
    for weight, connection in zip(before, spec.connections, strict=True):
        np.testing.assert_array_equal(weight, connection.synapse.weight)


# ---------------------------------------------------------------------------------------------- errors
def test_non_finite_values_raise():
    spec = feedback_net(np.random.default_rng(1))
    spec.connections[1].synapse.weight[0, 0] = np.nan
    with pytest.raises(NetSpecError, match="non-finite"):
        quantize(spec)
    spec = feedback_net(np.random.default_rng(1))
    spec.populations["out"].bias[0] = np.inf
    with pytest.raises(NetSpecError, match=r"out\.bias"):
        quantize(spec)


def one_layer(threshold: float, bias: float, reset_potential: float = 0.0) -> NetSpec:
    neurons = SoftResetNeurons(bias=np.full(2, bias), threshold=threshold, reset_potential=reset_potential)
    connection = Connection(INPUT, "p", Dense(np.array([[1.0, -0.5], [0.25, 0.5]])), 0)
    return NetSpec(Input((2,), "rate"), {"p": neurons}, (connection,), Readout("p", np.eye(2), np.zeros(2)), 4)


def test_unrepresentable_values_raise():
    with pytest.raises(NetSpecError, match="threshold"):
        quantize(one_layer(threshold=1e9, bias=0.0))  # 17-bit vth needs an LSB of 7,629: weights < 2^−8 LSB
    with pytest.raises(NetSpecError, match="bias"):
        quantize(one_layer(threshold=3e7, bias=2e7))  # 13-bit mantissa << 7 needs an LSB of 2,441
    fixed, _ = quantize(one_layer(threshold=3e4, bias=2e4))  # an LSB of 2.4: W·x is shifted right instead
    assert fixed.connections[0].weight_exp < 0
    with pytest.raises(NetSpecError, match="subtraction"):
        quantize(one_layer(threshold=1.0, bias=0.0, reset_potential=1.0 - 1e-9))
    with pytest.raises(NetSpecError, match="input_range"):
        quantize(one_layer(threshold=1.0, bias=0.0), input_range=0.0)
    lopsided = feedback_net(np.random.default_rng(0), encoding="current", feedback_std=40.0 * 2**8)
    with pytest.raises(NetSpecError, match="input_range"):
        quantize(lopsided)  # feedback could inject ~10^5 per step; inputs weigh ~0.005 per payload unit
    fixed, report = quantize(one_layer(threshold=600.0, bias=0.0))  # fits once the scale is coarsened
    population = fixed.populations["p"]
    assert any("coarsened" in note for note in report.notes)
    # dyadic weights (1, ±0.5, 0.25): the scale snaps to 2^−7, on which they and θ are exact
    assert population.scale == 2.0**-7 and population.vth == 76800 <= 131071


# ----------------------------------------------------------------------------- spike-preserving bias clip
def soft_reset_pair(
    rng: np.random.Generator,
    *,
    leaky: bool,
    reset: float,
    encoding: str,
    n_in: int = 4,
    time_steps: int = 12,
    largest: float = 6.0,
) -> NetSpec:
    """input → hidden (with feedback) → out, soft reset; about a third of the biases huge (|b| up to 10^largest)."""
    threshold = float(rng.uniform(0.5, 2.0))

    def neurons(size: int) -> SoftResetNeurons:
        bias = rng.normal(0.0, 0.5, size)
        huge = rng.random(size) < 0.35
        bias[huge] = rng.choice([-1.0, 1.0], huge.sum()) * 10.0 ** rng.uniform(0.5, largest, huge.sum())
        decay = float(rng.uniform(0.05, 1.0)) if leaky else 0.0
        return SoftResetNeurons(bias, threshold, reset * threshold, decay)

    populations = {"hidden": neurons(10), "out": neurons(5)}
    connections = (
        Connection(INPUT, "hidden", Dense(rng.normal(0.1, 0.6, (10, n_in))), 0),
        Connection("hidden", "hidden", Dense(rng.normal(0.0, 0.3, (10, 10))), 1),
        Connection("hidden", "out", Dense(rng.normal(0.0, 0.6, (5, 10))), 1),
    )
    return NetSpec(
        Input((n_in,), encoding), populations, connections, Readout("out", np.eye(5), np.zeros(5)), time_steps
    )


def with_biases(spec: NetSpec, biases: dict[str, np.ndarray]) -> NetSpec:
    populations = {
        name: SoftResetNeurons(biases[name], p.threshold, p.reset_potential, p.voltage_decay, p.shape)
        for name, p in spec.populations.items()
    }
    return NetSpec(spec.input, populations, spec.connections, spec.readout, spec.time_steps)


def adversarial_inputs(rng: np.random.Generator, spec: NetSpec, largest: float, batch: int) -> np.ndarray:
    """(T, B, n_in): for each hidden neuron, every excitatory (then every inhibitory) input at its largest and the
    rest at 0, held for T steps, which reaches its P (N) bound; then random patterns of 0 and ``largest``, and
    random values in between (integers for events)."""
    weight = spec.connections[0].synapse.weight
    time_steps, n_in = spec.time_steps, weight.shape[1]
    extremes = np.concatenate([weight > 0, weight < 0]).astype(np.float64) * largest
    patterns = np.repeat(extremes[None], time_steps, axis=0)
    binary = (rng.random((time_steps, batch, n_in)) < rng.random((1, batch, 1))) * largest
    between = rng.uniform(0.0, largest, (time_steps, batch, n_in))
    if spec.input.encoding != "current":
        between = np.rint(between)
    return np.concatenate([patterns, binary, between], axis=1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    leaky=st.booleans(),
    reset=st.sampled_from([0.0, -1.0, 0.9]),  # u_rest / θ: IDE, SPIDE, and u_rest > θ/2 where 2·D is not enough
    encoding=st.sampled_from(["rate", "current", "events"]),
    largest=st.floats(0.5, 6.0),  # log10 of the largest |bias|: small ones fit 13 + 7 bits and are kept
)
def test_clipping_biases_to_the_spike_preserving_range_changes_no_spike(seed, leaky, reset, encoding, largest):
    """Float reference: clipped biases give the same spike train, step by step, in every population; a bias on the
    edge of its range already never fires (lower) or fires at every step (upper), also for the inputs that reach
    the P and N bounds. In fixed point, the clipped neurons do the same."""
    rng = np.random.default_rng(seed)
    spec = soft_reset_pair(rng, leaky=leaky, reset=reset, encoding=encoding, largest=largest)
    input_range = {"rate": 1.0, "current": float(rng.uniform(0.5, 2.0)), "events": 3.0}[encoding]
    ranges = spike_preserving_bias_range(spec, input_range=input_range)
    edges = {}
    for name, (lower, upper) in ranges.items():
        bias = spec.populations[name].bias
        # neuron 0 below its range, neuron 1 above: small excesses fit the integers, large ones must be clipped
        bias[0] = lower[0] - 10.0 ** rng.uniform(-2.0, largest)
        bias[1] = upper[1] + 10.0 ** rng.uniform(-2.0, largest)
        on_edge = rng.random(bias.size) < 0.2  # put some other biases exactly on an edge
        on_edge[:2] = False
        at_upper = on_edge & (rng.random(bias.size) < 0.5)
        bias[on_edge & ~at_upper], bias[at_upper] = lower[on_edge & ~at_upper], upper[at_upper]
        edges[name] = (on_edge & ~at_upper, at_upper)
    clipped = with_biases(spec, {name: np.clip(p.bias, *ranges[name]) for name, p in spec.populations.items()})
    inputs = adversarial_inputs(rng, spec, input_range if encoding != "events" else 3.0, batch=24)
    record = [f"{name}.spikes" for name in spec.populations]
    original, after = simulate(spec, inputs, record=record), simulate(clipped, inputs, record=record)
    for name, population in spec.populations.items():
        spikes = original.records[f"{name}.spikes"]
        np.testing.assert_array_equal(after.records[f"{name}.spikes"], spikes, err_msg=name)
        lower, upper = ranges[name]
        silent = (population.bias < lower) | edges[name][0]
        firing = (population.bias > upper) | edges[name][1]
        assert silent[0] and firing[1]
        assert not spikes[:, :, silent].any() and spikes[:, :, firing].all(), name

    # Fixed point: the strategy's weights are always representable (this must not raise).
    fixed, report = quantize(spec, input_range=input_range)
    fixed_result = simulate(fixed, inputs, record=record)
    by_name = {t.name: t for t in report.tensors}
    largest_payload = {"rate": 1, "current": 255, "events": 3}[encoding]
    # The scale each population gets from everything but its biases: what clipping is there to keep.
    unbiased, _ = quantize(with_biases(spec, {name: np.zeros(p.size) for name, p in spec.populations.items()}),
                           input_range=input_range)
    for name, population in spec.populations.items():
        lower, upper = ranges[name]
        saturated = (population.bias < lower) | (population.bias > upper)
        p = fixed.populations[name]
        bias = p.bias_mant << p.bias_exp  # 24-bit voltage units: 1/64 of an a_in LSB
        raw_units = population.bias * 64 / p.scale
        fits = np.abs(np.rint(population.bias * (64 / unbiased.populations[name].scale) / 2**BIAS_EXP_MAX)).max()
        clip_count = by_name[f"{name}.bias"].clipped
        if fits <= BIAS_MANT_MAX:
            # Kept: every bias, even beyond its range, is its own value rounded to the nearest bias step.
            assert clip_count == 0 and p.scale == unbiased.populations[name].scale, name
            assert np.all(np.abs(bias - raw_units) <= 2**p.bias_exp / 2 * (1 + 1e-9)), name
            continue
        # Clipped: exactly the biases outside the range; the others are rounded as usual.
        assert clip_count == np.count_nonzero(saturated), name
        inside = ~saturated
        assert np.all(np.abs(bias[inside] - raw_units[inside]) <= 2**p.bias_exp / 2 * (1 + 1e-9)), name
        # The integer form of the bounds, on the integer weights (a_in LSBs) and 24-bit voltage units.
        positive, negative = np.zeros(p.size), np.zeros(p.size)
        for c in fixed.connections:
            if c.target == name:
                payload = (largest_payload if c.source == INPUT else 1) * 2**c.weight_exp
                positive += np.maximum(c.weight, 0).sum(axis=1) * payload
                negative += np.maximum(-c.weight, 0).sum(axis=1) * payload
        overshoot = -(-(4096 - p.dv) * 64 * max(p.subtraction - p.vth, 0) // 4096)
        low, high = population.bias < lower, population.bias > upper
        assert np.all(bias[low] <= -64 * positive[low] - 1)
        assert np.all(bias[high] - 64 * negative[high] >= 64 * p.vth + overshoot)
        np.testing.assert_array_equal(
            fixed_result.records[f"{name}.spikes"][:, :, saturated],
            original.records[f"{name}.spikes"][:, :, saturated],
            err_msg=name,
        )


def test_firing_bound_is_theta_plus_leaked_reset_not_two_d():
    """u_rest = 0.9θ: D = 0.1, so b − N = 2·D = 0.2 misses the first spike; the range's upper edge does not."""
    neurons = SoftResetNeurons(bias=np.zeros(1), threshold=1.0, reset_potential=0.9)
    connection = Connection(INPUT, "p", Dense(np.array([[-1.0]])), 0)
    spec = NetSpec(Input((1,), "rate"), {"p": neurons}, (connection,), Readout("p", np.eye(1), np.zeros(1)), 6)
    lower, upper = spike_preserving_bias_range(spec)["p"]
    assert lower[0] == pytest.approx(0.0, abs=1e-5) and upper[0] == pytest.approx(1.0 + 1.0, rel=1e-5)  # N + θ
    inhibited = np.ones((6, 1, 1))
    two_d = simulate(with_biases(spec, {"p": np.array([1.0 + 0.2])}), inhibited, record=["p.spikes"])
    edge = simulate(with_biases(spec, {"p": upper}), inhibited)
    assert two_d.records["p.spikes"][0, 0, 0] == 0 and two_d.counts["p"][0, 0] < 6
    assert edge.counts["p"][0, 0] == 6


def test_a_huge_bias_is_clipped_instead_of_coarsening_the_scale():
    """A neuron pinned on or off by a bias of 10^4 leaves the scale where the weights and threshold put it."""
    rng = np.random.default_rng(2)
    spec = feedback_net(rng)
    _, baseline = quantize(spec)
    spec.populations["hidden"].bias[[0, 3]] = [1e4, -1e5]
    spec.populations["out"].bias[1] = 3e4
    fixed, report = quantize(spec)
    assert report.scales == baseline.scales and not any("coarsened" in note for note in report.notes)
    by_name = {t.name: t for t in report.tensors}
    assert by_name["hidden.bias"].clipped == 2 and by_name["out.bias"].clipped == 1 and report.clipped == 3
    assert "spike-preserving" in by_name["hidden.bias"].note
    assert sum("spike-preserving range" in note for note in report.notes) == 2
    for label in ("connection 0 (input → hidden)", "connection 1 (hidden → hidden)", "connection 2 (hidden → out)"):
        assert by_name[f"{label}.weight"].relative_error < 0.01
        assert by_name[f"{label}.weight"].relative_error == pytest.approx(
            {t.name: t for t in baseline.tensors}[f"{label}.weight"].relative_error
        )
    assert by_name["hidden.bias"].relative_error < 0.01  # against the clipped values
    spikes = (rng.random((16, 64, 20)) < 0.5).astype(np.float64)
    float_counts, fixed_counts = simulate(spec, spikes).counts, simulate(fixed, spikes).counts
    assert np.all(fixed_counts["hidden"][:, 0] == 16) and np.all(fixed_counts["hidden"][:, 3] == 0)
    assert np.all(float_counts["hidden"][:, 0] == 16) and np.all(float_counts["out"][:, 1] == 16)
    assert np.all(fixed_counts["out"][:, 1] == 16)


def test_a_bias_that_fits_is_kept_even_beyond_its_range():
    """Clipping is only used to keep the scale: a saturating bias that fits anyway is quantised as it is."""
    spec = one_layer(threshold=1.0, bias=3.0)  # N + θ = 1.5 < 3, but 3 fits 13 + 7 bits at the weights' scale
    _, upper = spike_preserving_bias_range(spec)["p"]
    assert np.all(spec.populations["p"].bias > upper)
    fixed, report = quantize(spec)
    assert report.clipped == 0 and report.notes == ()
    np.testing.assert_allclose(dequantize(fixed).populations["p"].bias, 3.0, rtol=1e-3)


def test_cuba_biases_are_not_clipped():
    neurons = CubaNeurons(bias=np.array([1e6, 0.0]), threshold=1.0, current_decay=0.5)
    connection = Connection(INPUT, "p", Dense(np.array([[1.0, -0.5], [0.25, 0.5]])), 0)
    spec = NetSpec(Input((2,), "rate"), {"p": neurons}, (connection,), Readout("p", np.eye(2), np.zeros(2)), 4)
    lower, upper = spike_preserving_bias_range(spec)["p"]
    assert np.all(np.isneginf(lower)) and np.all(np.isposinf(upper))
    with pytest.raises(NetSpecError, match="threshold 1 rounds to zero"):
        quantize(spec)  # representable weights (mantissa 2 at weight_exp −8), but one LSB is 122 > θ
    spec.populations["p"].bias[0] = 1e8
    with pytest.raises(NetSpecError, match="bias"):
        quantize(spec)  # one LSB of 12,207: every weight vanishes


# ------------------------------------------------------------------------------- exact grids and payloads
@pytest.mark.parametrize("encoding", ["current", "rate"])
def test_weights_on_slayers_grid_reach_fixed_point_exactly(encoding: str) -> None:
    """bptt's slayer weights are multiples of 2/64: the scale snaps onto that grid, so no weight is re-rounded."""
    rng = np.random.default_rng(5)
    weights = [rng.integers(-127, 128, shape) / 32.0 for shape in ((30, 16), (10, 30))]  # slayer: even/64
    populations = {name: CubaNeurons(np.zeros(n), threshold=1.25, current_decay=0.25, voltage_decay=123 / 4096)
                   for name, n in (("hidden", 30), ("out", 10))}
    connections = (Connection(INPUT, "hidden", Dense(weights[0]), 0), Connection("hidden", "out", Dense(weights[1]), 1))
    spec = NetSpec(Input((16,), encoding), populations, connections, Readout("out", np.eye(10), np.zeros(10)), 8)
    fixed, report = quantize(spec, input_range=1.0625)
    restored = dequantize(fixed)
    for original, exact in zip(spec.connections, restored.connections, strict=True):
        np.testing.assert_allclose(exact.synapse.weight, original.synapse.weight, rtol=1e-12, atol=0)
    for name, population in restored.populations.items():
        assert population.threshold == pytest.approx(1.25, rel=1e-12), name
    assert report.max_relative_error < 1e-12  # float noise of the unit 1.0625/255 only
    # weights off the grid are rounded as usual (to half a step, see the error-bound test above)
    free = NetSpec(spec.input, populations,
                   (Connection(INPUT, "hidden", Dense(weights[0] + 1e-3 * rng.random((30, 16))), 0), connections[1]),
                   spec.readout, 8)
    assert quantize(free, input_range=1.0625)[1].max_relative_error > 0


def test_exact_input_range_gives_every_intensity_an_exact_payload() -> None:
    digits = np.arange(17) / 16.0  # sklearn digits: 0..16, scaled to [0, 1]
    assert exact_input_range(digits) == pytest.approx(255 / 240)  # payload = 15·k
    spec = NetSpec(Input((17,), "current"), {"p": SoftResetNeurons(np.zeros(1), 1.0)},
                   (Connection(INPUT, "p", Dense(np.full((1, 17), 0.1)), 0),), Readout("p", np.eye(1), np.zeros(1)), 1)
    fixed, _ = quantize(spec, input_range=exact_input_range(digits))
    payload = input_payload(fixed, digits[None, None, :])
    np.testing.assert_array_equal(payload[0, 0], 15 * np.arange(17))
    assert exact_input_range(np.arange(256) / 255.0) == 1.0  # 8-bit images are exact at payload = value·255
    assert exact_input_range(np.array([0.0, 0.25, 0.5])) == pytest.approx(255 / 508)  # k/4, k ≤ 2: payload 127·k
    assert exact_input_range(np.random.default_rng(0).random(100)) == 1.0  # no grid: the unit range
