"""The reference simulator against independent computations: brute-force loops, closed forms, neurons.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lavaflow.deploy.quantize import quantize
from lavaflow.models.errors import ConfigError, DataError, NetSpecError
from lavaflow.models.fixed import (
    CURRENT_WRAP,
    STATE_MAX,
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
from lavaflow.models.neurons import CubaParams, CubaState, SoftResetParams, cuba_step, soft_reset_step, weighted_rate
from lavaflow.models.reference import check_fixed_spec, input_payload, simulate

INPUT_SHAPE = (2, 5, 5)


# ----------------------------------------------------------------------------------------------- builders
def random_netspec(rng: np.random.Generator, *, stride: int, padding: int, time_steps: int = 10) -> NetSpec:
    """Conv LIF → IF with self-feedback (delay 2) and feedback from a CUBA layer (delay 1) → CUBA readout layer."""
    kernel = rng.normal(0.0, 0.6, (3, 2, 3, 3))
    conv = Conv(kernel, INPUT_SHAPE, (stride, stride), (padding, padding))
    n_conv, n_hidden, n_out = conv.out_size, 12, 5
    populations = {
        "conv": SoftResetNeurons(
            bias=rng.normal(0.0, 0.1, n_conv), threshold=1.0, voltage_decay=0.2, shape=conv.output_shape
        ),
        "hidden": SoftResetNeurons(bias=rng.normal(0.0, 0.1, n_hidden), threshold=0.8, reset_potential=-0.4),
        "out": CubaNeurons(bias=rng.normal(0.1, 0.1, n_out), threshold=0.7, current_decay=0.4, voltage_decay=0.1),
    }
    connections = (
        Connection(INPUT, "conv", conv, 0),
        Connection(INPUT, "hidden", Dense(rng.normal(0.0, 0.2, (n_hidden, 50))), 0),
        Connection("conv", "hidden", Dense(rng.normal(0.0, 0.5, (n_hidden, n_conv))), 1),
        Connection("hidden", "hidden", Dense(rng.normal(0.0, 0.5, (n_hidden, n_hidden))), 2),
        Connection("out", "hidden", Dense(rng.normal(0.0, 0.5, (n_hidden, n_out))), 1),
        Connection("hidden", "out", Dense(rng.normal(0.3, 0.6, (n_out, n_hidden))), 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, n_out)), rng.normal(0.0, 1.0, 3), rate_decay=0.1)
    return NetSpec(Input(INPUT_SHAPE, "current"), populations, connections, readout, time_steps)


def single_neuron_netspec(neurons: SoftResetNeurons | CubaNeurons, weight: float, encoding: str, time_steps: int):
    """input (1 value) → one neuron with ``weight``; the readout reads its spike count."""
    connection = Connection(INPUT, "p", Dense(np.array([[weight]])), 0)
    readout = Readout("p", np.eye(1), np.zeros(1))
    return NetSpec(Input((1,), encoding), {"p": neurons}, (connection,), readout, time_steps)


def soft(threshold: float = 1.0, reset_potential: float = 0.0, voltage_decay: float = 0.0, n: int = 1):
    return SoftResetNeurons(
        bias=np.zeros(n), threshold=threshold, reset_potential=reset_potential, voltage_decay=voltage_decay
    )


# ------------------------------------------------------------------------------- brute force, float (docstring)
def apply_synapse(synapse: Dense | Conv, source: list, zero: object) -> list:
    """W·source with explicit loops; conv as cross-correlation over (C, H, W) with zero padding."""
    if isinstance(synapse, Dense):
        return [sum((w * s for w, s in zip(row, source, strict=True)), zero) for row in synapse.weight.tolist()]
    channels_in, height, width = synapse.input_shape
    channels_out, _, kernel_h, kernel_w = synapse.weight.shape
    _, out_h, out_w = synapse.output_shape
    kernel = synapse.weight.tolist()
    result = []
    for o in range(channels_out):
        for y in range(out_h):
            for x in range(out_w):
                total = zero
                for c in range(channels_in):
                    for i in range(kernel_h):
                        for j in range(kernel_w):
                            row = y * synapse.stride[0] + i - synapse.padding[0]
                            col = x * synapse.stride[1] + j - synapse.padding[1]
                            if 0 <= row < height and 0 <= col < width:
                                total = total + kernel[o][c][i][j] * source[(c * height + row) * width + col]
                result.append(total)
    return result


def brute_force_float(spec: NetSpec, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample, per neuron: I_p[t] = Σ_c W_c·x[t] + Σ_c W_c·s_q[t − d_c], then the neuron's update."""
    time_steps, batch = inputs.shape[:2]
    counts = {name: np.zeros((batch, p.size), dtype=np.int64) for name, p in spec.populations.items()}
    for b in range(batch):
        spikes = {name: [] for name in spec.populations}
        voltage = {name: [0.0] * p.size for name, p in spec.populations.items()}
        current = {name: [0.0] * p.size for name, p in spec.populations.items()}
        for t in range(time_steps):
            for name, population in spec.populations.items():
                a_in = [0.0] * population.size
                for c in spec.incoming(name):
                    if c.source == INPUT:
                        source = inputs[t, b].ravel().tolist()
                    elif t - c.delay_steps >= 0:
                        source = spikes[c.source][t - c.delay_steps]
                    else:
                        source = [0.0] * spec.populations[c.source].size
                    a_in = [a + w for a, w in zip(a_in, apply_synapse(c.synapse, source, 0.0), strict=True)]
                fired = []
                for i in range(population.size):
                    bias = float(population.bias[i])
                    if isinstance(population, SoftResetNeurons):
                        v = voltage[name][i] * (1.0 - population.voltage_decay) + a_in[i] + bias
                        s = v >= population.threshold
                        voltage[name][i] = v - (population.threshold - population.reset_potential) if s else v
                    else:
                        current[name][i] = current[name][i] * (1.0 - population.current_decay) + a_in[i]
                        v = voltage[name][i] * (1.0 - population.voltage_decay) + current[name][i] + bias
                        s = v > population.threshold
                        voltage[name][i] = 0.0 if s else v
                    fired.append(1.0 if s else 0.0)
                spikes[name].append(fired)
                counts[name][b] += np.array(fired, dtype=np.int64)
    return counts


