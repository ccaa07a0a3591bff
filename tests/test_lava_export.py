"""NetSpec → Lava: spike parity with the reference simulator (float and bit-accurate fixed point, fused, batched
and plain graphs), backends, bad inputs, the netx path, and that no Lava OS process outlives a run."""

from __future__ import annotations

import dataclasses
import multiprocessing.resource_tracker
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as functional

from lavaflow.deploy.lowering import conv_matrix
from lavaflow.deploy.quantize import quantize
from lavaflow.deploy.run_config import run_config
from lavaflow.models.errors import BackendError, DataError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import (
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
from lavaflow.pipeline.benchmarks.lava_throughput import bench_lava_throughput, format_table
from lavaflow.pipeline.lava.run import build_lava_graph, run_lava, run_netx
from lavaflow.pipeline.lava.session import LavaRunError, run_and_read
from lavaflow.processes import dynamics

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from train_helpers import CtrlC

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only: a run takes seconds, ~5× that on a loaded machine


def _spec(
    seed: int,
    *,
    kind: str = "soft",
    encoding: str = "current",
    voltage_decay: float = 0.0,
    rate_decay: float = 0.0,
    time_steps: int = 12,
) -> NetSpec:
    """Input → hidden ⇄ out (dense input, feedback from out to hidden), random weights, thresholds and biases."""
    rng = np.random.default_rng(seed)
    n_in, hidden, out = 6, 8, 4

    def neurons(size: int) -> SoftResetNeurons | CubaNeurons:
        threshold = float(rng.choice([0.5, 1.0, 1.5]))
        bias = rng.normal(0.0, 0.05, size)
        if kind == "cuba":
            current_decay = float(rng.choice([1.0, 0.5]))
            return CubaNeurons(bias, threshold, current_decay=current_decay, voltage_decay=voltage_decay)
        reset = float(rng.choice([0.0, -threshold]))
        return SoftResetNeurons(bias, threshold, reset_potential=reset, voltage_decay=voltage_decay)

    connections = (
        Connection("input", "hidden", Dense(rng.normal(0.0, 0.8, (hidden, n_in))), 0),
        Connection("hidden", "out", Dense(rng.normal(0.0, 0.8, (out, hidden))), 1),
        Connection("out", "hidden", Dense(rng.normal(0.0, 0.5, (hidden, out))), 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, out)), rng.normal(0.0, 0.1, 3), rate_decay)
    return NetSpec(
        Input((n_in,), encoding), {"hidden": neurons(hidden), "out": neurons(out)}, connections, readout, time_steps
    )


def _inputs(spec: NetSpec, num_samples: int, seed: int) -> np.ndarray:
    """(T, N, n_in): constant intensities (current), Bernoulli spikes (rate) or small event counts (events)."""
    rng = np.random.default_rng(seed)
    shape = (spec.time_steps, num_samples, *spec.input.shape)
    if spec.input.encoding == "current":
        return np.broadcast_to(rng.random(shape[1:]), shape).copy()
    if spec.input.encoding == "rate":
        return (rng.random(shape) < 0.4).astype(np.uint8)
    return rng.integers(0, 4, size=shape).astype(np.float64)


def _payloads(spec: FixedNetSpec, inputs: np.ndarray) -> np.ndarray:
    """The integer payloads by models.fixed's rule, written out here: current intensities x become
    round(x / input_scale) with ties to the even integer, clipped to 0..255; spikes and event counts pass as they are.
    """
    if spec.input.encoding != "current":
        assert np.array_equal(inputs, np.floor(inputs)) and inputs.min() >= 0 and inputs.max() <= 255
        return inputs.astype(np.int64)
    scaled = np.asarray(inputs, dtype=np.float64) / spec.input_scale
    lower = np.floor(scaled)
    fraction = scaled - lower
    rounded = lower + (fraction > 0.5) + ((fraction == 0.5) & (lower % 2 == 1))
    return np.clip(rounded, 0, 255).astype(np.int64)


