"""deploy.netx: netx files written here by lava-dl's slayer ``export_hdf5`` → read_netx → our Lava fixed-point run,
step for step against lava-dl's own ``netx.hdf5.Network`` on Loihi2SimCfg(select_tag='fixed_pt') (or, for
slayer's pool block, which netx does not implement, against slayer's own forward pass); round trips through
write_netx; bad files."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from lavaflow.deploy.netx import INPUT_UNIT_KEY, current_input, netx_weight_pipeline, read_netx, write_netx
from lavaflow.models.errors import ConfigError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import Input
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import run_lava

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    slayer = pytest.importorskip("lava.lib.dl.slayer")

NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.1}
DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------------------------------------ helpers
class _Chain(torch.nn.Module):
    """slayer blocks in a row, exported as netx's layer/0, layer/1, … (as lava-dl's tutorials do)."""

    def __init__(self, blocks: list) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x

    def export_hdf5(self, path: Path, input_shape: tuple[int, ...]) -> None:
        """An input block holding only the shape first (netx needs it before a conv), then the blocks."""
        with h5py.File(path, "w") as handle:
            layers = handle.create_group("layer")
            layers.create_dataset("0/type", (1,), "S10", [b"input"])
            layers["0/shape"] = np.array(input_shape)
            for index, block in enumerate(self.blocks):
                block.export_hdf5(layers.create_group(str(index + 1)))


def _export(blocks: list, input_shape: tuple[int, ...], path: Path, seed: int = 0) -> Path:
    """A slayer network with random weights scaled up so that spikes flow, exported to ``path``."""
    torch.manual_seed(seed)
    net = _Chain(blocks)
    with torch.no_grad():
        for block in net.blocks:
            synapse = getattr(block, "synapse", None)
            if synapse is not None and getattr(synapse, "weight", None) is not None and block.__class__.__name__ \
                    != "Pool":
                synapse.weight.mul_(4.0)
        net(torch.zeros(1, *input_shape, 2))  # slayer learns the neuron shapes on a first pass
    net.export_hdf5(path, input_shape)
    return path


def _netx_spikes(path: Path, inputs: np.ndarray, steps: int, **network_options) -> np.ndarray:
    """netx.hdf5.Network's output spikes, (steps, n_out) in C·H·W order, for one sample (T, *input_shape) fed from
    step 1 by a RingBuffer (zeros after T), on Loihi2SimCfg(select_tag='fixed_pt')."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    network = netx.hdf5.Network(net_config=str(path), **network_options)
    time_steps = inputs.shape[0]
    padded = np.zeros((steps, *inputs.shape[1:]), dtype=np.int64)
    padded[:time_steps] = inputs
    if len(network.inp.shape) == 3:  # netx's (x, y, f) = our (C, H, W) reversed
        padded = padded.transpose(0, 3, 2, 1)
    data = np.moveaxis(padded.reshape(steps, *network.inp.shape), 0, -1)
    source = Source(data=data)
    sink = Sink(shape=network.out.shape, buffer=steps)
    source.s_out.connect(network.inp)
    network.out.connect(sink.a_in)
    try:
        source.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
    finally:
        source.stop()
    out = np.moveaxis(out, -1, 0)
    if out.ndim == 4:
        out = out.transpose(0, 3, 2, 1)
    return out.reshape(steps, -1).astype(np.int64)


def _ours(spec: FixedNetSpec, inputs: np.ndarray, fused: bool) -> np.ndarray:
    """Our Lava fixed-point run of one sample (T, *input_shape): the last population's spikes (T, n)."""
    last = spec.readout.source
    result = run_lava(spec, inputs[:, None], backend="lava-fixed", fused=fused, batch_size=1, timeout_s=120,
                      record=(f"{last}.spikes",))
    return result.records[f"{last}.spikes"][0].astype(np.int64)


def _spikes(shape: tuple[int, ...], time_steps: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((time_steps, *shape)) < rate).astype(np.float64)


