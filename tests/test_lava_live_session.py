"""The Lava session that stays up (pipeline/lava/live.py): phases, weights and biases as Vars, graded messages, and
the guarded-run guarantees on every exit path. Every figure is compared with models.reference (or a closed form)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
import multiprocessing
import multiprocessing.resource_tracker
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from lava.proc.dense.process import Dense as LavaDense

from lavaflow.deploy.quantize import quantize
from lavaflow.deploy.run_config import run_config
from lavaflow.models.errors import BackendError, DataError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import Connection, Conv, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.live import LavaSession
from lavaflow.pipeline.lava.session import LavaRunError, LavaRuntime, _actors
from lavaflow.processes import dynamics
from lavaflow.processes.sink import models as sink_models
from lavaflow.processes.sink.process import SpikeCounter
from lavaflow.processes.source.process import StreamSource
from lavaflow.processes.window import phase_schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from train_helpers import CtrlC

GENEROUS_SECONDS = 120.0  # catches a hang; never a measure of speed
GRAPHS = [("lava-float", True), ("lava-float", False), ("lava-fixed", True), ("lava-fixed", False)]
GRAPH_IDS = ["float-fused", "float-plain", "fixed-fused", "fixed-plain"]


def _spec(time_steps: int = 6, seed: int = 0) -> NetSpec:
    """input → h → o with a one-step delay between h and o, leaky h, a bias on o: spikes depend on every part."""
    rng = np.random.default_rng(seed)
    populations = {
        "h": SoftResetNeurons(rng.normal(0.0, 0.1, 5), 1.0, voltage_decay=0.125),
        "o": SoftResetNeurons(np.full(3, 0.05), 1.0),
    }
    connections = (
        Connection("input", "h", Dense(rng.normal(0.4, 0.6, (5, 4))), 0),
        Connection("h", "o", Dense(rng.normal(0.3, 0.8, (3, 5))), 1),
    )
    return NetSpec(Input((4,), "current"), populations, connections, Readout("o", np.eye(3), np.zeros(3)), time_steps)


def _simulated(spec: NetSpec, backend: str) -> NetSpec | FixedNetSpec:
    return quantize(spec)[0] if backend == "lava-fixed" else spec


def _with_weight(spec: NetSpec | FixedNetSpec, index: int, weight: np.ndarray) -> NetSpec | FixedNetSpec:
    """``spec`` with connection ``index``'s weight replaced (the oracle's copy of a Var.set)."""
    connections = list(spec.connections)
    connection = connections[index]
    if isinstance(spec, FixedNetSpec):
        connections[index] = dataclasses.replace(connection, weight=weight.astype(np.int64))
    else:
        connections[index] = dataclasses.replace(
            connection, synapse=dataclasses.replace(connection.synapse, weight=weight)
        )
    return dataclasses.replace(spec, connections=tuple(connections))


def _with_bias(spec: NetSpec | FixedNetSpec, name: str, bias: np.ndarray) -> NetSpec | FixedNetSpec:
    populations = dict(spec.populations)
    if isinstance(spec, FixedNetSpec):
        populations[name] = dataclasses.replace(populations[name], bias_mant=bias.astype(np.int64))
    else:
        populations[name] = dataclasses.replace(populations[name], bias=bias)
    return dataclasses.replace(spec, populations=populations)


def _inputs(time_steps: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((time_steps, samples, 4))


def _children(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] not in "ZX":
                found.add(int(entry))
    return found


def _assert_nothing_left(before: set[int]) -> None:
    deadline = time.monotonic() + GENEROUS_SECONDS
    while not _children(os.getpid()) <= before:
        assert time.monotonic() < deadline, f"Lava processes left behind: {_children(os.getpid()) - before}"
        time.sleep(0.05)
    managers = [p for p in multiprocessing.active_children() if "SharedMemoryManager" in p.name]
    assert managers == [], "the shared-memory manager was left running"


@pytest.fixture
def baseline() -> set[int]:
    multiprocessing.resource_tracker.ensure_running()  # Python's tracker lives as long as we do: not a leftover
    return _children(os.getpid())


# ------------------------------------------------------------------------------------------------ phases
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("backend", "fused"), GRAPHS, ids=GRAPH_IDS)
def test_phases_with_different_inputs_equal_separate_runs(backend: str, fused: bool, baseline: set[int]) -> None:
    """Three phases (6, 6 and 4 steps, two windows each) give each the reference's spikes for its inputs alone."""
    spec = _simulated(_spec(), backend)
    batch = 2 if fused else 1
    samples = 3 if fused else 2  # fused: a padded second window
    phases = [(6, _inputs(6, samples, 1)), (6, _inputs(6, samples, 2)), (4, _inputs(4, samples, 3))]
    with LavaSession(spec, backend=backend, fused=fused, batch_size=batch, max_windows=2) as session:
        results = [session.run_phase(steps, inputs) for steps, inputs in phases]
    for (steps, inputs), result in zip(phases, results, strict=True):
        expected = simulate(dataclasses.replace(spec, time_steps=steps), inputs)
        np.testing.assert_array_equal(result.counts["o"], expected.counts["o"])
        np.testing.assert_allclose(result.logits, expected.logits, rtol=0, atol=1e-12)
    assert results[0].counts["o"].sum() > 0 and not np.array_equal(results[0].counts["o"], results[1].counts["o"])
    _assert_nothing_left(baseline)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