@pytest.mark.parametrize(("seed", "stride", "padding"), [(0, 1, 0), (1, 2, 1), (2, 1, 1), (3, 2, 0)])
def test_float_mode_matches_brute_force_loop(seed, stride, padding):
    rng = np.random.default_rng(seed)
    spec = random_netspec(rng, stride=stride, padding=padding)
    inputs = np.repeat(rng.random((1, 3, *INPUT_SHAPE)), spec.time_steps, axis=0)
    result = simulate(spec, inputs)
    expected = brute_force_float(spec, inputs)
    for name in spec.populations:
        np.testing.assert_array_equal(result.counts[name], expected[name], err_msg=name)
    assert sum(int(c.sum()) for c in expected.values()) > 50  # the comparison saw real activity
    assert all(int(c.sum()) > 0 for c in expected.values())


def test_float_mode_readout_is_weighted_rate_of_recorded_spikes():
    rng = np.random.default_rng(5)
    spec = random_netspec(rng, stride=1, padding=0)
    inputs = np.repeat(rng.random((1, 4, *INPUT_SHAPE)), spec.time_steps, axis=0)
    result = simulate(spec, inputs, record=["out.spikes"])
    spikes = torch.from_numpy(result.records["out.spikes"].astype(np.float64))
    rates = weighted_rate(spikes, leak=0.9).numpy()
    np.testing.assert_allclose(result.rates, rates, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.logits, rates @ spec.readout.weight.T + spec.readout.bias, rtol=1e-12)
    np.testing.assert_array_equal(result.counts["out"], result.records["out.spikes"].sum(axis=0))
    assert result.counts["out"].sum() > 0


