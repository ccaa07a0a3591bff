"""lavaflow's Lava processes: model selection, neuron dynamics against brute-force loops and Lava's own LIF, the
per-sample window, and the graded-payload quirk of Lava's Dense. Small graphs (T ≤ 20), always stopped."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lava.proc.dense.process import Dense
from lava.proc.lif.process import LIF

from lavaflow.deploy.run_config import run_config
from lavaflow.pipeline.lava.session import run_and_read
from lavaflow.processes import dynamics
from lavaflow.processes.cuba.process import CubaLIF
from lavaflow.processes.network.process import SpikingNetwork
from lavaflow.processes.sink.process import SpikeCounter
from lavaflow.processes.soft_reset.process import SoftResetLIF
from lavaflow.processes.source.process import PayloadSource
from lavaflow.processes.topology import INPUT_SOURCE, CubaPopulation, Projection, SoftResetPopulation
from lavaflow.processes.window import window_position

BACKENDS = {"floating_pt": "lava-float", "fixed_pt": "lava-fixed"}
LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only: these graphs run in seconds


def _counts(sink: SpikeCounter, backend: str, num_steps: int) -> np.ndarray:
    """Run the graph; return the sink's counts Var after checking that its host pipe streamed the same counts."""

    def read() -> np.ndarray:
        counts = sink.counts.get()
        streamed, _ = sink.receive_counts()
        np.testing.assert_array_equal(streamed, counts)
        return counts

    return run_and_read(sink, num_steps, run_config(backend), read, timeout_s=60).value


# ------------------------------------------------------------------------------------------ model selection
@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
@pytest.mark.parametrize("sub_models", [False, True])
def test_every_process_compiles_under_both_tags(tag: str, sub_models: bool) -> None:
    fixed = tag == "fixed_pt"
    values = np.zeros(3, dtype=np.int64 if fixed else np.float64)
    populations = [SoftResetPopulation(3, 4, 0, 0, values), CubaPopulation(2, 4, 4095 if fixed else 1.0, 0, values[:2])]
    projections = [Projection(INPUT_SOURCE, 0, np.ones((3, 4), dtype=values.dtype), 0, 8),
                   Projection(0, 1, np.ones((2, 3)))]
    source = PayloadSource(payloads=np.zeros((2, 3, 4)), batch_size=1, window_steps=4)
    network = SpikingNetwork(
        input_size=4, populations=populations, projections=projections, output=1, batch_size=1, window_steps=4
    )
    sink = SpikeCounter(shape=(2,), num_samples=2, batch_size=1, window_steps=4)
    source.s_out.connect(network.s_in)
    network.s_out.connect(sink.a_in)

    executable = sink.compile(run_config(BACKENDS[tag], select_sub_proc_model=sub_models))

    models = {type(p).__name__: p.model_class.__name__ for p in executable.process_list}
    suffix = "Fixed" if fixed else "Float"
    assert models["PayloadSource"] == f"PyPayloadSourceModel{suffix}"
    assert models["SpikeCounter"] == "PySpikeCounterModel"
    if sub_models:
        assert models["SoftResetLIF"] == f"PySoftResetLIFModel{suffix}"
        assert models["CubaLIF"] == f"PyCubaLIFModel{suffix}"
        assert models["Dense"] == ("PyDenseModelBitAcc" if fixed else "PyDenseModelFloat")
        assert "SpikingNetwork" not in models  # expanded into its sub-process graph
    else:
        assert models["SpikingNetwork"] == f"PySpikingNetworkModel{suffix}"
        assert set(models) == {"PayloadSource", "SpikingNetwork", "SpikeCounter"}