def test_phases_with_a_delayed_projection(fused: bool) -> None:
    """h → o with a delay of 3 steps: each phase, of any length, starts with an empty delay line, as a separate run
    does (the plain graph's DelayGates follow the phase schedule)."""
    base = _spec()
    connections = (base.connections[0], dataclasses.replace(base.connections[1], delay_steps=3))
    spec = dataclasses.replace(base, connections=connections)
    phases = [(steps, _inputs(steps, 1, 20 + steps)) for steps in (6, 4, 5)]
    with LavaSession(spec, backend="lava-float", fused=fused) as session:
        results = [session.run_phase(steps, inputs) for steps, inputs in phases]
    for (steps, inputs), result in zip(phases, results, strict=True):
        expected = simulate(dataclasses.replace(spec, time_steps=steps), inputs).counts["o"]
        np.testing.assert_array_equal(result.counts["o"], expected)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("backend", "fused"), [("lava-float", True), ("lava-fixed", False)], ids=["float-fused", "fixed-plain"]
)
def test_a_kept_phase_continues_the_state(backend: str, fused: bool) -> None:
    """input → o alone: a phase with reset=False continues the previous one exactly (no spikes in flight between
    populations to drop), so two phases equal one reference run over both inputs, split at the boundary."""
    rng = np.random.default_rng(4)
    float_spec = NetSpec(
        Input((4,), "current"),
        {"o": SoftResetNeurons(np.full(3, -0.05), 1.0, voltage_decay=0.25)},
        (Connection("input", "o", Dense(rng.normal(0.3, 0.5, (3, 4))), 0),),
        Readout("o", np.eye(3), np.zeros(3)),
        9,
    )
    spec = _simulated(float_spec, backend)
    inputs = _inputs(9, 1, 5)
    expected = simulate(spec, inputs, record=["o.spikes"]).records["o.spikes"][:, 0].astype(np.int64)
    with LavaSession(spec, backend=backend, fused=fused, max_steps=9) as session:
        first = session.run_phase(5, inputs[:5])
        kept = session.run_phase(4, inputs[5:], reset=False)
        restarted = session.run_phase(4, inputs[5:], reset=True)
    np.testing.assert_array_equal(first.counts["o"][0], expected[:5].sum(axis=0))
    np.testing.assert_array_equal(kept.counts["o"][0], expected[5:].sum(axis=0))
    fresh = simulate(dataclasses.replace(spec, time_steps=4), inputs[5:]).counts["o"][0]
    np.testing.assert_array_equal(restarted.counts["o"][0], fresh)
    assert not np.array_equal(kept.counts["o"][0], fresh), "the test needs a kept state that changes the spikes"


# ------------------------------------------------------------------------------------------------ Vars
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("backend", "fused"), GRAPHS, ids=GRAPH_IDS)
def test_weights_and_biases_set_between_phases_are_used_and_read_back(backend: str, fused: bool) -> None:
    spec = _simulated(_spec(), backend)
    inputs = _inputs(6, 1, 7)
    rng = np.random.default_rng(8)
    old = np.asarray(spec.connections[1].weight if backend == "lava-fixed" else spec.connections[1].synapse.weight)
    if backend == "lava-fixed":
        new_weight = 2 * rng.integers(-60, 61, old.shape)
        new_bias = rng.integers(-200, 400, 3)
    else:
        new_weight = rng.normal(0.2, 0.9, old.shape)
        new_bias = rng.normal(0.0, 0.2, 3)
    changed = _with_bias(_with_weight(spec, 1, new_weight), "o", new_bias)
    with LavaSession(spec, backend=backend, fused=fused) as session:
        np.testing.assert_array_equal(session.weights(1), old)
        before = session.run_phase(6, inputs)
        session.set_weights(1, new_weight)
        session.set_bias("o", new_bias)
        np.testing.assert_array_equal(session.weights(1), new_weight)
        np.testing.assert_array_equal(session.bias("o"), new_bias)
        after = session.run_phase(6, inputs)
        with pytest.raises(DataError):
            session.set_weights(1, np.zeros((5, 3)))
        if backend == "lava-fixed":
            with pytest.raises(DataError, match="even"):
                session.set_weights(1, new_weight + 1)
        still = session.run_phase(6, inputs)  # a refused set changes nothing
    np.testing.assert_array_equal(before.counts["o"], simulate(spec, inputs).counts["o"])
    expected = simulate(changed, inputs).counts["o"]
    np.testing.assert_array_equal(after.counts["o"], expected)
    np.testing.assert_array_equal(still.counts["o"], expected)
    assert not np.array_equal(expected, before.counts["o"]), "the new weights must change the spikes"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