def _assert_step_exact(spec: FixedNetSpec, path: Path, inputs: np.ndarray) -> np.ndarray:
    """ours[t] == netx[t + 1] for t = 1..T (netx's first Dense adds the step our input connection does not)."""
    time_steps = inputs.shape[0]
    reference = _netx_spikes(path, inputs, time_steps + 1)[1:]
    assert reference.sum() > 0, "the test network should spike"
    for fused in (True, False):
        np.testing.assert_array_equal(_ours(spec, inputs, fused), reference, err_msg=f"fused={fused}")
    return reference


# ------------------------------------------------------------------------------------------------ step-exact
def test_dense_network_equals_netx_step_for_step(tmp_path):
    path = _export([slayer.block.cuba.Dense(NEURON, 24, 16), slayer.block.cuba.Dense(NEURON, 16, 6)], (24,),
                   tmp_path / "dense.net")
    imported = read_netx(path, time_steps=12)
    spec = imported.spec
    assert (imported.format, imported.neuron_model, imported.reset_mode) == ("netx", "CUBA", "zero")
    assert [p.kind for p in spec.populations.values()] == ["cuba", "cuba"]
    with h5py.File(path) as handle:  # the file's integers, as netx maps them
        neuron = handle["layer/1/neuron"]
        population = spec.populations["dense1"]
        assert (population.vth, population.du, population.dv) == (
            int(neuron["vThMant"][()]), int(neuron["iDecay"][()]) - 1, int(neuron["vDecay"][()]))
        weight = handle["layer/1/weight"][()].astype(np.int64)
    connection = spec.connections[0]
    np.testing.assert_array_equal(connection.weight << connection.weight_exp if connection.weight_exp >= 0
                                  else connection.weight >> -connection.weight_exp, weight)
    _assert_step_exact(spec, path, _spikes((24,), 12, 0.4, seed=1))


def test_bias_equals_netx_reset_when_the_input_arrives(tmp_path):
    """A bias drives a layer from netx's first step, one step before the input reaches it; netx's LIFReset with
    reset_offset=1 zeroes the first layer when the input arrives (netx step 2), which is where the spec starts."""
    path = _export([slayer.block.cuba.Dense(NEURON, 16, 10), slayer.block.cuba.Dense(NEURON, 10, 4)], (16,),
                   tmp_path / "bias.net", seed=17)
    bias = np.array([40, -30, 0, 100, 7, -64, 20, 0, 63, -1])
    with h5py.File(path, "r+") as handle:
        handle["layer/1/bias"] = bias.astype(np.float32)
    spec = read_netx(path, time_steps=12).spec
    np.testing.assert_array_equal(spec.populations["dense1"].bias_mant, bias)
    assert spec.populations["dense1"].bias_exp == 6
    inputs = _spikes((16,), 12, 0.3, seed=18)
    reference = _netx_spikes(path, inputs, 13, reset_interval=64, reset_offset=1)[1:]
    assert reference.sum() > 0
    np.testing.assert_array_equal(_ours(spec, inputs, fused=True), reference)


def test_conv_flatten_dense_equals_netx_step_for_step(tmp_path):
    blocks = [
        slayer.block.cuba.Conv(NEURON, 2, 3, 3, padding=1, stride=(1, 2)),
        slayer.block.cuba.Conv(NEURON, 3, 4, (3, 2), dilation=(1, 2), groups=1),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(NEURON, 4 * 5 * 1, 5),
    ]
    path = _export(blocks, (2, 7, 6), tmp_path / "conv.net", seed=3)
    spec = read_netx(path, time_steps=10).spec
    assert spec.input.shape == (2, 7, 6)
    assert spec.populations["conv2"].shape == (4, 5, 1)
    _assert_step_exact(spec, path, _spikes((2, 7, 6), 10, 0.5, seed=2))


