"""FixedNetSpec as the deploy artifact: validated when built, saved and loaded losslessly by the NetSpec serialiser.

The expectations here are written independently of the code under test: the bit widths are Loihi 2's, spelled as
literals (8-bit even weights, 4-bit signed weight exponent, 17-bit vth, 12-bit decays, 13-bit bias mantissa, 3-bit
bias exponent); the comparison of two specs walks the records itself instead of reusing the serialiser; the file
format is checked against a header written by hand.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lavaflow.deploy.quantize import quantize
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import FixedConnection, FixedNetSpec, FixedPopulation, check_fixed_spec
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
    Sparse,
)
from lavaflow.models.reference import simulate

# The fields the comparison below knows; a new field must be added to it (and to the serialiser's round trip).
POPULATION_FIELDS = ("kind", "size", "vth", "dv", "bias_mant", "bias_exp", "scale", "subtraction", "du", "shape",
                     "refractory", "v_reset", "leak", "reset_mode")
CONNECTION_FIELDS = ("source", "target", "weight", "weight_exp", "delay_steps", "conv", "sparse")
SPEC_FIELDS = ("input", "input_scale", "populations", "connections", "readout", "time_steps", "metadata")


# ------------------------------------------------------------------------------------------ an independent equality
def assert_identical(a: object, b: object, where: str = "spec") -> None:
    """Raise AssertionError unless ``a`` and ``b`` are the same records, containers, scalars and arrays, with the
    same types (a tuple stays a tuple, an int an int), dtypes, shapes and bytes (so −0.0 ≠ 0.0, int32 ≠ int64)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_identical(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)} (order included)"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list))
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{index}]")
    elif isinstance(a, float):
        assert repr(a) == repr(b), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_the_comparison_knows_every_field() -> None:
    assert tuple(f.name for f in dataclasses.fields(FixedPopulation)) == POPULATION_FIELDS
    assert tuple(f.name for f in dataclasses.fields(FixedConnection)) == CONNECTION_FIELDS
    assert tuple(f.name for f in dataclasses.fields(FixedNetSpec)) == SPEC_FIELDS


def test_the_comparison_can_fail() -> None:
    """A weight, a dtype, a scalar type, a key order or a tuple that became a list: each one is a difference."""
    spec = hand_built()
    assert_identical(spec, hand_built())
    changes: list[Callable[[FixedNetSpec], FixedNetSpec]] = [
        lambda s: replace_connection(s, 1, weight=s.connections[1].weight + 2),
        lambda s: replace_connection(s, 1, weight=s.connections[1].weight.astype(np.int32)),
        lambda s: replace_population(s, "hidden", scale=np.nextafter(0.25, 1.0)),
        lambda s: dataclasses.replace(s, populations=dict(reversed(list(s.populations.items())))),
        lambda s: dataclasses.replace(s, metadata={**s.metadata, "extra": "x"}),
    ]
    for change in changes:
        with pytest.raises(AssertionError):
            assert_identical(spec, change(hand_built()))
    with pytest.raises(AssertionError):
        assert_identical((1, 2), [1, 2])
    with pytest.raises(AssertionError):
        assert_identical(0.0, -0.0)