# ------------------------------------------------------------------------------------------ neurons
def _brute_force_soft_reset(inputs: np.ndarray, *, vth, v_reset, dv, bias, fixed: bool) -> np.ndarray:
    """Independent loop of the soft-reset equations (python ints in fixed point), one sample (T, n) → counts."""
    counts = np.zeros(inputs.shape[1], dtype=np.int64)
    for neuron in range(inputs.shape[1]):
        v = 0
        for current in inputs[:, neuron]:
            if fixed:  # trunc toward zero of v·(4096 − dv)/4096, then (a_in << 6) and the bias, saturated to 24 bits
                decayed = abs(int(v)) * (4096 - dv) // 4096 * (1 if v >= 0 else -1)
                v = max(-(2**23 - 1), min(2**23 - 1, decayed + int(current) * 64 + bias))
                spike = v >= vth * 64
                v -= spike * (vth - v_reset) * 64
            else:
                v = (1.0 - dv) * v + current + bias
                spike = v >= vth
                v = v - (vth - v_reset) if spike else v
            counts[neuron] += int(spike)
    return counts


@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
def test_soft_reset_lif_matches_a_brute_force_loop_sample_by_sample(tag: str) -> None:
    fixed = tag == "fixed_pt"
    rng = np.random.default_rng(3)
    time_steps, num_samples, size = 12, 3, 5
    if fixed:
        payloads = rng.integers(0, 40, size=(num_samples, time_steps, size))
        params = {"vth": 60, "v_reset": -30, "dv": 400, "bias": 2}
    else:
        payloads = rng.random((num_samples, time_steps, size))
        params = {"vth": 1.25, "v_reset": -0.5, "dv": 0.1, "bias": 0.05}
    window_steps = time_steps + 1
    source = PayloadSource(payloads=payloads, batch_size=1, window_steps=window_steps)
    dense = Dense(weights=np.eye(size, dtype=payloads.dtype), num_message_bits=8)
    neurons = SoftResetLIF(
        shape=(size,),
        vth=params["vth"],
        v_reset=params["v_reset"],
        dv=params["dv"],
        bias_mant=np.full(size, params["bias"]),
        window_steps=window_steps,
    )
    sink = SpikeCounter(shape=(size,), num_samples=num_samples, batch_size=1, window_steps=window_steps)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(neurons.a_in)
    neurons.s_out.connect(sink.a_in)

    counts = _counts(sink, BACKENDS[tag], num_samples * window_steps)

    # Each sample starts from zero: the previous sample's residue in Dense is discarded at window step 1.
    expected = [_brute_force_soft_reset(payloads[n], fixed=fixed, **params) for n in range(num_samples)]
    np.testing.assert_array_equal(counts, np.stack(expected))
    assert counts.sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
def test_cuba_lif_spikes_like_lavas_own_lif(tag: str) -> None:
    """One window, no bias: Lava's LIF sees a zero input at step 1 (Dense's empty buffer), so both agree."""
    fixed = tag == "fixed_pt"
    rng = np.random.default_rng(5)
    time_steps, size = 16, 6
    payloads = rng.integers(0, 30, size=(1, time_steps, size)) if fixed else rng.random((1, time_steps, size))
    params = {"vth": 90, "du": 2000, "dv": 300} if fixed else {"vth": 1.2, "du": 0.4, "dv": 0.15}
    window_steps = time_steps + 1
    source = PayloadSource(payloads=payloads, batch_size=1, window_steps=window_steps)
    dense = Dense(weights=np.eye(size, dtype=payloads.dtype), num_message_bits=8)
    ours = CubaLIF(shape=(size,), window_steps=window_steps, **params)
    lavas = LIF(shape=(size,), **params)
    sinks = [SpikeCounter(shape=(size,), num_samples=1, batch_size=1, window_steps=window_steps) for _ in range(2)]
    source.s_out.connect(dense.s_in)
    dense.a_out.connect([ours.a_in, lavas.a_in])
    ours.s_out.connect(sinks[0].a_in)
    lavas.s_out.connect(sinks[1].a_in)

    counts = run_and_read(
        source, window_steps, run_config(BACKENDS[tag]), lambda: [s.counts.get() for s in sinks], timeout_s=60
    ).value

    np.testing.assert_array_equal(counts[0], counts[1])
    assert 0 < counts[0].sum() < time_steps * size