def test_pool_block_equals_slayer_forward(tmp_path):
    """netx.hdf5.Network raises NotImplementedError on pool blocks; slayer's own forward pass is the reference
    (integer weights; delay_shift gives every block, the first included, one step): our spike t is slayer's t + 1."""
    blocks = [
        slayer.block.cuba.Conv(NEURON, 1, 2, 3, padding=1),
        slayer.block.cuba.Pool(NEURON, 2),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(NEURON, 2 * 3 * 3, 4),
    ]
    path = _export(blocks, (1, 6, 6), tmp_path / "pool.net", seed=5)
    time_steps = 12
    spec = read_netx(path, time_steps=time_steps).spec
    assert [c.conv.groups for c in spec.connections if c.conv is not None] == [1, 2]
    inputs = _spikes((1, 6, 6), time_steps, 0.5, seed=4)
    torch.manual_seed(5)
    net = _Chain(blocks)
    with torch.no_grad():
        padded = np.concatenate([inputs, np.zeros((3, 1, 6, 6))])
        x = torch.tensor(np.moveaxis(padded, 0, -1)[None], dtype=torch.float32)
        reference = np.moveaxis(net(x)[0].numpy(), -1, 0).reshape(time_steps + 3, -1)[1:1 + time_steps]
    assert reference.sum() > 0
    np.testing.assert_array_equal(_ours(spec, inputs, fused=True), reference.astype(np.int64))


def test_input_block_with_neurons_equals_slayer_forward(tmp_path):
    """slayer's Input block (x·weight → CUBA neurons): netx cannot compile its Input block model on the CPU
    simulator, so slayer's forward pass is the reference, as for pool."""
    blocks = [slayer.block.cuba.Input(NEURON), slayer.block.cuba.Dense(NEURON, 10, 5)]
    torch.manual_seed(9)
    net = _Chain(blocks)
    with torch.no_grad():
        blocks[1].synapse.weight.mul_(4.0)
        net(torch.zeros(1, 10, 2))
    path = tmp_path / "input.net"
    with h5py.File(path, "w") as handle:
        for index, block in enumerate(net.blocks):
            block.export_hdf5(handle.create_group(f"layer/{index}"))
    spec = read_netx(path, time_steps=12).spec
    assert list(spec.populations) == ["input_neurons", "dense1"]
    inputs = _spikes((10,), 12, 0.7, seed=10)
    with torch.no_grad():
        x = torch.tensor(np.concatenate([inputs, np.zeros((2, 10))]).T[None], dtype=torch.float32)
        reference = net(x)[0].numpy().T[1:13].astype(np.int64)
    assert reference.sum() > 0
    np.testing.assert_array_equal(_ours(spec, inputs, fused=True), reference)


def test_average_block_is_the_readout(tmp_path):
    path = _export([slayer.block.cuba.Dense(NEURON, 8, 6)], (8,), tmp_path / "avg.net")
    with h5py.File(path, "r+") as handle:  # slayer's Average block cannot export itself (it has no neuron)
        handle.create_dataset("layer/2/type", (1,), "S10", [b"average"])
        handle["layer/2/shape"] = np.array([3])
    readout = read_netx(path).spec.readout
    counts = np.arange(6.0)
    np.testing.assert_allclose(readout.weight @ counts, [0.5, 2.5, 4.5])


def test_delays_equal_netx_step_for_step(tmp_path):
    blocks = [slayer.block.cuba.Dense(NEURON, 12, 10), slayer.block.cuba.Dense(NEURON, 10, 6, delay=True)]
    path = _export(blocks, (12,), tmp_path / "delay.net", seed=7)
    with h5py.File(path, "r+") as handle:  # slayer initialises delays at 0: give them distinct values
        del handle["layer/2/delay"]
        handle["layer/2/delay"] = np.array([0, 1, 3, 1, 5, 2], dtype=np.float32)
    spec = read_netx(path, time_steps=14).spec
    delays = sorted(c.delay_steps for c in spec.connections if c.target == "dense2")
    assert delays == [1, 2, 3, 4, 6]
    _assert_step_exact(spec, path, _spikes((12,), 14, 0.5, seed=8))