def test_readout_predicts_from_hand_built_spike_trains():
    """Unit-weight IF neurons with θ = D = 1 copy 0/1 input spikes, so the readout sees trains chosen by hand.

    Readout rate decay 0.5 over T = 4: a spike at step t weighs 0.5^(3 − t) of (1 + 0.5 + 0.25 + 0.125) = 1.875.
    """
    trains = np.array(
        [
            [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]],  # one spike each: the later one weighs 8× more → 1
            [[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]],  # counts 3 vs 1, weights 0.875 vs 1 → 1
            [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]],  # only neuron 0 → 0
            [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],  # silence: the bias decides → 2
        ],
        dtype=np.float64,
    ).transpose(1, 0, 2)  # (T, B, n)
    neurons = SoftResetNeurons(bias=np.zeros(3), threshold=1.0)
    readout = Readout("p", np.eye(3), np.array([0.0, 0.0, 0.01]), rate_decay=0.5)
    spec = NetSpec(Input((3,), "rate"), {"p": neurons}, (Connection(INPUT, "p", Dense(np.eye(3)), 0),), readout, 4)
    result = simulate(spec, trains)
    np.testing.assert_array_equal(result.counts["p"], [[1, 1, 0], [3, 1, 0], [4, 0, 0], [0, 0, 0]])
    expected_rates = np.array([[0.125, 1, 0], [0.875, 1, 0], [1.875, 0, 0], [0, 0, 0]]) / 1.875
    np.testing.assert_allclose(result.rates, expected_rates, rtol=1e-12)
    np.testing.assert_allclose(result.logits, expected_rates + np.array([0.0, 0.0, 0.01]), rtol=1e-12)
    assert result.predictions.tolist() == [1, 1, 0, 2]


# --------------------------------------------------------------------------------------------- neurons.py
def test_float_steps_equal_neurons_step_functions():
    """Through an identity Dense, a_in is the input itself; with zero bias the orders of addition coincide."""
    rng = np.random.default_rng(7)
    time_steps, batch, n = 12, 3, 6
    drive = rng.normal(0.4, 0.8, (time_steps, batch, n))
    identity = (Connection(INPUT, "p", Dense(np.eye(n)), 0),)
    readout = Readout("p", np.eye(n), np.zeros(n))
    soft_spec = NetSpec(Input((n,), "current"), {"p": soft(0.9, -0.3, 0.15, n)}, identity, readout, time_steps)
    cuba = CubaNeurons(bias=np.zeros(n), threshold=0.9, current_decay=0.3, voltage_decay=0.2)
    cuba_spec = NetSpec(Input((n,), "current"), {"p": cuba}, identity, readout, time_steps)
    soft_result = simulate(soft_spec, drive, record=["p.v", "p.spikes"])
    cuba_result = simulate(cuba_spec, drive, record=["p.v", "p.u", "p.spikes"])

    voltage = torch.zeros(batch, n, dtype=torch.float64)
    state = CubaState(torch.zeros(batch, n, dtype=torch.float64), torch.zeros(batch, n, dtype=torch.float64))
    for t in range(time_steps):
        current = torch.from_numpy(drive[t])
        spikes, voltage = soft_reset_step(current, voltage, SoftResetParams(0.9, -0.3, 0.15))
        np.testing.assert_array_equal(soft_result.records["p.v"][t], voltage.numpy())
        np.testing.assert_array_equal(soft_result.records["p.spikes"][t], spikes.numpy())
        cuba_spikes, state = cuba_step(current, state, CubaParams(0.9, 0.3, 0.2))
        np.testing.assert_array_equal(cuba_result.records["p.u"][t], state.current.numpy())
        np.testing.assert_array_equal(cuba_result.records["p.v"][t], state.voltage.numpy())
        np.testing.assert_array_equal(cuba_result.records["p.spikes"][t], cuba_spikes.numpy())
    assert soft_result.counts["p"].sum() > 0 and cuba_result.counts["p"].sum() > 0


# ------------------------------------------------------------------------------------------- closed forms
@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(1, 20),
    sixteenths=st.integers(0, 16),
    threshold_eighths=st.integers(1, 16),
    reset_eighths=st.integers(0, 8),
)
def test_if_count_closed_form(steps, sixteenths, threshold_eighths, reset_eighths):
    """IF neuron, constant input I, threshold θ, subtraction D = θ − u_rest ≥ I, v(0) = 0.

    Before step t the neuron has received t·I and lost D per spike, so it fires at t iff t·I − D·N(t−1) ≥ θ,
    i.e. iff the level θ + N(t−1)·D lies at or below t·I. The levels θ + k·D are D apart and the charge grows by
    I ≤ D per step, so at most one new level is passed per step and N(t) = #{k ≥ 0 : θ + k·D ≤ t·I}:
    count = floor((T·I − θ) / D) + 1 when T·I ≥ θ, else 0 (floor(T·I / θ) when u_rest = 0). Dyadic values keep
    every float sum exact.
    """
    current, threshold = sixteenths / 16, threshold_eighths / 8
    reset_potential = -reset_eighths / 8
    subtraction = threshold - reset_potential
    assume(current <= subtraction)  # more than one level per step: the law does not apply
    spec = single_neuron_netspec(soft(threshold, reset_potential), 1.0, "current", steps)
    result = simulate(spec, np.full((steps, 2, 1), current))
    total = steps * current
    expected = math.floor((total - threshold) / subtraction) + 1 if total >= threshold else 0
    np.testing.assert_array_equal(result.counts["p"], np.full((2, 1), expected))
    if reset_potential == 0:  # plain IF: the count is the total charge in thresholds
        np.testing.assert_array_equal(result.counts["p"], np.full((2, 1), math.floor(total / threshold)))