@LAVA_TIMEOUT
@pytest.mark.parametrize("tag", sorted(BACKENDS))
@pytest.mark.parametrize(("message_bits", "expected"), [(0, 1), (8, -1)])
def test_a_negative_graded_payload_survives_dense_only_with_message_bits(
    tag: str, message_bits: int, expected: int
) -> None:
    """Lava's Dense casts binary (0-bit) payloads to bool, so −1 arrives as +1; with 8 bits it stays −1."""
    source = PayloadSource(payloads=np.array([[[-1]]]), batch_size=1, window_steps=2)
    dense = Dense(weights=np.array([[1]]), num_message_bits=message_bits)
    sink = SpikeCounter(shape=(1,), num_samples=1, batch_size=1, window_steps=2)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(sink.a_in)

    counts = _counts(sink, BACKENDS[tag], 2)

    np.testing.assert_array_equal(counts, [[expected]])


# ------------------------------------------------------------------------------------------ arithmetic (no Lava)
@given(st.integers(-(2**23), 2**23), st.integers(0, 4095))
def test_fixed_decay_rounds_toward_zero(value: int, decay: int) -> None:
    exact = abs(value) * (4096 - decay) // 4096
    assert int(dynamics.decay(np.array([value]), decay)[0]) == (exact if value >= 0 else -exact)


def test_current_wrap_is_lavas_single_conditional_wrap() -> None:
    values = np.array([2**23, 2**23 + 1, 2**24 - 1, -(2**23) + 1, -(2**23), -(2**23) - 5])
    expected = [2**23, -(2**23) + 1, -1, -(2**23) + 1, 2**23, 2**23 - 5]
    np.testing.assert_array_equal(dynamics.wrap(values), expected)


def test_voltage_saturates_at_24_bits() -> None:
    np.testing.assert_array_equal(dynamics.saturate(np.array([2**23, -(2**23), 5])), [2**23 - 1, -(2**23 - 1), 5])


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_soft_reset_fires_at_exactly_threshold_and_subtracts(precision: str) -> None:
    """v ≥ θ (not Lava's >): one step of input θ must fire and leave v − (θ − v_reset)."""
    if precision == "fixed":
        arithmetic = dynamics.SoftResetFixed(vth=10, v_reset=-2, dv=0, bias=0)
        state, a_in, left = {"v": np.zeros(1, dtype=np.int64)}, np.array([10]), -2 * 64
    else:
        arithmetic = dynamics.SoftResetFloat(vth=0.75, v_reset=-0.25, dv=0.0, bias=0.0)
        state, a_in, left = {"v": np.zeros(1)}, np.array([0.75]), -0.25
    arithmetic.integrate(state, a_in)
    spikes = arithmetic.fire(state)
    arithmetic.reset(state, spikes)
    assert spikes.tolist() == [True]
    assert state["v"].tolist() == [left]


def test_effective_bias_shifts_by_the_exponent() -> None:
    np.testing.assert_array_equal(dynamics.effective_bias(np.array([3, -3, 5]), np.array([2, 0, -1])), [12, -3, 2])


@pytest.mark.parametrize(("time_step", "expected"), [(1, (0, 1)), (5, (0, 5)), (6, (1, 1)), (12, (2, 2))])
def test_window_position_counts_windows_from_zero_and_steps_from_one(time_step: int, expected: tuple) -> None:
    assert window_position(time_step, 5) == expected


def test_spiking_network_rejects_a_matrix_that_does_not_fit() -> None:
    populations = [SoftResetPopulation(3, 1.0, 0.0, 0.0, np.zeros(3))]
    with pytest.raises(ValueError, match=r"projection 0: weights \(3, 5\) are not \(3, 4\)"):
        SpikingNetwork(
            input_size=4,
            populations=populations,
            projections=[Projection(INPUT_SOURCE, 0, np.ones((3, 5)))],
            output=0,
            batch_size=1,
            window_steps=3,
        )