# ------------------------------------------------------------------------------------------ specs to save
def random_netspec(seed: int, encoding: str) -> NetSpec:
    """Input → conv (soft reset LIF) → hidden (soft reset IF, self-feedback delay 2) ⇄ out (CUBA, feedback to
    hidden): dense, conv and feedback connections, both neuron kinds, random sizes and values."""
    rng = np.random.default_rng(seed)
    c_in, height, width = int(rng.integers(1, 3)), int(rng.integers(4, 8)), int(rng.integers(4, 8))
    c_out, stride, padding = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    conv = Conv(rng.normal(0.0, 0.5, (c_out, c_in, 3, 3)), (c_in, height, width), (stride, stride), (padding, 0))
    n_hidden, n_out = int(rng.integers(3, 12)), int(rng.integers(2, 6))
    populations = {
        "conv": SoftResetNeurons(
            rng.normal(0.0, 0.1, conv.out_size), threshold=float(rng.uniform(0.5, 2.0)),
            reset_potential=float(rng.uniform(-0.5, 0.0)), voltage_decay=float(rng.uniform(0.0, 0.3)),
            shape=conv.output_shape,
        ),
        "hidden": SoftResetNeurons(rng.normal(0.0, 0.1, n_hidden), threshold=float(rng.uniform(0.5, 2.0))),
        "out": CubaNeurons(
            rng.normal(0.0, 0.1, n_out), threshold=float(rng.uniform(0.5, 2.0)),
            current_decay=float(rng.uniform(0.1, 1.0)), voltage_decay=float(rng.uniform(0.0, 0.3)),
        ),
    }
    connections = (
        Connection(INPUT, "conv", conv, 0),
        Connection("conv", "hidden", Dense(rng.normal(0.0, 0.3, (n_hidden, conv.out_size))), 1),
        Connection("hidden", "hidden", Dense(rng.normal(0.0, 0.3, (n_hidden, n_hidden))), 2),
        Connection("hidden", "out", Dense(rng.normal(0.0, 0.5, (n_out, n_hidden))), 1),
        Connection("out", "hidden", Dense(rng.normal(0.0, 0.2, (n_hidden, n_out))), int(rng.integers(1, 4))),
    )
    readout = Readout("out", rng.normal(size=(3, n_out)), rng.normal(size=3), rate_decay=float(rng.uniform(0, 0.2)))
    metadata = {"method": "test", "seed": str(seed), "note": "ünïcode, \"quotes\" and \\ slashes"}
    time_steps = int(rng.integers(2, 9))
    return NetSpec(Input((c_in, height, width), encoding), populations, connections, readout, time_steps, metadata)


def soft(size: int = 2, **overrides: object) -> FixedPopulation:
    values: dict[str, object] = {
        "kind": "soft_reset", "size": size, "vth": 1000, "dv": 100, "bias_mant": np.arange(size, dtype=np.int64),
        "bias_exp": 2, "scale": 0.25, "subtraction": 900,
    }
    return FixedPopulation(**{**values, **overrides})  # type: ignore[arg-type]


def cuba(size: int = 3, **overrides: object) -> FixedPopulation:
    values: dict[str, object] = {
        "kind": "cuba", "size": size, "vth": 2000, "dv": 0, "bias_mant": -np.arange(size, dtype=np.int64),
        "bias_exp": 0, "scale": 0.5, "du": 4095,
    }
    return FixedPopulation(**{**values, **overrides})  # type: ignore[arg-type]


def hand_built(**overrides: object) -> FixedNetSpec:
    """A valid FixedNetSpec at the edges of every range, with integer dtypes other than int64:
    input (1, 3, 3) → conv (2, 2, 2) soft reset → hidden soft reset (2) ⇄ out cuba (3)."""
    conv = Conv(np.zeros((2, 1, 2, 2)), (1, 3, 3))
    populations = {
        "conv": soft(8, shape=(2, 2, 2), vth=0, dv=4095, bias_exp=7, subtraction=1,
                     bias_mant=np.array([-4096, 4095, 0, 1, -1, 2, -2, 7], dtype=np.int16)),
        "hidden": soft(2, vth=131071, subtraction=131071, bias_mant=np.array([5, -5], dtype=">i4")),
        "out": cuba(3, du=0, dv=4095),
    }
    connections = (
        FixedConnection(INPUT, "conv", np.array([[[[254, -256], [0, 2]]], [[[-254, 0], [2, -2]]]], dtype=np.int16),
                        -8, 0, conv),
        FixedConnection("conv", "hidden", np.full((2, 8), -254, dtype=np.int64), 7, 1),
        FixedConnection("hidden", "hidden", np.array([[0, 2], [-256, 2]], dtype=np.int8), 0, 2),
        FixedConnection("hidden", "out", np.array([[2, 4], [6, 8], [10, 254]], dtype=np.uint8), -1, 1),
        FixedConnection("out", "hidden", np.zeros((2, 3), dtype=np.int32), 3, 65536),
    )
    readout = Readout("out", np.arange(6.0).reshape(2, 3) / 7, np.array([-0.0, 1e-300]), rate_decay=0.125)
    values: dict[str, object] = {
        "input": Input((1, 3, 3), "current"), "input_scale": 1 / 255, "populations": populations,
        "connections": connections, "readout": readout, "time_steps": 4, "metadata": {"b": "2", "a": "1"},
    }
    return FixedNetSpec(**{**values, **overrides})  # type: ignore[arg-type]