def test_refractory_delay_holds_the_voltage(tmp_path):
    """refDelay R > 1 becomes cuba_refractory with R − 1 held steps; netx runs Lava's LIF, which ignores refDelay,
    so the reference is Lava's LIFRefractory process (float) configured by hand with integer-exact constants
    (iDecay 4096: u is this step's input; vDecay 0: v sums exactly in float)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFRefractory

    neuron = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}
    path = _export([slayer.block.cuba.Dense(neuron, 10, 6)], (10,), tmp_path / "ref.net", seed=11)
    with h5py.File(path, "r+") as handle:
        del handle["layer/1/neuron/refDelay"]
        handle["layer/1/neuron/refDelay"] = 3
        weight = handle["layer/1/weight"][()].astype(np.int64)
        threshold = int(handle["layer/1/neuron/vThMant"][()])
    spec = read_netx(path, time_steps=16).spec
    population = spec.populations["dense1"]
    assert (population.kind, population.refractory) == ("cuba_refractory", 2)
    inputs = _spikes((10,), 16, 0.6, seed=12)
    source = Source(data=np.concatenate([inputs, np.zeros((1, 10))]).T)
    dense = Dense(weights=weight.astype(float))
    lif = LIFRefractory(shape=(6,), du=1.0, dv=0.0, vth=float(threshold), refractory_period=2)
    sink = Sink(shape=(6,), buffer=17)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        source.run(condition=RunSteps(num_steps=17), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        reference = sink.data.get().T[1:].astype(np.int64)
    finally:
        source.stop()
    assert reference.sum() > 0 and (reference[1:] * reference[:-1]).sum() == 0
    np.testing.assert_array_equal(_ours(spec, inputs, fused=True), reference)


# ------------------------------------------------------------------------------------------------ round trips
def _assert_same_fixed(a: FixedNetSpec, b: FixedNetSpec) -> None:
    assert list(a.populations) == list(b.populations) and a.input.shape == b.input.shape
    for name, population in a.populations.items():
        other = b.populations[name]
        for field in ("kind", "size", "vth", "dv", "du", "bias_exp", "refractory", "shape"):
            assert getattr(population, field) == getattr(other, field), (name, field)
        np.testing.assert_array_equal(population.bias_mant, other.bias_mant)
    assert len(a.connections) == len(b.connections)
    for x, y in zip(a.connections, b.connections, strict=True):
        assert (x.source, x.target, x.weight_exp, x.delay_steps) == (y.source, y.target, y.weight_exp, y.delay_steps)
        np.testing.assert_array_equal(x.weight, y.weight)
    np.testing.assert_array_equal(a.readout.weight, b.readout.weight)


def test_write_read_round_trip_is_lossless_and_netx_loads_it(tmp_path):
    blocks = [slayer.block.cuba.Conv(NEURON, 1, 2, 3), slayer.block.cuba.Flatten(),
              slayer.block.cuba.Dense(NEURON, 2 * 4 * 4, 8), slayer.block.cuba.Dense(NEURON, 8, 3, delay=True)]
    path = _export(blocks, (1, 6, 6), tmp_path / "a.net", seed=13)
    with h5py.File(path, "r+") as handle:
        del handle["layer/4/delay"]
        handle["layer/4/delay"] = np.array([2, 0, 1], dtype=np.float32)
    first = read_netx(path, time_steps=10).spec
    write_netx(first, tmp_path / "b.net")
    second = read_netx(tmp_path / "b.net", time_steps=10).spec
    _assert_same_fixed(first, second)
    inputs = _spikes((1, 6, 6), 10, 0.5, seed=14)
    np.testing.assert_array_equal(_netx_spikes(tmp_path / "b.net", inputs, 11), _netx_spikes(path, inputs, 11))


def test_quantized_netspec_written_runs_the_same_in_netx(tmp_path):
    """Our own network (a float CUBA NetSpec, quantised by deploy.quantize) → write_netx → netx.hdf5.Network:
    netx's spikes equal our Lava fixed-point run of the FixedNetSpec, step for step."""
    from lavaflow.deploy.quantize import quantize
    from lavaflow.models.netspec import INPUT, Connection, CubaNeurons, Dense, Input, NetSpec, Readout

    rng = np.random.default_rng(0)
    populations = {"h": CubaNeurons(np.zeros(8), threshold=1.0, current_decay=0.25, voltage_decay=0.1),
                   "o": CubaNeurons(np.zeros(4), threshold=1.0, current_decay=0.5, voltage_decay=0.2)}
    connections = (Connection(INPUT, "h", Dense(rng.normal(0, 0.8, (8, 12))), 0),
                   Connection("h", "o", Dense(rng.normal(0, 0.8, (4, 8))), 1))
    spec = NetSpec(Input((12,), "rate"), populations, connections, Readout("o", np.eye(4), np.zeros(4)), 10)
    fixed, _ = quantize(spec)
    write_netx(spec, tmp_path / "ours.net")  # quantised inside, as deploy.quantize does
    _assert_step_exact(fixed, tmp_path / "ours.net", _spikes((12,), 10, 0.5, seed=15))