def _as_payloads(spec: FixedNetSpec, inputs: np.ndarray) -> tuple[FixedNetSpec, np.ndarray]:
    """Check the code's payloads against ``_payloads``, then hand both simulators the independent payloads
    themselves: with input_scale 1 an integer intensity is its own payload, whatever the code's rounding."""
    payloads = _payloads(spec, inputs)
    np.testing.assert_array_equal(input_payload(spec, inputs), payloads)
    return dataclasses.replace(spec, input_scale=1.0), payloads.astype(np.float64)


def _children() -> set[int]:
    """Process ids whose parent is this test process (from /proc; psutil is not a dependency)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry))
    return found


@pytest.fixture
def no_leftover_processes():
    """Fail if a Lava OS process (or its shared-memory manager) is still a child of this process afterwards."""
    multiprocessing.resource_tracker.ensure_running()  # Python's tracker lives as long as we do; count it as "before"
    before = _children()
    yield
    deadline = time.monotonic() + 60.0  # exiting processes may take a while on a loaded machine
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _children() - before == set()


# ------------------------------------------------------------------------------------------ parity
CASES = [
    pytest.param({"kind": "soft"}, id="IF"),
    pytest.param({"kind": "soft", "voltage_decay": 0.2, "rate_decay": 0.2}, id="LIF"),
    pytest.param({"kind": "cuba", "voltage_decay": 0.1}, id="CUBA"),
]


@LAVA_TIMEOUT
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_lava_float_spikes_equal_the_reference_for_every_sample(case: dict, fused: bool, batch_size: int) -> None:
    spec = _spec(11, **case)
    inputs = _inputs(spec, 5, seed=1)
    reference = simulate(spec, inputs)

    result = run_lava(spec, inputs, backend="lava-float", fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_allclose(result.logits, reference.logits, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    assert reference.counts["out"].sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 2), (False, 1)], ids=["fused-batched", "plain"])
def test_lava_fixed_spikes_equal_the_reference_bit_for_bit(case: dict, fused: bool, batch_size: int) -> None:
    spec = _spec(12, **case)
    fixed, payloads = _as_payloads(quantize(spec)[0], _inputs(spec, 5, seed=2))
    reference = simulate(fixed, payloads)

    result = run_lava(fixed, payloads, backend="lava-fixed", fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    assert reference.counts["out"].sum() > 0


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
@pytest.mark.parametrize("encoding", ["rate", "events"])
def test_spike_and_event_inputs_match_the_reference(backend: str, encoding: str) -> None:
    """Rate input travels as binary spikes (0 message bits), event counts as graded payloads (8 bits)."""
    spec = _spec(13, encoding=encoding, time_steps=10)
    inputs = _inputs(spec, 4, seed=3)
    simulated = spec
    if backend == "lava-fixed":
        simulated, inputs = _as_payloads(quantize(spec, input_range=3.0)[0], inputs)

    result = run_lava(simulated, inputs, backend=backend, batch_size=4)

    np.testing.assert_array_equal(result.counts["out"], simulate(simulated, inputs).counts["out"])


def _counts_of(graph_spec, payloads: np.ndarray, backend: str, *, fused: bool, batch_size: int, record: str):
    graph = build_lava_graph(graph_spec, payloads, fused=fused, batch_size=batch_size, record=record)
    config = run_config(backend, select_sub_proc_model=not fused)
    counts = run_and_read(graph.sink, graph.num_steps, config, graph.sink.counts.get, timeout_s=60).value
    return counts[: graph.num_samples]


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_hidden_population_of_fused_batched_and_plain_graphs_agree_with_the_reference(backend: str) -> None:
    spec = _spec(14, kind="soft", voltage_decay=0.1)
    inputs = _inputs(spec, 5, seed=4)
    simulated = spec
    if backend == "lava-fixed":
        simulated, inputs = _as_payloads(quantize(spec)[0], inputs)
    reference = simulate(simulated, inputs).counts["hidden"]
    payloads = inputs.reshape(spec.time_steps, 5, -1).transpose(1, 0, 2)

    fused = _counts_of(simulated, payloads, backend, fused=True, batch_size=4, record="hidden")
    plain = _counts_of(simulated, payloads, backend, fused=False, batch_size=1, record="hidden")

    np.testing.assert_array_equal(fused, plain)
    np.testing.assert_array_equal(fused, reference)
    assert reference.sum() > 0


# ------------------------------------------------------------------------------------------ convolutions
def test_conv_matrix_equals_torch_conv2d() -> None:
    rng = np.random.default_rng(6)
    conv = Conv(rng.normal(size=(3, 2, 3, 3)), input_shape=(2, 7, 6), stride=(2, 1), padding=(1, 2))
    image = rng.normal(size=(2, 7, 6))

    flat = conv_matrix(conv.weight, conv) @ image.reshape(-1)

    expected = functional.conv2d(
        torch.from_numpy(image)[None], torch.from_numpy(conv.weight), stride=conv.stride, padding=conv.padding
    )
    np.testing.assert_allclose(flat, expected.numpy().reshape(-1), rtol=0, atol=1e-12)


def _conv_spec(seed: int, *, stride: int, padding: int, encoding: str) -> NetSpec:
    """Input (2, 6, 6) → conv LIF (the given stride, padding) → conv soft reset (3×3, same size) → dense CUBA out;
    random weights and biases."""
    rng = np.random.default_rng(seed)
    first = Conv(rng.normal(0.15, 0.5, (2, 2, 3, 3)), (2, 6, 6), (stride, stride), (padding, padding))
    second = Conv(rng.normal(0.1, 0.5, (3, 2, 3, 3)), first.output_shape, (1, 1), (1, 1))
    populations = {
        "conv1": SoftResetNeurons(rng.normal(0.0, 0.05, first.out_size), 1.0, voltage_decay=0.1,
                                  shape=first.output_shape),
        "conv2": SoftResetNeurons(rng.normal(0.0, 0.05, second.out_size), 0.8, reset_potential=-0.8,
                                  shape=second.output_shape),
        "out": CubaNeurons(rng.normal(0.0, 0.05, 4), 0.7, current_decay=0.5, voltage_decay=0.1),
    }
    connections = (
        Connection("input", "conv1", first, 0),
        Connection("conv1", "conv2", second, 1),
        Connection("conv2", "out", Dense(rng.normal(0.05, 0.4, (4, second.out_size))), 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, 4)), np.zeros(3))
    return NetSpec(Input((2, 6, 6), encoding), populations, connections, readout, 8)


CONV_CASES = [
    pytest.param(0, 1, 1, "current", id="s1p1-current"),
    pytest.param(1, 2, 0, "events", id="s2p0-events"),
    pytest.param(2, 2, 1, "current", id="s2p1-current"),
]


@LAVA_TIMEOUT
@pytest.mark.parametrize(("seed", "stride", "padding", "encoding"), CONV_CASES)
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 3), (False, 1)], ids=["fused-batched", "plain"])
def test_conv_network_matches_the_reference(seed: int, stride: int, padding: int, encoding: str, backend: str,
                                            fused: bool, batch_size: int) -> None:
    """Convolutions into and between populations: Lava float spike for spike with the float reference, Lava fixed
    bit for bit with the integer reference, on the fused model and on the plain Dense + neuron graph."""
    spec = _conv_spec(seed, stride=stride, padding=padding, encoding=encoding)
    rng = np.random.default_rng(seed + 100)
    if encoding == "current":
        inputs = np.broadcast_to(rng.random((3, 2, 6, 6)), (8, 3, 2, 6, 6)).copy()
    else:
        inputs = rng.integers(0, 3, (8, 3, 2, 6, 6)).astype(np.float64)
    simulated = spec
    if backend == "lava-fixed":
        simulated, inputs = _as_payloads(quantize(spec, input_range=2.0 if encoding == "events" else 1.0)[0], inputs)
    reference = simulate(simulated, inputs)
    assert all(counts.sum() > 0 for counts in reference.counts.values())  # every population takes part

    result = run_lava(simulated, inputs, backend=backend, fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    if backend == "lava-float":
        np.testing.assert_allclose(result.logits, reference.logits, rtol=0, atol=1e-12)


def test_delays_beyond_loihis_synaptic_delays_are_not_exported() -> None:
    """1..64 steps are exported (tests/test_lava_delays.py); Loihi 2's DelayDense cannot delay further."""
    spec = _spec(15)
    slow = NetSpec(
        spec.input,
        spec.populations,
        (*spec.connections[:2], Connection("out", "hidden", spec.connections[2].synapse, 65)),
        spec.readout,
        spec.time_steps,
    )
    with pytest.raises(NetSpecError, match="delay of 65 steps"):
        build_lava_graph(slow, np.zeros((1, slow.time_steps, 6)), fused=True, batch_size=1)