def replace_population(spec: FixedNetSpec, name: str, **changes: object) -> FixedNetSpec:
    populations = {**spec.populations, name: dataclasses.replace(spec.populations[name], **changes)}
    return dataclasses.replace(spec, populations=populations)


def replace_connection(spec: FixedNetSpec, index: int, **changes: object) -> FixedNetSpec:
    connections = list(spec.connections)
    connections[index] = dataclasses.replace(connections[index], **changes)
    return dataclasses.replace(spec, connections=tuple(connections))


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("encoding", "input_range"), [("events", 3.0), ("current", 0.7), ("rate", 1.0)])
def test_quantised_specs_round_trip_losslessly(tmp_path: Path, seed: int, encoding: str, input_range: float) -> None:
    fixed, _ = quantize(random_netspec(seed, encoding), input_range=input_range)
    kinds = {p.kind for p in fixed.populations.values()}
    assert kinds == {"soft_reset", "cuba"}
    assert any(c.conv is not None for c in fixed.connections)
    assert any(c.source == "out" and c.target == "hidden" for c in fixed.connections)  # feedback
    path = tmp_path / "fixed.npz"
    fixed.save(path)
    loaded = FixedNetSpec.load(path)
    assert_identical(fixed, loaded)
    assert loaded.populations["conv"].shape == fixed.populations["conv"].shape and isinstance(
        loaded.populations["conv"].shape, tuple
    )
    assert all(c.weight.dtype == np.int64 for c in loaded.connections)
    events = np.random.default_rng(seed).integers(0, 2, (fixed.time_steps, 2, *fixed.input.shape)).astype(float)
    np.testing.assert_array_equal(simulate(loaded, events).counts["out"], simulate(fixed, events).counts["out"])


def test_a_sparse_connection_round_trips_and_bad_indices_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    spec = random_netspec(0, "rate")
    hidden = spec.populations["hidden"].size
    matrix = rng.normal(0.0, 0.5, (hidden, hidden)) * (rng.random((hidden, hidden)) < 0.3)
    recurrent = Connection("hidden", "hidden", Sparse.from_dense(matrix), 3)
    fixed, _ = quantize(dataclasses.replace(spec, connections=(*spec.connections, recurrent)))
    sparse = fixed.connections[-1]
    assert sparse.sparse is not None and sparse.weight.shape == (np.count_nonzero(matrix),)
    fixed.save(tmp_path / "sparse.npz")
    loaded = FixedNetSpec.load(tmp_path / "sparse.npz")
    assert_identical(fixed, loaded)
    events = rng.integers(0, 2, (fixed.time_steps, 2, *fixed.input.shape)).astype(float)
    np.testing.assert_array_equal(simulate(loaded, events).counts["hidden"], simulate(fixed, events).counts["hidden"])
    loaded.connections[-1].sparse.rows[0] = hidden  # arrays stay mutable: every reader checks again
    with pytest.raises(NetSpecError, match=r"rows: indices must lie in 0\.\."):
        check_fixed_spec(loaded)


def test_a_hand_built_spec_round_trips_with_its_dtypes_and_edge_values(tmp_path: Path) -> None:
    spec = hand_built()
    spec.save(tmp_path / "a.npz")
    loaded = FixedNetSpec.load(tmp_path / "a.npz")
    assert_identical(spec, loaded)
    assert loaded.populations["hidden"].bias_mant.dtype == np.dtype(">i4")
    assert [c.weight.dtype for c in loaded.connections] == [np.int16, np.int64, np.int8, np.uint8, np.int32]
    assert list(loaded.metadata) == ["b", "a"] and list(loaded.populations) == ["conv", "hidden", "out"]
    assert repr(loaded.readout.bias[0]) == repr(np.float64(-0.0)) and loaded.input_scale == 1 / 255
    loaded.save(tmp_path / "b.npz")  # a loaded spec saves to the same content
    assert_identical(spec, FixedNetSpec.load(tmp_path / "b.npz"))