def test_write_refuses_soft_reset_unless_approximate(tmp_path):
    from lavaflow.deploy.quantize import quantize
    from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons

    rng = np.random.default_rng(0)
    spec = NetSpec(Input((5,), "rate"), {"hidden": SoftResetNeurons(np.zeros(4), threshold=1.0)},
                   (Connection(INPUT, "hidden", Dense(rng.normal(0, 1, (4, 5))), 0),),
                   Readout("hidden", np.eye(4), np.zeros(4)), 8)
    fixed, _ = quantize(spec)
    with pytest.raises(NetSpecError, match=r"population 'hidden'.*soft_reset.*approximate=True"):
        write_netx(fixed, tmp_path / "x.net")
    assert not (tmp_path / "x.net").exists()
    write_netx(fixed, tmp_path / "x.net", approximate=True)
    assert read_netx(tmp_path / "x.net").spec.populations["dense1"].kind == "cuba"


def test_netx_weight_pipeline_matches_lava_dense():
    """Our repetition of netx's scaling + Lava's clip/truncate against the functions netx and Lava run."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(3)
    for weight in (rng.integers(-128, 127, (5, 7)) * 2, rng.integers(-40, 0, (3, 4)) * 2, np.array([[-2, -4]]),
                   rng.integers(0, 60, (4, 4)), np.array([[3, -5, 7]])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scaled, bits, exponent, _ = optimize_weight_bits(weight.copy())
        mode = determine_sign_mode(scaled)
        expected = truncate_weights(clip_weights(scaled, mode, num_bits=8), mode, bits)
        ours, our_exponent = netx_weight_pipeline(weight)
        np.testing.assert_array_equal(ours, expected)
        assert our_exponent == exponent


# ------------------------------------------------------------------------------------------------ bad files
def _minimal(path: Path, **overrides) -> Path:
    with h5py.File(path, "w") as handle:
        layer = handle.create_group("layer/0")
        layer.create_dataset("type", (1,), "S10", [overrides.get("type", b"dense")])
        layer["shape"] = np.array([2])
        layer["weight"] = overrides.get("weight", np.array([[2.0, 4.0, 6.0], [0.0, -2.0, 8.0]]))
        for key, value in {"type": overrides.get("neuron_type", b"CUBA"), "iDecay": 1024, "vDecay": 0, "vThMant": 64,
                           "refDelay": 1,
                           "gradedSpike": overrides.get("graded", False)}.items():
            layer[f"neuron/{key}"] = value
        if "second" in overrides:
            second = handle.create_group("layer/1")
            second.create_dataset("type", (1,), "S10", [b"dense"])
            second["shape"] = np.array([1])
            second["weight"] = overrides["second"]
            for key, value in {"type": b"CUBA", "iDecay": 1024, "vDecay": 0, "vThMant": 64}.items():
                second[f"neuron/{key}"] = value
    return path


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        (lambda p: p.write_bytes(b"not an hdf5 file at all"), "is not an HDF5 file"),
        (lambda p: h5py.File(p, "w").close(), "no 'layer' group"),
        (lambda p: _minimal(p, weight=np.array([[np.nan, 1.0, 2.0], [0.0, 0.0, 0.0]])), r"layer 0: 'weight'.*NaN"),
        (lambda p: _minimal(p, weight=np.array([[np.inf, 1.0, 2.0], [0.0, 0.0, 0.0]])), r"NaN or inf"),
        (lambda p: _minimal(p, second=np.ones((1, 3))), r"layer 1: weight \(1, 3\) does not map .* 2 outputs"),
        (lambda p: _minimal(p, type=b"concat"), r"layer 0: block type 'concat' is not supported"),
        (lambda p: _minimal(p, graded=True), r"layer 0: graded spikes .* unsupported"),
        (lambda p: _minimal(p, neuron_type=b"SDNN"), r"layer 0: neuron type 'SDNN' is not supported"),
        (lambda p: h5py.File(p, "w").create_dataset("layer/0", data=[1]), r"layer 0: not a netx block"),
    ],
)
def test_bad_files_raise_one_paragraph(tmp_path, setup, pattern):
    path = tmp_path / "bad.net"
    setup(path)
    with pytest.raises(NetSpecError, match=pattern) as caught:
        read_netx(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message and caught.value.__cause__ is None


# ------------------------------------------------------------------------------------------------ current input
IF_NEURON = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.0}  # u = this step's input, v keeps it


def _bptt_like(first: dict, tmp_path: Path, seed: int) -> tuple[_Chain, Path]:
    """A 20-12-5 slayer CUBA net built as pipeline/bptt.py builds one (the hidden block keeps delay_shift, the last
    does not, so slayer's output step t is the NetSpec's step t), exported with an input block first."""
    torch.manual_seed(seed)
    net = _Chain([slayer.block.cuba.Dense(dict(first), 20, 12, delay_shift=True),
                  slayer.block.cuba.Dense(dict(NEURON), 12, 5, delay_shift=False)])
    with torch.no_grad():
        for block in net.blocks:
            block.synapse.weight.mul_(4.0)
        net(torch.zeros(1, 20, 2))
    path = tmp_path / "current.net"
    net.export_hdf5(path, (20,))
    return net, path


def _intensities(samples: int, time_steps: int, seed: int) -> np.ndarray:
    """Current-encoded input on sklearn digits' grid: one intensity j/16 per pixel, repeated every step."""
    levels = np.random.default_rng(seed).integers(0, 17, size=(samples, 20)) / 16
    return np.repeat(levels[None], time_steps, axis=0)