# ------------------------------------------------------------------------------------------ backends and inputs
def test_loihi2_without_lava_loihi_explains_what_to_do() -> None:
    from lava.utils import loihi

    if loihi.is_installed():
        pytest.skip("lava-loihi is installed here")
    with pytest.raises(BackendError, match="lava-loihi") as raised:
        run_config("loihi2")
    assert "INRC" in str(raised.value)
    assert "lava-fixed" in str(raised.value)
    with pytest.raises(BackendError, match="lava-loihi"):
        run_lava(_spec(1), _inputs(_spec(1), 1, 0), backend="loihi2")


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(BackendError, match="lava-float, lava-fixed, loihi2"):
        run_config("lava-double")


def test_float_backend_refuses_a_fixed_spec() -> None:
    spec = _spec(2)
    with pytest.raises(BackendError, match="FixedNetSpec"):
        run_lava(quantize(spec)[0], _inputs(spec, 1, 0), backend="lava-float")


@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_inputs_of_the_wrong_shape_are_refused_before_lava_starts(backend: str) -> None:
    spec = _spec(3)
    with pytest.raises(DataError, match=r"\(12, 'N', 6\)|\(12, 'B', 6\)"):
        run_lava(spec, np.zeros((12, 2, 7)), backend=backend)
    with pytest.raises(DataError, match="shape"):
        run_lava(spec, np.zeros((11, 2, 6)), backend=backend)