def test_conv_weights_read_and_set_in_the_netspec_layout(fused: bool) -> None:
    """The plain graph keeps Lava Conv's flipped, transposed kernel: weights() and set_weights() translate."""
    rng = np.random.default_rng(9)
    kernel = rng.normal(0.3, 0.5, (2, 1, 2, 3))  # asymmetric, so a missed flip or transpose shows
    conv = Conv(kernel, (1, 4, 4))
    populations = {"c": SoftResetNeurons(np.zeros(2 * 3 * 2), 1.0, shape=(2, 3, 2))}
    spec = NetSpec(
        Input((1, 4, 4), "current"),
        populations,
        (Connection("input", "c", conv, 0),),
        Readout("c", np.ones((2, 12)), np.zeros(2)),
        5,
    )
    inputs = np.random.default_rng(10).random((5, 1, 1, 4, 4))
    new_kernel = rng.normal(0.2, 0.6, kernel.shape)
    with LavaSession(spec, backend="lava-float", fused=fused) as session:
        np.testing.assert_array_equal(session.weights(0), kernel)
        session.set_weights(0, new_kernel)
        np.testing.assert_array_equal(session.weights(0), new_kernel)
        if not fused:  # the parent's own Var is not the Conv's: refused, and the session goes on
            with pytest.raises(ValueError, match="no process model"):
                session.get(session.network.weights_0)
        result = session.run_phase(5, inputs)
    expected = simulate(_with_weight(spec, 0, new_kernel), inputs).counts["c"]
    np.testing.assert_array_equal(result.counts["c"], expected)
    assert not np.array_equal(expected, simulate(spec, inputs).counts["c"])


# ------------------------------------------------------------------------------------------------ graded
@pytest.mark.timeout(300)
@pytest.mark.parametrize("tag", ["lava-float", "lava-fixed"])
def test_signed_graded_spikes_pass_through_a_dense_with_message_bits(tag: str) -> None:
    """±1 payloads reach W·s through Lava's Dense with num_message_bits=8; with 0 bits −1 arrives as +1."""
    rng = np.random.default_rng(11)
    spikes = rng.choice([-1, 0, 1], size=(7, 4))  # (T, n_in) ternary spikes
    weights = 2 * rng.integers(-20, 21, (3, 4))  # even integers: the same in float and fixed Dense
    sums = {}
    for bits in (8, 0):
        source = StreamSource(size=4, batch_size=1, window_steps=8, capacity=7)
        dense = LavaDense(weights=weights.astype(np.float64), num_message_bits=bits)
        sink = SpikeCounter(shape=(3,), num_samples=1, batch_size=1, window_steps=8)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(sink.a_in)
        with LavaRuntime(sink, run_config(tag), timeout_s=GENEROUS_SECONDS) as runtime:
            runtime.start()
            source.send_payloads(spikes.astype(np.float64))
            runtime.run(8)  # the source sends at window steps 1..7, the Dense delivers them at 2..8
            sums[bits] = sink.receive_counts(1)[0][0]
    np.testing.assert_array_equal(sums[8], weights @ spikes.sum(axis=0))
    np.testing.assert_array_equal(sums[0], weights @ np.abs(spikes).sum(axis=0))
    assert not np.array_equal(sums[8], sums[0])


# ------------------------------------------------------------------------------------------------ exit paths
@pytest.mark.timeout(300)
def test_an_exception_inside_a_phase_leaves_nothing(monkeypatch: pytest.MonkeyPatch, baseline: set[int]) -> None:
    original = sink_models.PySpikeCounterModel.run_spk

    def failing(self: sink_models.PySpikeCounterModel) -> None:  # forked with the sink
        if self.time_step == 10:  # in the second phase (steps 8..14)
            raise RuntimeError("injected failure in phase two")
        original(self)

    monkeypatch.setattr(sink_models.PySpikeCounterModel, "run_spk", failing)
    session = LavaSession(_spec(), backend="lava-float", timeout_s=GENEROUS_SECONDS)
    with session:
        session.run_phase(6, _inputs(6, 1, 1))
        with pytest.raises(LavaRunError, match="injected failure in phase two"):
            session.run_phase(6, _inputs(6, 1, 2))
        _assert_nothing_left(baseline)
        with pytest.raises(LavaRunError, match="killed"):
            session.run_phase(6, _inputs(6, 1, 3))
    _assert_nothing_left(baseline)