def _slayer_counts(net: _Chain, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        spikes = net(torch.tensor(np.moveaxis(inputs, 0, -1), dtype=torch.float32)).numpy()
    return spikes.sum(axis=-1).astype(np.int64)  # (B, n_out)


def test_current_input_equals_slayer_forward_exactly(tmp_path):
    """Real-valued input currents, slayer's training input: slayer adds W·x to its state (kept in 1/4096 units);
    netx's payload unit is a whole spike, so read with input_scale 1 the intensities round to 0/1. With the input
    unit refined (current_input) the counts equal slayer's forward pass sample for sample. The first block is an
    integrate-and-fire neuron (no truncating decay, which would cut at 1/(4096·m) instead of 1/4096), the
    second has slayer's usual decays (binary spikes in: the same integers as slayer)."""
    time_steps, samples = 12, 40
    net, path = _bptt_like(IF_NEURON, tmp_path, seed=11)
    inputs = _intensities(samples, time_steps, seed=12)
    reference = _slayer_counts(net, inputs)
    assert reference.sum() > 0 and len(np.unique(reference)) > 3, "the test network should spike, and differently"
    spec = read_netx(path, time_steps=time_steps, encoding="current").spec
    unit = int(spec.metadata[INPUT_UNIT_KEY])
    assert unit >= 16 and spec.input.encoding == "current" and spec.input_scale == 1 / unit
    np.testing.assert_array_equal(simulate(spec, inputs).counts["dense2"], reference)
    lava = run_lava(spec, inputs[:, :6], backend="lava-fixed", fused=True, batch_size=6, timeout_s=120)
    np.testing.assert_array_equal(lava.counts["dense2"], reference[:6])
    # the bug: the file's netx units with input_scale 1 (how `simulate --encoder current` drove an import)
    unscaled = dataclasses.replace(read_netx(path, time_steps=time_steps, encoding="events").spec,
                                   input=Input((20,), "current"))
    assert not np.array_equal(simulate(unscaled, inputs).counts["dense2"], reference)


def test_current_input_with_slayer_decays_matches_slayer_up_to_its_truncation(tmp_path):
    """With decays in the first block too, slayer truncates u and v at 1/4096 of a unit and the refined spec at
    1/(4096·m): rare ties differ, by a spike. The file read with input_scale 1 is far off."""
    time_steps, samples = 16, 200
    net, path = _bptt_like(NEURON, tmp_path, seed=13)
    inputs = _intensities(samples, time_steps, seed=14)
    reference = _slayer_counts(net, inputs)
    assert reference.sum() > 0
    counts = simulate(read_netx(path, time_steps=time_steps, encoding="current").spec, inputs).counts["dense2"]
    assert np.abs(counts - reference).max() <= 1
    assert np.all(counts == reference, axis=1).mean() >= 0.95
    unscaled = dataclasses.replace(read_netx(path, time_steps=time_steps, encoding="events").spec,
                                   input=Input((20,), "current"))
    assert np.all(simulate(unscaled, inputs).counts["dense2"] == reference, axis=1).mean() < 0.5


def _same_population(a, b) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def test_current_input_unit_fits_payloads_and_state(tmp_path):
    """m = 2^k: round(input_range·m) fits 8 bits, u cannot wrap; the conversion starts again from netx units, so
    it is idempotent; other encodings keep the file's units."""
    _, path = _bptt_like(NEURON, tmp_path, seed=15)
    events = read_netx(path, time_steps=16, encoding="events").spec
    assert events.input_scale == 1.0 and INPUT_UNIT_KEY not in events.metadata
    one, two = current_input(events, 1.0), current_input(events, 2.0)
    assert int(one.metadata[INPUT_UNIT_KEY]) == 2 * int(two.metadata[INPUT_UNIT_KEY])
    assert int(one.metadata[INPUT_UNIT_KEY]) <= 128  # payload round(1.0·m) ≤ 255
    again = current_input(one, 2.0)
    assert again.metadata == two.metadata and again.populations["dense1"].vth == two.populations["dense1"].vth
    first, second = one.populations["dense1"], events.populations["dense1"]
    unit = int(one.metadata[INPUT_UNIT_KEY])
    assert (first.vth, first.scale) == (second.vth * unit, second.scale / unit)
    assert _same_population(one.populations["dense2"], events.populations["dense2"])
    # a long T with slow current decay lets u add up: the unit shrinks so that a_in << 6 summed cannot wrap
    slow = dataclasses.replace(events, populations={**events.populations, "dense1": dataclasses.replace(
        events.populations["dense1"], du=0)}, time_steps=4096)
    assert int(current_input(slow, 1.0).metadata.get(INPUT_UNIT_KEY, "1")) < unit
    write_netx(one, tmp_path / "back.net")  # written in the file's own units again
    back = read_netx(tmp_path / "back.net", time_steps=16, encoding="events").spec.populations
    assert all(_same_population(back[name], events.populations[name]) for name in ("dense1", "dense2"))
    for bad in (0.0, -1.0, float("nan"), 256.0):
        with pytest.raises(ConfigError, match="input_range"):
            current_input(events, bad)


# ------------------------------------------------------------------------------------------------ Intel's MNIST
MNIST_NET = DATA / "trained_mnist_network.net"


@pytest.mark.skipif(not MNIST_NET.is_file(), reason="tests/data/trained_mnist_network.net is not there")
def test_intel_mnist_network_counts_equal_netx():
    """lava-dl's tutorial network (784-128-64-10 CUBA) on 100 MNIST digits with the tutorial's encoding: our fused
    Lava fixed-point counts equal lava-dl's netx run (pipeline.lava.run.run_netx) image for image."""
    from lavaflow.pipeline.benchmarks.netx_mnist import mnist_inputs, netx_counts, our_counts, window_spec

    inputs, labels = mnist_inputs(100)
    spec = window_spec(MNIST_NET, inputs.shape[0])
    assert spec.time_steps == 32 + 2 and [p.size for p in spec.populations.values()] == [128, 64, 10]
    ours = our_counts(spec, inputs)
    theirs = netx_counts(MNIST_NET, inputs)
    np.testing.assert_array_equal(ours, theirs)
    assert (ours.argmax(axis=1) == labels).mean() >= 0.9  # 96.1 % on the 1,000 mnist5k test digits