@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_nan_inputs_are_refused(backend: str) -> None:
    spec = _spec(4)
    inputs = _inputs(spec, 2, 0)
    inputs[3, 1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        run_lava(spec, inputs, backend=backend)


# ------------------------------------------------------------------------------------------ failures clean up
@LAVA_TIMEOUT
def test_an_exception_in_a_process_model_stops_every_lava_process(
    monkeypatch: pytest.MonkeyPatch, no_leftover_processes: None
) -> None:
    def failing(self, state, a_in) -> None:  # runs in the forked process model (fork copies the patch)
        raise RuntimeError("injected failure in integrate")

    monkeypatch.setattr(dynamics.SoftResetFloat, "integrate", failing)
    spec = _spec(5)
    with pytest.raises(LavaRunError, match="injected failure in integrate"):
        run_lava(spec, _inputs(spec, 2, 0), backend="lava-float", fused=False, timeout_s=60)


@LAVA_TIMEOUT
def test_a_hung_run_times_out_and_stops_every_lava_process(
    monkeypatch: pytest.MonkeyPatch, no_leftover_processes: None
) -> None:
    def stuck(self, state, a_in) -> None:
        time.sleep(3600)

    monkeypatch.setattr(dynamics.SoftResetFloat, "integrate", stuck)
    spec = _spec(6)
    started = time.monotonic()
    with pytest.raises(LavaRunError, match="did not finish within 2 s"):
        run_lava(spec, _inputs(spec, 2, 0), backend="lava-float", timeout_s=2)
    assert time.monotonic() - started < 300  # stopped by the 2 s timeout, not after the stuck step's hour


@LAVA_TIMEOUT
def test_ctrl_c_during_a_run_stops_every_lava_process(
    monkeypatch: pytest.MonkeyPatch, no_leftover_processes: None, tmp_path: Path
) -> None:
    """Ctrl-C once the neurons are stepping: the run raises KeyboardInterrupt and no Lava process outlives it."""
    original = dynamics.SoftResetFloat.integrate
    ctrl_c = CtrlC(tmp_path / "stepping")

    def slow(self, state, a_in) -> None:  # runs in the forked process model: tells the test through a file
        ctrl_c.marker.touch()
        time.sleep(0.01)
        original(self, state, a_in)

    monkeypatch.setattr(dynamics.SoftResetFloat, "integrate", slow)
    spec = _spec(7)
    with ctrl_c.expect():  # 200 samples × 13 steps × ≥ 10 ms: far longer than the reaction
        run_lava(spec, _inputs(spec, 200, 0), backend="lava-float", batch_size=1)
    assert ctrl_c.marker.exists()


@LAVA_TIMEOUT
def test_a_successful_run_leaves_no_process_behind(no_leftover_processes: None) -> None:
    spec = _spec(8)
    result = run_lava(spec, _inputs(spec, 3, 0), backend="lava-fixed", batch_size=2)
    assert result.counts["out"].shape == (3, 4)


# ------------------------------------------------------------------------------------------ benchmark
@LAVA_TIMEOUT
def test_throughput_benchmark_measures_every_graph_on_the_same_spikes() -> None:
    rows = bench_lava_throughput(
        inputs=8, hidden=16, outputs=4, time_steps=4, plain_samples=2, fused_samples=2, batched_samples=8, batch_size=4
    )

    assert [row.name for row in rows] == ["(a) plain", "(b) fused", "(c) fused + batched", "(d) numpy reference"]
    assert [row.samples for row in rows] == [2, 2, 8, 8]
    assert all(row.agreement == 1.0 for row in rows)
    table = format_table(rows)
    assert table.splitlines()[2].startswith("(a) plain") and "100%" in table


# ------------------------------------------------------------------------------------------ netx
@pytest.mark.timeout(300)
def test_netx_network_matches_slayers_forward_pass(tmp_path: Path) -> None:
    """A bias-free two-layer slayer CUBA network: netx under fixed_pt counts the same output spikes as slayer."""
    import h5py
    from lava.lib.dl import slayer

    neuron = {"threshold": 1.0, "current_decay": 0.5, "voltage_decay": 0.1, "requires_grad": False}
    blocks = [  # a fresh dict per block: slayer's blocks may write into it (research/lava.md §4.1)
        slayer.block.cuba.Dense(dict(neuron), 8, 12, weight_norm=False),
        slayer.block.cuba.Dense(dict(neuron), 12, 5, weight_norm=False),
    ]
    weights = np.random.default_rng(1)
    for block in blocks:  # our own generator, not torch's global one
        shape = block.synapse.weight.shape
        block.synapse.weight.data = torch.from_numpy(weights.normal(0.0, 1.5, shape).astype(np.float32))
    rng = np.random.default_rng(0)
    time_steps, num_samples = 10, 4
    spikes = (rng.random((num_samples, 8, time_steps)) < 0.4).astype(np.float32)
    padded = np.concatenate([spikes, np.zeros((num_samples, 8, len(blocks)), np.float32)], axis=2)  # NCT
    with torch.no_grad():
        output = torch.from_numpy(padded)
        for block in blocks:
            output = block(output)
    expected = output.sum(-1).numpy()
    path = tmp_path / "network.net"  # exported after the forward pass, which sets the neurons' shape
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        for index, block in enumerate(blocks):
            block.export_hdf5(layers.create_group(str(index)))

    result = run_netx(path, spikes.transpose(2, 0, 1), timeout_s=120)

    np.testing.assert_array_equal(result.counts, expected)
    assert expected.sum() > 0
    with pytest.raises(DataError, match="expects"):
        run_netx(path, spikes.transpose(2, 0, 1)[:, :, :7])
    with pytest.raises(DataError, match=r"integers in 0\.\.1"):
        run_netx(path, 2 * spikes.transpose(2, 0, 1))


def test_netx_refuses_a_missing_or_corrupt_file(tmp_path: Path) -> None:
    inputs = np.zeros((4, 1, 8))
    with pytest.raises(NetSpecError, match="no such netx HDF5 file"):
        run_netx(tmp_path / "absent.net", inputs)
    corrupt = tmp_path / "corrupt.net"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(512))
    with pytest.raises(NetSpecError, match="not a readable netx network"):
        run_netx(corrupt, inputs)