def test_numpy_scalars_are_stored_as_python_numbers_so_the_spec_saves(tmp_path: Path) -> None:
    population = soft(2, vth=np.int64(1000), dv=np.uint16(100), bias_exp=np.int8(2), scale=np.float32(0.25),
                      subtraction=np.int32(900), du=np.int64(4095), shape=[np.int64(2)])
    connection = FixedConnection(INPUT, "p", np.full((2, 2), 2), np.int64(-1), np.int64(0))
    spec = FixedNetSpec(Input((2,), "events"), np.float64(1.0), {"p": population}, [connection],
                        Readout("p", np.eye(2), np.zeros(2)), np.int32(3))
    assert isinstance(spec.connections, tuple) and spec.populations["p"].shape == (2,)
    for value in (population.vth, population.dv, population.bias_exp, population.subtraction, population.du,
                  connection.weight_exp, connection.delay_steps, spec.time_steps):
        assert type(value) is int
    assert type(population.scale) is float and population.scale == 0.25
    spec.save(tmp_path / "np.npz")
    assert_identical(spec, FixedNetSpec.load(tmp_path / "np.npz"))


def test_the_file_is_the_netspec_container_with_its_kind_and_version(tmp_path: Path) -> None:
    """One serialiser: both kinds write an npz whose JSON "__header__" is the root record, naming its kind."""
    fixed, _ = quantize(random_netspec(0, "events"), input_range=2.0)
    fixed.save(tmp_path / "fixed.npz")
    random_netspec(0, "events").save(tmp_path / "float.npz")
    for name, kind in (("fixed.npz", "FixedNetSpec"), ("float.npz", "NetSpec")):
        with np.load(tmp_path / name, allow_pickle=False) as archive:
            header = json.loads(archive["__header__"].tobytes().decode())
        assert header["__type__"] == kind and header["format_version"] == 1
    with np.load(tmp_path / "fixed.npz", allow_pickle=False) as archive:
        stored = archive["populations.conv.bias_mant"]
    np.testing.assert_array_equal(stored, fixed.populations["conv"].bias_mant)


def test_a_file_written_by_hand_in_the_documented_format_loads(tmp_path: Path) -> None:
    header = {
        "__type__": "FixedNetSpec",
        "format_version": 1,
        "input": {"__type__": "Input", "shape": {"__tuple__": [2]}, "encoding": "events"},
        "input_scale": 1.0,
        "populations": {"__dict__": [["p", {
            "__type__": "FixedPopulation", "kind": "cuba", "size": 1, "vth": 7, "dv": 3,
            "bias_mant": {"__array__": "m"}, "bias_exp": 1, "scale": 0.5, "subtraction": 0, "du": 9,
            "shape": {"__tuple__": []},
        }]]},
        "connections": {"__tuple__": [{
            "__type__": "FixedConnection", "source": "input", "target": "p", "weight": {"__array__": "w"},
            "weight_exp": -2, "delay_steps": 0, "conv": None,
        }]},
        "readout": {"__type__": "Readout", "source": "p", "weight": {"__array__": "rw"}, "bias": {"__array__": "rb"},
                    "rate_decay": 0.0},
        "time_steps": 5,
        "metadata": {"__dict__": [["data", "digits"]]},
    }
    arrays = {"m": np.array([-3], dtype=np.int16), "w": np.array([[4, -6]]), "rw": np.eye(1), "rb": np.zeros(1)}
    write_npz(tmp_path / "hand.npz", header, arrays)
    spec = FixedNetSpec.load(tmp_path / "hand.npz")
    expected = FixedNetSpec(
        Input((2,), "events"), 1.0,
        {"p": FixedPopulation("cuba", 1, 7, 3, np.array([-3], dtype=np.int16), 1, 0.5, 0, 9, ())},
        (FixedConnection(INPUT, "p", np.array([[4, -6]]), -2, 0),),
        Readout("p", np.eye(1), np.zeros(1)), 5, {"data": "digits"},
    )
    assert_identical(spec, expected)


def test_netspec_still_round_trips(tmp_path: Path) -> None:
    spec = random_netspec(3, "current")
    spec.save(tmp_path / "net.npz")
    assert_identical(spec, NetSpec.load(tmp_path / "net.npz"))


