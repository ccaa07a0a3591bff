"""Bad specs and bad data at the library level: every backend refuses the same things with one of lavaflow's own
errors, before anything runs (so these tests start no Lava process unless they say so)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lavaflow.deploy.quantize import quantize
from lavaflow.deploy.run_config import run_config
from lavaflow.models.errors import BackendError, DataError, NetSpecError
from lavaflow.models.fixed import (
    FixedConnection,
    FixedNetSpec,
    FixedPopulation,
    activation_bounds,
    check_fixed_spec,
    input_payload,
)
from lavaflow.models.netspec import (
    INPUT,
    Connection,
    CubaNeurons,
    Dense,
    Input,
    NetSpec,
    Readout,
    SoftResetNeurons,
    check_integer,
    check_real,
)
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import build_lava_graph, run_lava, run_netx

Run = Callable[[NetSpec | FixedNetSpec, np.ndarray], object]


def _lava(backend: str, fused: bool) -> Run:
    return lambda spec, inputs: run_lava(spec, inputs, backend=backend, fused=fused, batch_size=2, timeout_s=60)


FLOAT_BACKENDS = [
    pytest.param(simulate, id="reference-float"),
    pytest.param(_lava("lava-float", True), id="lava-float-fused"),
    pytest.param(_lava("lava-float", False), id="lava-float-plain"),
]
FIXED_BACKENDS = [
    pytest.param(simulate, id="reference-int"),
    pytest.param(_lava("lava-fixed", True), id="lava-fixed-fused"),
    pytest.param(_lava("lava-fixed", False), id="lava-fixed-plain"),
]
# (run, quantise first): a fixed backend gets a FixedNetSpec (lava-fixed also quantises a NetSpec itself)
EVERY_BACKEND = [
    pytest.param(simulate, False, id="reference-float"),
    pytest.param(simulate, True, id="reference-int"),
    pytest.param(_lava("lava-float", True), False, id="lava-float-fused"),
    pytest.param(_lava("lava-float", False), False, id="lava-float-plain"),
    pytest.param(_lava("lava-fixed", True), True, id="lava-fixed-fused"),
    pytest.param(_lava("lava-fixed", False), True, id="lava-fixed-plain"),
    pytest.param(_lava("lava-fixed", True), False, id="lava-fixed-fused-netspec"),
]


def _spec(encoding: str = "current", n_in: int = 4, weight: float = 0.5, time_steps: int = 3) -> NetSpec:
    """input → hidden (soft reset) → out (CUBA), all input weights ``weight``."""
    rng = np.random.default_rng(0)
    populations = {
        "hidden": SoftResetNeurons(np.zeros(3), 1.0),
        "out": CubaNeurons(np.zeros(2), 1.0, current_decay=0.5),
    }
    connections = (
        Connection(INPUT, "hidden", Dense(np.full((3, n_in), weight)), 0),
        Connection("hidden", "out", Dense(rng.normal(0.0, 1.0, (2, 3))), 1),
    )
    readout = Readout("out", np.eye(2), np.zeros(2))
    return NetSpec(Input((n_in,), encoding), populations, connections, readout, time_steps)


def _one_layer_fixed(weight: np.ndarray, weight_exp: int, encoding: str = "events") -> FixedNetSpec:
    population = FixedPopulation(
        kind="soft_reset", size=weight.shape[0], vth=1000, dv=0, bias_mant=np.zeros(weight.shape[0], dtype=np.int64),
        bias_exp=0, scale=1.0, subtraction=1000,
    )
    connection = FixedConnection(INPUT, "p", weight, weight_exp, 0)
    readout = Readout("p", np.eye(weight.shape[0]), np.zeros(weight.shape[0]))
    return FixedNetSpec(Input((weight.shape[1],), encoding), 1.0, {"p": population}, (connection,), readout, 2)


# ------------------------------------------------------------------------------------- the 18-bit a_in gate
@pytest.mark.parametrize("run", FIXED_BACKENDS)
def test_event_counts_beyond_the_quantised_input_range_are_refused_on_every_fixed_backend(run: Run) -> None:
    """Quantised for counts up to 3, 20 inputs of weight 1.0 (mantissa 128, on slayer's dyadic grid): 200 events
    per input could drive a_in to 20·128·200 = 512,000, where Lava's CUBA current would wrap silently."""
    spec = _spec("events", n_in=20, weight=1.0)
    fixed, _ = quantize(spec, input_range=3)
    assert np.all(fixed.connections[0].weight == 128) and fixed.connections[0].weight_exp == 0
    within = np.full((spec.time_steps, 2, 20), 3.0)
    input_payload(fixed, within)  # what the quantiser planned for passes the gate
    with pytest.raises(NetSpecError, match=r"a_in can reach \[0, 512000\].*18-bit"):
        run(fixed, np.full((spec.time_steps, 2, 20), 200.0))


@pytest.mark.parametrize("run", FIXED_BACKENDS)
def test_a_hand_built_spec_whose_input_reaches_228600_is_refused_on_every_fixed_backend(run: Run) -> None:
    fixed = _one_layer_fixed(np.full((1, 4), 254), 0)
    assert activation_bounds(fixed, np.full(4, 225)) == {"p": (0, 228600)}
    with pytest.raises(NetSpecError, match=r"\[0, 228600\].*18-bit"):
        run(fixed, np.full((2, 2, 4), 225.0))


def test_activation_bounds_floor_negative_exponents_and_cover_every_connection() -> None:
    """W⁺·P and W⁻·P per neuron, shifted as Lava's Dense shifts (a right shift floors: the low end rounds down),
    spikes counted as 1 per source neuron."""
    weight = np.array([[254, -6], [2, 0]])
    bounds = activation_bounds(_one_layer_fixed(weight, -2), np.array([3, 5]))
    assert bounds == {"p": (-(30 // 4) - 1, (254 * 3) // 4)}  # floor(−30/4) = −8; floor(762/4) = 190
    assert activation_bounds(_one_layer_fixed(weight, 1), np.array([3, 5])) == {"p": (-60, 1524)}


# ------------------------------------------------------------------------------------- weight exponents
@pytest.mark.parametrize("exponent", [9, 8, -9])
def test_weight_exponents_outside_loihis_range_are_refused_when_built(exponent: int) -> None:
    with pytest.raises(NetSpecError, match=r"weight_exp.*\[-8, 7\]"):
        _one_layer_fixed(np.full((1, 2), 2), exponent)


@pytest.mark.parametrize("run", FIXED_BACKENDS)
def test_weights_edited_out_of_range_after_building_are_refused_by_every_backend(run: Run) -> None:
    """Validation at construction cannot see arrays changed in place later; every backend checks again."""
    fixed = _one_layer_fixed(np.full((1, 2), 2), 0)
    fixed.connections[0].weight[0, 0] = 300
    with pytest.raises(NetSpecError, match="range"):
        run(fixed, np.ones((2, 2, 2)))


def test_weight_exponents_at_the_edges_of_loihis_range_are_valid() -> None:
    for exponent in (-8, 7):
        check_fixed_spec(_one_layer_fixed(np.full((1, 2), 2), exponent))


def test_the_quantiser_keeps_weight_exponents_within_loihis_range() -> None:
    """A feedback weight 600× the smallest input weight used to get weight_exp 9; now the scale is coarsened."""
    populations = {"h": SoftResetNeurons(np.zeros(2), 1.0)}
    connections = (
        Connection(INPUT, "h", Dense(np.eye(2)), 0),
        Connection("h", "h", Dense(np.array([[600.0, 0.0], [0.0, 1.0]])), 1),
    )
    spec = NetSpec(Input((2,), "current"), populations, connections, Readout("h", np.eye(2), np.zeros(2)), 3)
    fixed, report = quantize(spec)
    assert [c.weight_exp for c in fixed.connections] == [-8, 7]
    check_fixed_spec(fixed)
    assert any("largest weight 600" in note for note in report.notes)


# ------------------------------------------------------------------------------------- rate input
@pytest.mark.parametrize("value", [2.0, 0.5, -1.0])
@pytest.mark.parametrize(("run", "fixed"), EVERY_BACKEND)
def test_rate_input_other_than_0_or_1_is_refused_on_every_backend(run: Run, fixed: bool, value: float) -> None:
    """Lava's binary synapse sends any non-zero value as 1 while the reference scaled by it."""
    spec = _spec("rate")
    inputs = np.zeros((spec.time_steps, 2, 4))
    inputs[1, 0, 2] = value
    with pytest.raises(DataError, match="0/1 spikes"):
        run(quantize(spec)[0] if fixed else spec, inputs)


# ------------------------------------------------------------------------------------- NaN in a built spec
def _poison(spec: NetSpec, where: str) -> None:
    """Write NaN into an array of a built (validated) spec: the arrays are mutable."""
    if where == "weight":
        spec.connections[1].synapse.weight[0, 0] = np.nan
    elif where == "bias":
        spec.populations["hidden"].bias[1] = np.inf
    else:
        spec.readout.weight[0, 0] = np.nan


@pytest.mark.parametrize("where", ["weight", "bias", "readout"])
@pytest.mark.parametrize(
    "run",
    [*FLOAT_BACKENDS, pytest.param(_lava("lava-fixed", True), id="lava-fixed-fused"),
     pytest.param(_lava("lava-fixed", False), id="lava-fixed-plain")],
)
def test_nan_written_into_a_built_spec_is_refused_on_every_backend(run: Run, where: str) -> None:
    """lava-fixed quantises the NetSpec itself; a FixedNetSpec's own float part is the next test."""
    spec = _spec()
    _poison(spec, where)
    with pytest.raises(NetSpecError, match="non-finite"):
        run(spec, np.full((spec.time_steps, 2, 4), 0.5))


@pytest.mark.parametrize("run", FIXED_BACKENDS)
def test_nan_in_a_fixed_specs_float_readout_is_refused(run: Run) -> None:
    fixed, _ = quantize(_spec())
    fixed.readout.bias[0] = np.nan
    with pytest.raises(NetSpecError, match="non-finite"):
        run(fixed, np.full((fixed.time_steps, 2, 4), 0.5))


def test_validate_names_the_poisoned_array() -> None:
    spec = _spec()
    spec.validate()
    _poison(spec, "weight")
    with pytest.raises(NetSpecError, match=r"connection 1 \(hidden → out\)\.weight: 1 non-finite"):
        spec.validate()


# ------------------------------------------------------------------------------------- numbers
def test_batch_size_must_be_a_positive_integer() -> None:
    spec = _spec()
    inputs = np.full((spec.time_steps, 3, 4), 0.5)
    for bad in (2.5, 0, -1, "2", True):
        with pytest.raises(BackendError, match="batch_size"):
            run_lava(spec, inputs, backend="lava-float", batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="timeout_s"):
        run_lava(spec, inputs, backend="lava-float", timeout_s="soon")  # type: ignore[arg-type]
    graph = build_lava_graph(spec, np.zeros((3, spec.time_steps, 4)), fused=True, batch_size=np.int64(2))
    assert graph.batch_size == 2 and type(graph.batch_size) is int


def test_a_backend_that_is_not_a_name_is_refused() -> None:
    with pytest.raises(BackendError, match="backend must be a name"):
        run_config(["lava-float"])  # type: ignore[arg-type]


def test_numpy_scalars_are_numbers_everywhere(tmp_path: Path) -> None:
    """input_range=np.float32(2.0) used to be refused as "got 2.0", float32 thresholds likewise."""
    spec = _spec()
    fixed, _ = quantize(spec, input_range=np.float32(2.0))
    assert fixed.input_scale == pytest.approx(2.0 / 255)
    neurons = SoftResetNeurons(np.zeros(3), np.float32(1.5), np.float64(-0.5), voltage_decay=np.int64(0))
    assert type(neurons.threshold) is float and neurons.threshold == 1.5
    cuba = CubaNeurons(np.zeros(2), np.float32(1.0), current_decay=np.float16(0.5))
    readout = Readout("out", np.eye(2), np.zeros(2), rate_decay=np.float32(0.25))
    built = NetSpec(Input((np.int64(4),), "current"), {"hidden": neurons, "out": cuba}, spec.connections, readout,
                    np.int64(3))
    assert type(built.time_steps) is int and built.input.shape == (4,)
    built.save(tmp_path / "netspec.npz")  # numpy scalars would not serialise
    assert NetSpec.load(tmp_path / "netspec.npz").populations["hidden"].threshold == 1.5
    quantize(built, input_range=np.int64(1))


@pytest.mark.parametrize("bad", ["2", True, np.bool_(True), None, float("nan"), -1.0, 0])
def test_input_range_must_be_a_positive_number(bad: object) -> None:
    with pytest.raises(NetSpecError, match="input_range"):
        quantize(_spec(), input_range=bad)  # type: ignore[arg-type]


def test_non_numbers_are_refused_where_numbers_are_validated() -> None:
    with pytest.raises(NetSpecError, match="threshold: expected a number"):
        SoftResetNeurons(np.zeros(2), "1.0")  # type: ignore[arg-type]
    with pytest.raises(NetSpecError, match="time_steps: expected an integer"):
        dataclasses.replace(_spec(), time_steps=2.5)
    with pytest.raises(NetSpecError, match="delay_steps"):
        spec = _spec()
        connections = (spec.connections[0], dataclasses.replace(spec.connections[1], delay_steps=1.5))
        dataclasses.replace(spec, connections=connections)
    assert check_real("x", np.float32(0.25)) == 0.25 and check_integer("n", np.uint8(3)) == 3
    with pytest.raises(NetSpecError):
        check_integer("n", 3.0)


# ------------------------------------------------------------------------------------- tiny weights
def _one_population(input_weight: list[list[float]], feedback: list[list[float]] | None = None) -> NetSpec:
    connections = [Connection(INPUT, "h", Dense(np.array(input_weight)), 0)]
    if feedback is not None:
        connections.append(Connection("h", "h", Dense(np.array(feedback)), 1))
    populations = {"h": SoftResetNeurons(np.zeros(2), 1.0)}
    return NetSpec(Input((2,), "current"), populations, tuple(connections), Readout("h", np.eye(2), np.zeros(2)), 3)


def test_denormal_weights_quantise_to_zero_and_are_reported() -> None:
    """5e-324 used to raise ZeroDivisionError in the quantiser."""
    fixed, report = quantize(_one_population([[5e-324, 0.5], [0.3, 0.2]]))
    assert fixed.connections[0].weight[0, 0] == 0 and np.count_nonzero(fixed.connections[0].weight) == 3
    assert report.tensors[-1].zeroed == 1
    fixed, report = quantize(_one_population([[5e-324, 5e-324], [5e-324, 5e-324]]))
    assert not fixed.connections[0].weight.any()
    assert sum(t.zeroed for t in report.tensors) == 4


def test_a_connection_of_denormal_weights_beside_normal_ones_is_refused_clearly() -> None:
    """It would vanish entirely, changing the network's topology: the quantiser's rule for any such connection."""
    with pytest.raises(NetSpecError, match=r"every weight of connection 1 \(h → h\) rounds to zero"):
        quantize(_one_population([[0.5, 0.5], [0.5, 0.5]], [[5e-324, 0.0], [0.0, 5e-324]]))


# ------------------------------------------------------------------------------------- netx files
@pytest.fixture
def netx_file(tmp_path: Path) -> Path:
    """A two-layer slayer CUBA network exported to netx HDF5."""
    import h5py
    from lava.lib.dl import slayer

    neuron = {"threshold": 1.0, "current_decay": 0.5, "voltage_decay": 0.1, "requires_grad": False}
    blocks = [
        slayer.block.cuba.Dense(dict(neuron), 4, 6, weight_norm=False),
        slayer.block.cuba.Dense(dict(neuron), 6, 3, weight_norm=False),
    ]
    with torch.no_grad():
        blocks[1](blocks[0](torch.zeros(1, 4, 2)))  # the forward pass sets the neurons' shape
    path = tmp_path / "network.net"
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        for index, block in enumerate(blocks):
            block.export_hdf5(layers.create_group(str(index)))
    return path


def test_netx_refuses_a_layer_without_neurons(netx_file: Path) -> None:
    """netx runs such a layer as a non-spiking integrator: the network would output no spikes, silently."""
    import h5py

    with h5py.File(netx_file, "a") as handle:
        del handle["layer/1/neuron"]
    with pytest.raises(NetSpecError, match=r"layer 1 \(dense\) has no 'neuron' group"):
        run_netx(netx_file, np.zeros((3, 1, 4)))


def test_netx_refuses_nan_weights(netx_file: Path) -> None:
    """lava-dl casts NaN weights to integers (then −256) with only a warning."""
    import h5py

    with h5py.File(netx_file, "a") as handle:
        weight = handle["layer/0/weight"]
        values = weight[()].astype(np.float64)
        values.flat[0] = np.nan
        del handle["layer/0/weight"]
        handle["layer/0"].create_dataset("weight", data=values)
    with pytest.raises(NetSpecError, match="layer 0 weight holds NaN"):
        run_netx(netx_file, np.zeros((3, 1, 4)))


def test_netx_arguments_are_checked(netx_file: Path) -> None:
    with pytest.raises(BackendError, match="input_message_bits"):
        run_netx(netx_file, np.zeros((3, 1, 4)), input_message_bits=2.5)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="expects"):
        run_netx(netx_file, np.zeros((3, 1, 4), dtype=object))