@LAVA_TIMEOUT
@pytest.mark.parametrize(("fused", "batch_size"), [(True, 2), (False, 1)], ids=["fused-batched", "plain"])
def test_negative_weight_exponents_floor_as_lavas_dense_does(fused: bool, batch_size: int) -> None:
    """weight_exp < 0 (the quantiser's answer to a coarsened scale): Lava's Dense right-shifts the summed W·x,
    flooring it; the plain graph runs Lava's own Dense, the fused model and the reference our copies of the rule."""
    fixed, _ = quantize(_spec(12, kind="soft"))
    connections = tuple(
        dataclasses.replace(c, weight_exp=c.weight_exp - 3) if c.source == "input" else c for c in fixed.connections
    )
    shifted, inputs = _as_payloads(dataclasses.replace(fixed, connections=connections), _inputs(fixed, 5, seed=2))
    reference = simulate(shifted, inputs)
    assert reference.counts["out"].sum() > 0
    unshifted = dataclasses.replace(fixed, input_scale=1.0)
    assert not np.array_equal(reference.counts["hidden"], simulate(unshifted, inputs).counts["hidden"])

    result = run_lava(shifted, inputs, backend="lava-fixed", fused=fused, batch_size=batch_size)

    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])
    np.testing.assert_array_equal(result.predictions, reference.predictions)