@pytest.mark.parametrize("voltage_decay", [0.0, 0.1, 0.5, 0.9])
def test_lif_impulse_response(voltage_decay):
    """One input spike of weight w < θ at step 1: v[t] = w·λ^(t−1), and the neuron never fires."""
    weight, time_steps = 0.7, 12
    spec = single_neuron_netspec(soft(voltage_decay=voltage_decay), weight, "rate", time_steps)
    inputs = np.zeros((time_steps, 1, 1))
    inputs[0] = 1
    result = simulate(spec, inputs, record=["p.v"])
    expected = weight * (1.0 - voltage_decay) ** np.arange(time_steps)
    np.testing.assert_allclose(result.records["p.v"][:, 0, 0], expected, rtol=1e-12)
    assert result.counts["p"].sum() == 0


@pytest.mark.parametrize(("current_decay", "voltage_decay"), [(0.3, 0.1), (1.0, 0.2), (0.5, 0.0)])
def test_cuba_impulse_response(current_decay, voltage_decay):
    """u[t] = w·α^(t−1); v[t] = Σ_k β^(t−k) u[k] = w·(α^t − β^t)/(α − β), α = 1 − du, β = 1 − dv."""
    weight, time_steps = 0.5, 10
    neurons = CubaNeurons(bias=np.zeros(1), threshold=10.0, current_decay=current_decay, voltage_decay=voltage_decay)
    spec = single_neuron_netspec(neurons, weight, "rate", time_steps)
    inputs = np.zeros((time_steps, 1, 1))
    inputs[0] = 1
    result = simulate(spec, inputs, record=["p.u", "p.v"])
    alpha, beta, t = 1.0 - current_decay, 1.0 - voltage_decay, np.arange(1, time_steps + 1)
    np.testing.assert_allclose(result.records["p.u"][:, 0, 0], weight * alpha ** (t - 1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(
        result.records["p.v"][:, 0, 0], weight * (alpha**t - beta**t) / (alpha - beta), rtol=1e-12
    )


def chain_netspec(delays: tuple[int, ...], time_steps: int) -> NetSpec:
    """input → p0 → p1 → … with the given delays; one spike of weight θ makes each neuron fire."""
    names = [f"p{i}" for i in range(len(delays) + 1)]
    populations = {name: soft() for name in names}
    connections = [Connection(INPUT, "p0", Dense(np.ones((1, 1))), 0)]
    connections += [
        Connection(a, b, Dense(np.ones((1, 1))), d) for a, b, d in zip(names[:-1], names[1:], delays, strict=True)
    ]
    readout = Readout(names[-1], np.eye(1), np.zeros(1))
    return NetSpec(Input((1,), "rate"), populations, tuple(connections), readout, time_steps)


@pytest.mark.parametrize("delays", [(1, 1, 1), (1, 2, 1), (2, 2, 1, 3)])
def test_first_spike_times_along_a_chain_add_the_delays(delays):
    """The input spike at step 1 reaches p0 at once (delay 0); p_k first fires at 1 + Σ_{i<k} d_i."""
    time_steps = 2 + sum(delays)
    spec = chain_netspec(delays, time_steps)
    inputs = np.zeros((time_steps, 1, 1))
    inputs[0] = 1
    names = list(spec.populations)
    expected = [1 + sum(delays[:k]) for k in range(len(names))]
    for network in (spec, quantize(spec)[0]):
        result = simulate(network, inputs, record=[f"{name}.spikes" for name in names])
        first = [int(np.argmax(result.records[f"{name}.spikes"][:, 0, 0])) + 1 for name in names]
        assert first == expected
        assert [int(result.counts[name].sum()) for name in names] == [1] * len(names)


# ------------------------------------------------------------------------------- brute force, fixed (fixed.py)
def random_fixed_netspec(rng: np.random.Generator, time_steps: int = 10) -> FixedNetSpec:
    """Events → conv soft-reset LIF → IF (self-feedback delay 2, weight_exp −2 floors) → CUBA (feedback delay 1)."""
    conv = Conv(np.zeros((3, 2, 3, 3)), INPUT_SHAPE, (1, 1), (1, 1))
    n_conv, n_hidden, n_out = conv.out_size, 10, 4

    def weights(shape: tuple[int, ...], low: int = -127) -> np.ndarray:
        return 2 * rng.integers(low, 128, shape)

    def population(kind: str, size: int, vth: tuple[int, int], shape: tuple[int, ...] = ()) -> FixedPopulation:
        return FixedPopulation(
            kind=kind,
            size=size,
            vth=int(rng.integers(*vth)),
            dv=int(rng.integers(0, 1500)),
            bias_mant=rng.integers(-4096, 4096, size),
            bias_exp=int(rng.integers(0, 4)),
            scale=1.0,
            subtraction=int(rng.integers(200, 900)),
            du=int(rng.integers(0, 4096)),
            shape=shape,
        )

    populations = {
        "conv": population("soft_reset", n_conv, (400, 1500), conv.output_shape),
        "hidden": population("soft_reset", n_hidden, (500, 3000)),
        "out": population("cuba", n_out, (500, 4000)),
    }
    connections = (
        FixedConnection(INPUT, "conv", weights((3, 2, 3, 3)), 0, 0, conv),
        FixedConnection("conv", "hidden", weights((n_hidden, n_conv)), 1, 1),
        FixedConnection("hidden", "hidden", weights((n_hidden, n_hidden)), -2, 2),
        FixedConnection("out", "hidden", weights((n_hidden, n_out)), 2, 1),
        FixedConnection("hidden", "out", weights((n_out, n_hidden), low=-40), 1, 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, n_out)), np.zeros(3))
    return FixedNetSpec(Input(INPUT_SHAPE, "events"), 1.0, populations, connections, readout, time_steps)


def decay(value: int, decay_code: int) -> int:
    product = value * (4096 - decay_code)
    return -((-product) >> 12) if product < 0 else product >> 12


def lava_wrap(value: int) -> int:
    """Lava's PyLifModelBitAcc, literally: one conditional ±2^24."""
    if value > 2**23:
        return value - 2**24
    if value <= -(2**23):
        return value + 2**24
    return value


def brute_force_fixed(spec: FixedNetSpec, payload: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Python integers, straight from the models.fixed docstring; returns counts and per-step v of each neuron."""
    time_steps, batch = payload.shape[:2]
    counts = {name: np.zeros((batch, p.size), dtype=np.int64) for name, p in spec.populations.items()}
    voltages: dict[str, list] = {name: [] for name in spec.populations}
    for b in range(batch):
        spikes = {name: [] for name in spec.populations}
        v = {name: [0] * p.size for name, p in spec.populations.items()}
        u = {name: [0] * p.size for name, p in spec.populations.items()}
        for t in range(time_steps):
            for name, p in spec.populations.items():
                a_in = [0] * p.size
                for c in spec.connections:
                    if c.target != name:
                        continue
                    if c.source == INPUT:
                        source = [int(x) for x in payload[t, b].ravel()]
                    elif t - c.delay_steps >= 0:
                        source = spikes[c.source][t - c.delay_steps]
                    else:
                        source = [0] * spec.populations[c.source].size
                    synapse = (
                        Conv(c.weight.astype(float), c.conv.input_shape, c.conv.stride, c.conv.padding)
                        if c.conv is not None
                        else Dense(c.weight.astype(float))
                    )
                    exact = [int(x) for x in apply_synapse(synapse, source, 0)]
                    e = c.weight_exp
                    a_in = [a + (x << e if e >= 0 else x >> -e) for a, x in zip(a_in, exact, strict=True)]
                assert all(-(2**17) <= a < 2**17 for a in a_in)
                fired = []
                for i in range(p.size):
                    bias = int(p.bias_mant[i]) << p.bias_exp
                    if p.kind == "soft_reset":
                        value = min(max(decay(v[name][i], p.dv) + (a_in[i] << 6) + bias, -(2**23 - 1)), 2**23 - 1)
                        s = value >= p.vth << 6
                        v[name][i] = value - (p.subtraction << 6) if s else value
                    else:
                        u[name][i] = lava_wrap(decay(u[name][i], p.du + 1) + (a_in[i] << 6))
                        value = min(max(decay(v[name][i], p.dv) + u[name][i] + bias, -(2**23 - 1)), 2**23 - 1)
                        s = value > p.vth << 6
                        v[name][i] = 0 if s else value
                    fired.append(int(s))
                spikes[name].append(fired)
                counts[name][b] += fired
                if b == 0:
                    voltages[name].append(list(v[name]))
    return counts, voltages


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_mode_matches_brute_force_integer_loop(seed):
    rng = np.random.default_rng(seed)
    spec = random_fixed_netspec(rng)
    events = rng.integers(0, 3, (spec.time_steps, 2, *INPUT_SHAPE)).astype(np.float64)
    result = simulate(spec, events, record=[f"{name}.v" for name in spec.populations])
    counts, voltages = brute_force_fixed(spec, events.astype(np.int64))
    for name in spec.populations:
        np.testing.assert_array_equal(result.counts[name], counts[name], err_msg=name)
        np.testing.assert_array_equal(result.records[f"{name}.v"][:, 0], np.array(voltages[name]), err_msg=name)
        assert result.records[f"{name}.v"].dtype == np.int64
        assert counts[name].sum() > 0, name


def one_fixed_neuron(
    kind: str,
    *,
    weight: int,
    weight_exp: int,
    time_steps: int,
    vth: int = 131071,
    bias_mant: int = 0,
    bias_exp: int = 0,
    du: int = 0,
    dv: int = 0,
    subtraction: int = 1000,
) -> FixedNetSpec:
    population = FixedPopulation(
        kind=kind,
        size=1,
        vth=vth,
        dv=dv,
        bias_mant=np.array([bias_mant]),
        bias_exp=bias_exp,
        scale=1.0,
        subtraction=subtraction,
        du=du,
    )
    connection = FixedConnection(INPUT, "p", np.array([[weight]]), weight_exp, 0)
    return FixedNetSpec(
        Input((1,), "events"), 1.0, {"p": population}, (connection,), Readout("p", np.eye(1), np.zeros(1)), time_steps
    )


@settings(max_examples=40, deadline=None)
@given(
    payloads=st.lists(st.integers(0, 255), min_size=1, max_size=30),
    weight=st.sampled_from([-254, -128, 2, 130, 254]),
    du=st.integers(0, 4095),
    dv=st.integers(0, 4095),
)
def test_cuba_current_wraps_like_lava(payloads, weight, du, dv):
    """u wraps by ±2^24 into (−2^23, 2^23] (Lava's conditional form), v saturates at ±(2^23 − 1)."""
    time_steps = len(payloads)
    spec = one_fixed_neuron("cuba", weight=weight, weight_exp=1, time_steps=time_steps, du=du, dv=dv)
    events = np.array(payloads, dtype=np.float64).reshape(time_steps, 1, 1)
    result = simulate(spec, events, record=["p.u", "p.v"])
    u = v = 0
    for t, payload in enumerate(payloads):
        u = lava_wrap(decay(u, du + 1) + ((weight * payload * 2) << 6))
        value = min(max(decay(v, dv) + u, -(2**23 - 1)), 2**23 - 1)
        v = 0 if value > 131071 << 6 else value
        assert result.records["p.u"][t, 0, 0] == u
        assert result.records["p.v"][t, 0, 0] == v
    assert -(2**23) < result.records["p.u"].min() and result.records["p.u"].max() <= 2**23


def test_cuba_current_wrap_and_voltage_saturation_values():
    """a_in = 254·255·2 = 129540 per step, du = 4095 (u = a_in << 6 = 8290560 each step): no wrap yet;
    with du = 0, u grows past 2^23 on step 2: u = 8290560·4095/4096 truncated + 8290560 − 2^24."""
    spec = one_fixed_neuron("cuba", weight=254, weight_exp=1, time_steps=3, du=0, dv=4095)
    result = simulate(spec, np.full((3, 1, 1), 255.0), record=["p.u"])
    first = 129540 << 6
    second = (first * 4095 >> 12) + first - CURRENT_WRAP
    assert result.records["p.u"][:2, 0, 0].tolist() == [first, second]
    negative = one_fixed_neuron("soft_reset", weight=-254, weight_exp=1, time_steps=4, bias_mant=-4096, bias_exp=7)
    voltage = simulate(negative, np.full((4, 1, 1), 255.0), record=["p.v"]).records["p.v"][:, 0, 0]
    assert voltage.min() == -STATE_MAX and voltage[-1] == -STATE_MAX
    assert np.all(np.diff(voltage) <= 0)


def test_soft_reset_saturates_before_firing():
    """Positive drive pins v at 2^23 − 1 before the test; the recorded v is that minus subtraction << 6."""
    spec = one_fixed_neuron("soft_reset", weight=254, weight_exp=1, time_steps=4, vth=1000, subtraction=1000)
    result = simulate(spec, np.full((4, 1, 1), 255.0), record=["p.v"])
    first = (254 * 255 * 2 << 6) - (1000 << 6)
    assert result.records["p.v"][:, 0, 0].tolist() == [first] + [STATE_MAX - (1000 << 6)] * 3
    assert result.counts["p"][0, 0] == 4


def test_activation_beyond_18_bits_raises():
    """a_in = Σ w·payload over four inputs (weights ±(254, 254, 254, 2)) at the edges of [−2^17, 2^17 − 1] runs;
    a payload that takes it 2 beyond either edge is refused, naming the a_in it reaches."""
    population = FixedPopulation(kind="soft_reset", size=1, vth=131071, dv=0, bias_mant=np.zeros(1, dtype=np.int64),
                                 bias_exp=0, scale=1.0, subtraction=131071)

    def run(sign: int, payload: list[int]) -> np.ndarray:
        connection = FixedConnection(INPUT, "p", sign * np.array([[254, 254, 254, 2]]), 0, 0)
        readout = Readout("p", np.eye(1), np.zeros(1))
        spec = FixedNetSpec(Input((4,), "events"), 1.0, {"p": population}, (connection,), readout, 2)
        payloads = np.array([[0, 0, 0, 0], payload], dtype=np.float64).reshape(2, 1, 4)
        return simulate(spec, payloads, record=["p.v"]).records["p.v"][:, 0, 0]

    # 254·255·2 + 254·6 = 131064; + 2·3 = 2^17 − 2 (the largest even a_in), + 2·4 = 2^17, + 2·5 = 2^17 + 2
    assert run(+1, [255, 255, 6, 3]).tolist() == [0, (2**17 - 2) * 64]  # below vth: no spike, no reset
    assert run(-1, [255, 255, 6, 4]).tolist() == [0, -(2**23 - 1)]  # a_in = −2^17: v saturates
    with pytest.raises(NetSpecError, match=r"a_in (reaches|can reach) \[\S+, 131072\], beyond the 18-bit"):
        run(+1, [255, 255, 6, 4])
    with pytest.raises(NetSpecError, match=r"a_in (reaches|can reach) \[-131074, \S+\], beyond the 18-bit"):
        run(-1, [255, 255, 6, 5])


# -------------------------------------------------------------------------------------------- bad inputs
def test_invalid_fixed_specs_raise_clear_errors():
    def with_weight(weight: np.ndarray) -> FixedNetSpec:
        spec = one_fixed_neuron("soft_reset", weight=2, weight_exp=0, time_steps=1)
        connection = FixedConnection(INPUT, "p", weight, 0, 0)
        return FixedNetSpec(spec.input, 1.0, spec.populations, (connection,), spec.readout, 1)

    with pytest.raises(NetSpecError, match="odd"):
        check_fixed_spec(with_weight(np.array([[3]])))
    with pytest.raises(NetSpecError, match="inhibitory"):
        check_fixed_spec(with_weight(np.array([[-256]])))
    one = one_fixed_neuron("soft_reset", weight=2, weight_exp=0, time_steps=1)
    mixed = FixedConnection(INPUT, "p", np.array([[-256, 2]]), 0, 0)
    check_fixed_spec(
        FixedNetSpec(Input((2,), "events"), 1.0, one.populations, (mixed,), one.readout, 1)
    )  # −256 beside a positive weight keeps the mixed mode
    with pytest.raises(NetSpecError, match="range"):
        check_fixed_spec(with_weight(np.array([[256]])))
    with pytest.raises(NetSpecError, match="integer numpy array"):
        check_fixed_spec(with_weight(np.array([[2.0]])))
    with pytest.raises(NetSpecError, match="vth"):
        check_fixed_spec(one_fixed_neuron("soft_reset", weight=2, weight_exp=0, time_steps=1, vth=2**17))
    with pytest.raises(NetSpecError, match="bias_mant"):
        check_fixed_spec(one_fixed_neuron("cuba", weight=2, weight_exp=0, time_steps=1, bias_mant=4096))
    with pytest.raises(NetSpecError, match="dv"):
        check_fixed_spec(one_fixed_neuron("cuba", weight=2, weight_exp=0, time_steps=1, dv=4096))
    with pytest.raises(NetSpecError, match="subtraction"):
        check_fixed_spec(one_fixed_neuron("soft_reset", weight=2, weight_exp=0, time_steps=1, subtraction=0))


def test_input_payload_rounds_clips_and_checks():
    spec = one_fixed_neuron("soft_reset", weight=2, weight_exp=0, time_steps=1)
    current = FixedNetSpec(Input((1,), "current"), 1 / 255, spec.populations, spec.connections, spec.readout, 1)
    intensities = np.array([0.0, 0.5 / 255, 1.5 / 255, 0.3, 1.0, 1.7, -0.2]).reshape(1, 7, 1)
    assert input_payload(current, intensities).ravel().tolist() == [0, 0, 2, 76, 255, 255, 0]
    assert input_payload(spec, np.array([[[3.0]]])).tolist() == [[[3]]]
    with pytest.raises(DataError, match="integers"):
        input_payload(spec, np.array([[[0.5]]]))
    with pytest.raises(DataError, match="integers"):
        input_payload(spec, np.array([[[256.0]]]))


def test_bad_inputs_raise_clear_errors():
    spec = single_neuron_netspec(soft(), 1.0, "current", 4)
    with pytest.raises(DataError, match="shape"):
        simulate(spec, np.zeros((4, 2, 3)))
    with pytest.raises(DataError, match="shape"):
        simulate(spec, np.zeros((5, 2, 1)))  # T differs from time_steps
    with pytest.raises(DataError, match="NaN"):
        simulate(spec, np.full((4, 2, 1), np.nan))
    with pytest.raises(ConfigError, match=r"p\.v"):
        simulate(spec, np.zeros((4, 2, 1)), record=["p.w"])
    with pytest.raises(ConfigError, match="choose from"):
        simulate(spec, np.zeros((4, 2, 1)), record=["q.v"])
    result = simulate(spec, np.full((4, 2, 1), 0.5), record=["p.v", "p.spikes"])
    assert result.records["p.spikes"].dtype == np.uint8 and result.records["p.v"].shape == (4, 2, 1)
    assert result.counts["p"].tolist() == [[2], [2]]


@pytest.mark.parametrize(("weight_exp", "valid"), [(-9, False), (-8, True), (7, True), (8, False), (12, False)])
def test_weight_exponent_is_loihis_4_bit_shift(weight_exp: int, valid: bool):
    """weight_exp is Loihi's signed 4-bit exponent, −8..7: beyond it Lava's Python model would shift anyway (and
    W·x << 12 of 40 inputs × 254 × 255 would overflow Dense's int32), so the spec is refused before any step."""
    population = FixedPopulation(kind="soft_reset", size=1, vth=1000, dv=0, bias_mant=np.zeros(1, dtype=np.int64),
                                 bias_exp=0, scale=1.0, subtraction=1000)
    connection = FixedConnection(INPUT, "p", np.full((1, 40), 2), weight_exp, 0)

    def build() -> FixedNetSpec:
        return FixedNetSpec(
            Input((40,), "events"), 1.0, {"p": population}, (connection,), Readout("p", np.eye(1), np.zeros(1)), 1
        )

    if valid:
        spec = build()
        check_fixed_spec(spec)
        fired = int(simulate(spec, np.ones((1, 1, 40))).counts["p"][0, 0])
        assert fired == (1 if weight_exp > 0 else 0)  # W·x = 80: << 7 = 10240 ≥ vth 1000; >> 8 = 0
    else:  # a FixedNetSpec is validated when built: no backend ever sees one
        with pytest.raises(NetSpecError, match=r"weight_exp.*\[-8, 7\]"):
            build()