@pytest.mark.timeout(300)
def test_a_killed_actor_between_phases_raises_and_leaves_nothing(baseline: set[int]) -> None:
    with LavaSession(_spec(), backend="lava-fixed", fused=False, timeout_s=GENEROUS_SECONDS) as session:
        session.run_phase(6, _inputs(6, 1, 1))
        victim = next(actor for actor in _actors(session.sink) if actor.pid in _children(os.getpid()))
        os.kill(victim.pid, signal.SIGKILL)
        with pytest.raises(LavaRunError, match="ended"):
            session.run_phase(6, _inputs(6, 1, 2))
    _assert_nothing_left(baseline)


@pytest.mark.timeout(300)
def test_an_actor_killed_during_a_phase_raises_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, baseline: set[int], tmp_path: Path
) -> None:
    original = dynamics.SoftResetFloat.integrate
    stepping = tmp_path / "stepping"

    def slow(self: dynamics.SoftResetFloat, state: dict, a_in: np.ndarray) -> None:  # in the forked network
        if not stepping.exists():  # written whole, then renamed: the reader never sees a partial pid
            partial = stepping.with_suffix(f".{os.getpid()}")
            partial.write_text(str(os.getpid()))
            partial.replace(stepping)
        time.sleep(0.01)
        original(self, state, a_in)

    monkeypatch.setattr(dynamics.SoftResetFloat, "integrate", slow)
    finished = threading.Event()

    def kill_once_stepping() -> None:
        while not stepping.exists():
            if finished.wait(0.01):
                return
        os.kill(int(stepping.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_once_stepping, daemon=True)
    with LavaSession(_spec(), backend="lava-float", max_windows=300) as session:
        session.start()
        killer.start()
        try:
            with pytest.raises(LavaRunError, match="ended before the run"):
                session.run_phase(6, _inputs(6, 300, 2))
        finally:
            finished.set()
            killer.join()
    _assert_nothing_left(baseline)


@pytest.mark.timeout(300)
def test_ctrl_c_during_a_later_phase_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, baseline: set[int], tmp_path: Path
) -> None:
    """Ctrl-C once the second phase is stepping: KeyboardInterrupt, and no Lava process outlives the session."""
    original = dynamics.SoftResetFloat.integrate
    second, ctrl_c = tmp_path / "second", CtrlC(tmp_path / "stepping")

    def slow(self: dynamics.SoftResetFloat, state: dict, a_in: np.ndarray) -> None:  # in the forked network
        if second.exists():
            ctrl_c.marker.touch()
            time.sleep(0.01)
        original(self, state, a_in)

    monkeypatch.setattr(dynamics.SoftResetFloat, "integrate", slow)
    with LavaSession(_spec(), backend="lava-float", max_windows=300) as session:
        session.run_phase(6, _inputs(6, 1, 1))
        second.touch()
        with ctrl_c.expect():  # 300 windows × 7 steps × 2 populations × 10 ms: ≥ 40 s
            session.run_phase(6, _inputs(6, 300, 2))
    assert ctrl_c.marker.exists()
    _assert_nothing_left(baseline)


@pytest.mark.timeout(300)
def test_leaving_the_block_with_an_error_kills_the_graph(baseline: set[int]) -> None:
    with pytest.raises(KeyError), LavaSession(_spec(), backend="lava-float") as session:
        session.run_phase(6, _inputs(6, 1, 1))
        raise KeyError("the caller fails between phases")
    _assert_nothing_left(baseline)
    with pytest.raises(LavaRunError):
        session.run_phase(6, _inputs(6, 1, 1))


def test_session_refuses_what_it_cannot_run() -> None:
    spec = _spec()
    with pytest.raises(BackendError):
        LavaSession(spec, backend="lava-float", fused=False, batch_size=2)
    session = LavaSession(spec, backend="lava-float", batch_size=2)  # nothing compiled until used
    with pytest.raises(BackendError, match="max_steps"):
        session.run_phase(7, _inputs(7, 1, 1))
    with pytest.raises(BackendError, match="windows"):
        session.run_phase(6, _inputs(6, 3, 1))
    with pytest.raises(DataError):
        session.run_phase(6, _inputs(5, 1, 1))
    assert session.sink.runtime is None
    session.close()


def test_phase_schedule_is_checked() -> None:
    np.testing.assert_array_equal(phase_schedule(8, 5, reset=False, inputs=True, learn=False), [8, 5, 0, 1, 0])
    with pytest.raises(ValueError):
        phase_schedule(0, 5, reset=True, inputs=True, learn=False)