# ------------------------------------------------------------------------------------------ refused when built
def base() -> FixedNetSpec:
    """input (3,) → p (soft reset, 2) → q (cuba, 2); every value well inside its range."""
    populations = {"p": soft(2), "q": cuba(2)}
    connections = (
        FixedConnection(INPUT, "p", np.array([[2, -2, 0], [4, 6, -8]]), 0, 0),
        FixedConnection("p", "q", np.array([[2, 0], [0, 2]]), 1, 1),
    )
    return FixedNetSpec(Input((3,), "events"), 1.0, populations, connections, Readout("q", np.eye(2), np.zeros(2)), 3)


def population(name: str, **changes: object) -> Callable[[], FixedNetSpec]:
    return lambda: replace_population(base(), name, **changes)


def connection(index: int, **changes: object) -> Callable[[], FixedNetSpec]:
    return lambda: replace_connection(base(), index, **changes)


def spec(**changes: object) -> Callable[[], FixedNetSpec]:
    return lambda: dataclasses.replace(base(), **changes)


INVALID = {
    # weights: 8-bit, even (Lava's Dense drops the LSB), −256 only beside a positive weight
    "odd weight": (connection(0, weight=np.array([[2, 3, 0], [0, 0, 0]])), r"connection 0 .*odd weights"),
    "weight 256": (connection(0, weight=np.array([[256, 0, 0], [0, 0, 0]])), r"connection 0 .*weight.*range"),
    "weight -258": (connection(1, weight=np.array([[-258, 2], [0, 0]])), r"connection 1 .*weight.*range"),
    "-256 inhibitory": (connection(1, weight=np.array([[-256, 0], [-2, 0]])), r"connection 1 .*inhibitory"),
    "float weight": (connection(0, weight=np.zeros((2, 3))), r"connection 0 .*weight.*integer numpy array"),
    "bool weight": (connection(0, weight=np.zeros((2, 3), dtype=bool)), r"connection 0 .*weight.*integer"),
    "weight shape": (connection(0, weight=np.zeros((3, 2), dtype=np.int64)), r"connection 0 .*weight.*shape"),
    # Loihi's 4-bit signed weight exponent
    "weight_exp 8": (connection(0, weight_exp=8), r"connection 0 .*weight_exp.*\[-8, 7\].*got 8"),
    "weight_exp -9": (connection(1, weight_exp=-9), r"connection 1 .*weight_exp.*\[-8, 7\].*got -9"),
    "weight_exp 1.0": (connection(1, weight_exp=1.0), r"weight_exp.*expected an integer"),
    # delays
    "input delay 1": (connection(0, delay_steps=1), r"connection 0 .*delay_steps"),
    "population delay 0": (connection(1, delay_steps=0), r"connection 1 .*delay_steps"),
    # 17-bit unsigned threshold, 12-bit decays, 13-bit signed bias mantissa, 3-bit bias exponent
    "vth 2^17": (population("p", vth=131072), r"p\.vth"),
    "vth -1": (population("q", vth=-1), r"q\.vth"),
    "dv 4096": (population("p", dv=4096), r"p\.dv"),
    "dv -1": (population("q", dv=-1), r"q\.dv"),
    "du 4096": (population("q", du=4096), r"q\.du"),
    "du -1": (population("q", du=-1), r"q\.du"),
    "bias_mant 4096": (population("p", bias_mant=np.array([0, 4096])), r"p\.bias_mant"),
    "bias_mant -4097": (population("q", bias_mant=np.array([-4097, 0])), r"q\.bias_mant"),
    "bias_mant float": (population("q", bias_mant=np.zeros(2)), r"q\.bias_mant.*integer numpy array"),
    "bias_mant size": (population("q", bias_mant=np.zeros(3, dtype=np.int64)), r"q\.bias_mant.*shape"),
    "bias_exp 8": (population("p", bias_exp=8), r"p\.bias_exp"),
    "bias_exp -1": (population("q", bias_exp=-1), r"q\.bias_exp"),
    "subtraction 0": (population("p", subtraction=0), r"p\.subtraction"),
    "subtraction 2^17": (population("p", subtraction=131072), r"p\.subtraction"),
    # structure and shapes
    "kind": (population("p", kind="lif"), r"population 'p'.*kind 'lif'"),
    "shape": (population("p", shape=(3,)), r"population 'p'.*shape"),
    "size": (population("p", size=0), r"p\.size"),
    "scale": (population("q", scale=float("nan")), r"q\.scale"),
    "time_steps": (spec(time_steps=0), r"time_steps"),
    "input_scale 0": (spec(input_scale=0.0), r"input_scale"),
    "input_scale inf": (spec(input_scale=float("inf")), r"input_scale"),
    "unknown target": (connection(1, target="r"), r"connection 1 .*unknown target"),
    "unknown source": (connection(1, source="r"), r"connection 1 .*unknown source"),
    "reserved name": (spec(populations={INPUT: soft(2)}), r"reserved"),
    "readout source": (spec(readout=Readout("r", np.eye(2), np.zeros(2))), r"readout.*unknown population"),
    "readout size": (spec(readout=Readout("q", np.eye(3), np.zeros(3))), r"readout weight"),
    "conv geometry": (connection(0, conv=Conv(np.zeros((2, 1, 1, 1)), (1, 2, 2))), r"connection 0 .*conv maps"),
    "not a connection": (spec(connections=("p", "q")), r"connection 0: expected a FixedConnection"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_each_out_of_range_value_is_refused_when_built_naming_the_field(case: str) -> None:
    build, message = INVALID[case]
    with pytest.raises(NetSpecError, match=message):
        build()


def test_non_finite_readout_is_refused_when_built() -> None:
    readout = Readout("q", np.eye(2), np.zeros(2))
    readout.weight[0, 0] = np.nan  # after the Readout was built: its arrays are mutable
    with pytest.raises(NetSpecError, match="non-finite"):
        dataclasses.replace(base(), readout=readout)


def test_the_edges_of_every_range_are_accepted() -> None:
    """The accepted set is unchanged: the values at each edge build (hand_built holds the rest)."""
    hand_built()
    for weight in ([[254, -256, 0], [0, 0, 0]], [[-254, 0, 0], [0, 0, -254]], [[0, 0, 0], [0, 0, 0]]):
        connection(0, weight=np.array(weight))()
    for exponent in (-8, 7):
        connection(0, weight_exp=exponent)()
    population("q", bias_mant=np.array([-4096, 4095]), bias_exp=7, vth=131071, du=4095, dv=4095)()
    population("q", vth=0, du=0, dv=0, bias_exp=0)()
    population("p", subtraction=131071)()
    population("p", subtraction=1, shape=(2, 1))()
    connection(1, delay_steps=65536)()


def test_values_written_in_after_the_build_are_still_caught_before_a_run() -> None:
    """Arrays are mutable: check_fixed_spec (which every simulator calls) validates again."""
    fixed = base()
    check_fixed_spec(fixed)
    fixed.connections[0].weight[0, 0] = 3
    with pytest.raises(NetSpecError, match="odd"):
        check_fixed_spec(fixed)
    with pytest.raises(NetSpecError, match="odd"):
        simulate(fixed, np.zeros((3, 1, 3)))
    with pytest.raises(NetSpecError, match="expected a FixedNetSpec"):
        check_fixed_spec(random_netspec(0, "events"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ damaged files
def write_npz(path: Path, header: object, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    path.write_bytes(buffer.getvalue())


def good_file(tmp_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a saved ``base()``."""
    base().save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return json.loads(arrays.pop("__header__").tobytes().decode()), arrays


def edited_header(header: dict, path: tuple[object, ...], value: object) -> dict:
    """A deep copy of ``header`` with the value at ``path`` (keys and list indices) replaced."""
    copy = json.loads(json.dumps(header))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def population_field(header: dict, field: str) -> tuple[object, ...]:
    names = [name for name, _ in header["populations"]["__dict__"]]
    return ("populations", "__dict__", names.index("p"), 1, field)


def damaged(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """File contents that must be refused, each with a pattern the message must hold besides the path."""
    header, arrays = good_file(tmp_path)
    good = (tmp_path / "good.npz").read_bytes()

    def npz(new_header: object, new_arrays: dict[str, np.ndarray] | None = None) -> bytes:
        write_npz(tmp_path / "scratch.npz", new_header, arrays if new_arrays is None else new_arrays)
        return (tmp_path / "scratch.npz").read_bytes()

    no_header = io.BytesIO()
    with zipfile.ZipFile(no_header, "w") as archive:
        archive.writestr("weights.npy", b"")
    bias_key = "populations.p.bias_mant"
    weight_key = "connections.0.weight"
    return {
        "empty": (b"", "not a readable FixedNetSpec"),
        "truncated": (good[: len(good) // 2], "not a readable FixedNetSpec"),
        "not a zip": (b"PK\x03\x04 but nothing else", "not a readable FixedNetSpec"),
        "no header": (no_header.getvalue(), "not a readable FixedNetSpec"),
        "header a list": (npz([1, 2]), "header"),
        "header a number": (npz(7), "header"),
        "other version": (npz({**header, "format_version": 2}), "format 2 is not 1"),
        "no version": (npz({k: v for k, v in header.items() if k != "format_version"}), "format None"),
        "missing node": (npz({k: v for k, v in header.items() if k != "readout"}), "readout"),
        "unknown node": (npz(edited_header(header, ("input", "__type__"), "Pickle")), "unknown node type 'Pickle'"),
        "float node": (npz(edited_header(header, ("readout", "__type__"), "SoftResetNeurons")), "unknown node type"),
        "missing array": (npz(header, {k: v for k, v in arrays.items() if k != bias_key}), "KeyError"),
        "vth out of range": (npz(edited_header(header, population_field(header, "vth"), 131072)), r"p.vth"),
        "vth a string": (npz(edited_header(header, population_field(header, "vth"), "7")), r"p.vth"),
        "odd weight": (npz(header, {**arrays, weight_key: arrays[weight_key] + 1}), "odd"),
        "float bias": (npz(header, {**arrays, bias_key: arrays[bias_key].astype(float)}), "bias_mant"),
    }


def test_every_damaged_file_raises_a_netspec_error_naming_it(tmp_path: Path) -> None:
    for name, (payload, message) in damaged(tmp_path).items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(payload)
        with pytest.raises(NetSpecError) as error:
            FixedNetSpec.load(path)
        assert str(path) in str(error.value), name
        assert re.search(message, str(error.value)), (name, str(error.value))


def test_a_missing_file_raises_a_netspec_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(NetSpecError, match=r"absent\.npz"):
        FixedNetSpec.load(tmp_path / "absent.npz")


def test_loading_the_other_kind_says_which_kind_the_file_holds(tmp_path: Path) -> None:
    float_spec = random_netspec(1, "events")
    fixed, _ = quantize(float_spec, input_range=2.0)
    float_spec.save(tmp_path / "float.npz")
    fixed.save(tmp_path / "fixed.npz")
    with pytest.raises(NetSpecError, match=r"float\.npz holds a 'NetSpec' record, not a FixedNetSpec.*NetSpec\.load"):
        FixedNetSpec.load(tmp_path / "float.npz")
    with pytest.raises(NetSpecError, match=r"fixed\.npz holds a 'FixedNetSpec' record, not a NetSpec.*FixedNetSpec"):
        NetSpec.load(tmp_path / "fixed.npz")


def test_an_object_array_is_never_unpickled(tmp_path: Path) -> None:
    """A pickled array whose unpickling would create a folder: loading refuses it and the folder never appears."""

    class Trap:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(tmp_path / "unpickled"),)

    header, arrays = good_file(tmp_path)
    trap = np.empty(2, dtype=object)
    trap[:] = [Trap(), Trap()]
    path = tmp_path / "trap.npz"
    write_npz(path, header, {**arrays, "populations.p.bias_mant": trap})
    with pytest.raises(NetSpecError, match=r"trap\.npz"):
        FixedNetSpec.load(path)
    assert not (tmp_path / "unpickled").exists()


def test_save_refuses_what_it_cannot_write_exactly(tmp_path: Path) -> None:
    with_a_set = dataclasses.replace(base(), metadata={"tags": {"a", "b"}})  # type: ignore[dict-item]
    with pytest.raises(NetSpecError, match=r"cannot serialise set at metadata\.tags"):
        with_a_set.save(tmp_path / "set.npz")
    objects = np.empty(1, dtype=object)
    with pytest.raises(NetSpecError, match="object array"):
        dataclasses.replace(base(), metadata={"array": objects}).save(tmp_path / "objects.npz")  # type: ignore[dict-item]
    assert not (tmp_path / "set.npz").exists() and not (tmp_path / "objects.npz").exists()