@LAVA_TIMEOUT
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
def test_the_network_holds_its_payloads_and_runs_them_with_the_named_models(fused: bool) -> None:
    """The fused graph is two OS processes (network, sink; no source: the network reads its own payloads Var);
    the plain graph puts a PayloadSource inside the network's sub-process graph, whose payloads Var is the
    network's. Both count what the reference counts."""
    from lavaflow.pipeline.lava.run import fused_models
    from lavaflow.pipeline.lava.session import LavaRuntime
    from lavaflow.processes.network.models import PySpikingNetworkModelFloat
    from lavaflow.processes.source.process import PayloadSource

    spec = _spec(15, kind="soft", voltage_decay=0.1)
    inputs = _inputs(spec, 3, seed=5)
    payloads = inputs.reshape(spec.time_steps, 3, -1).transpose(1, 0, 2)
    graph = build_lava_graph(spec, payloads, fused=fused, batch_size=3 if fused else 1)
    np.testing.assert_array_equal(graph.network.payloads.init, payloads)
    models = fused_models(graph, "lava-float") if fused else None
    if fused:
        assert models[graph.network] is PySpikingNetworkModelFloat
    with LavaRuntime(graph.sink, run_config("lava-float", select_sub_proc_model=not fused, models=models),
                     timeout_s=120) as runtime:
        kinds = {type(process) for process in runtime.leaf_processes()}
        runtime.run(graph.num_steps)
        counts = runtime.get(graph.sink.counts)[: graph.num_samples]

    assert (PayloadSource in kinds) is not fused
    if fused:
        assert len(kinds) == 2  # SpikingNetwork and SpikeCounter
    np.testing.assert_array_equal(counts, simulate(spec, inputs).counts[spec.readout.source])
    assert counts.sum() > 0
