"""``lavaflow import``, ``export`` and ``simulate --input/--record``: what they write, what they refuse, and that
the records equal the reference simulator's.

The netx and NIR readers and writers (lavaflow.deploy.netx, lavaflow.deploy.nir_graph) are replaced by fakes here,
so these tests hold the command line and the run dir to their contract whatever the readers do; the round trip
through the real ones runs at the end where they exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from lavaflow.deploy.imported import ImportedNetwork
from lavaflow.deploy.quantize import quantize
from lavaflow.models.errors import DataError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import (
    INPUT,
    Connection,
    CubaNeurons,
    Dense,
    Input,
    NetSpec,
    Readout,
    SoftResetNeurons,
    assert_netspec_equal,
)
from lavaflow.models.reference import simulate
from lavaflow.pipeline import interop
from lavaflow.pipeline.cli import EXIT_USER_ERROR, main

SPEC_STEPS = 8


def _cuba_net(encoding: str = "rate", n_in: int = 6) -> NetSpec:
    """Two CUBA layers, as a netx file holds them; weights drawn so that both layers spike."""
    rng = np.random.default_rng(3)
    return NetSpec(
        Input((n_in,), encoding),
        {"h": CubaNeurons(np.zeros(5), 1.0, current_decay=0.5, voltage_decay=0.1),
         "out": CubaNeurons(np.zeros(3), 1.0, current_decay=0.5, voltage_decay=0.1)},
        (Connection(INPUT, "h", Dense(rng.normal(0.6, 0.5, (5, n_in))), 0),
         Connection("h", "out", Dense(rng.normal(0.8, 0.5, (3, 5))), 1)),
        Readout("out", np.eye(3), np.zeros(3)),
        time_steps=SPEC_STEPS,
    )


def _soft_reset_net() -> NetSpec:
    """A float network with soft-reset neurons, as a NIR file of IF neurons with subtractive reset reads."""
    rng = np.random.default_rng(4)
    return NetSpec(
        Input((4,), "current"),
        {"h": SoftResetNeurons(rng.normal(0.0, 0.1, 6), 1.0), "out": SoftResetNeurons(np.zeros(2), 1.0)},
        (Connection(INPUT, "h", Dense(rng.normal(0.5, 0.4, (6, 4))), 0),
         Connection("h", "out", Dense(rng.normal(0.5, 0.4, (2, 6))), 1)),
        Readout("out", np.eye(2), np.zeros(2)),
        time_steps=SPEC_STEPS,
    )


class FakeFormats:
    """Stands in for lavaflow.deploy.netx / nir_graph: what ``interop._function`` returns, and what was called."""

    def __init__(self, netx: FixedNetSpec, nir: NetSpec) -> None:
        self.netx, self.nir = netx, nir
        self.read_error: BaseException | None = None
        self.write_error: BaseException | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def read_netx(self, path: Path, time_steps: int = 32) -> ImportedNetwork:
        self.calls.append(("read_netx", {"path": path, "time_steps": time_steps}))
        if self.read_error is not None:
            raise self.read_error
        return ImportedNetwork(dataclasses.replace(self.netx, time_steps=time_steps), "netx", "CUBA", "zero")

    def read_nir(self, source: Path, *, dt: float, time_steps: int = 32) -> ImportedNetwork:
        self.calls.append(("read_nir", {"path": source, "dt": dt, "time_steps": time_steps}))
        if self.read_error is not None:
            raise self.read_error
        return ImportedNetwork(dataclasses.replace(self.nir, time_steps=time_steps), "nir", "IF", "subtract", dt)

    def write_netx(self, spec: NetSpec | FixedNetSpec, path: Path, approximate: bool = False) -> None:
        self.calls.append(("write_netx", {"spec": spec, "path": path, "approximate": approximate}))
        Path(path).write_bytes(b"partial")  # a writer that fails half-way has started its file
        if self.write_error is not None:
            raise self.write_error
        Path(path).write_bytes(b"netx")

    def write_nir(self, spec: NetSpec | FixedNetSpec, path: Path, *, dt: float) -> None:
        self.calls.append(("write_nir", {"spec": spec, "path": path, "dt": dt}))
        if self.write_error is not None:
            raise self.write_error
        Path(path).write_bytes(b"nir")

    def function(self, table: dict[str, tuple[str, str]], format_name: str) -> Callable[..., Any]:
        return getattr(self, table[format_name][1])


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> FakeFormats:
    fixed, _ = quantize(_cuba_net())
    formats = FakeFormats(fixed, _soft_reset_net())
    monkeypatch.setattr(interop, "_function", formats.function)
    return formats


def _hdf5(path: Path, group: str) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_group(group).create_dataset("0", data=np.arange(3))
    return path


@pytest.fixture
def netx_file(tmp_path: Path) -> Path:
    return _hdf5(tmp_path / "trained.net", "layer")


@pytest.fixture
def nir_file(tmp_path: Path) -> Path:
    return _hdf5(tmp_path / "graph.nir", "node")


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("lavaflow: error: ") and "Traceback" not in err
    return " ".join(err.split())


def _snapshot(directory: Path) -> dict[str, bytes] | None:
    """Every file under ``directory`` with its bytes (None when it does not exist): to prove nothing changed."""
    if not directory.exists():
        return None
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(directory.rglob("*"))}


# ------------------------------------------------------------------------------------------------ import
def test_import_netx_writes_the_fixed_spec_and_where_it_came_from(fakes: FakeFormats, netx_file: Path,
                                                                  tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run), "--steps", "12"]) == 0
    assert fakes.calls == [("read_netx", {"path": netx_file, "time_steps": 12})]  # detected from the layout
    assert sorted(p.name for p in run.iterdir() if p.name != ".lock") == [
        "fixed_netspec.npz", "metrics.json", "source.json"]
    source = json.loads((run / "source.json").read_text())
    assert source == {
        "file": str(netx_file.resolve()), "format": "netx", "dt": None, "neuron_model": "CUBA",
        "reset_mode": "zero", "time_steps": 12, "spec": "fixed_netspec.npz",
        "sha256": hashlib.sha256(netx_file.read_bytes()).hexdigest(),
    }
    loaded = FixedNetSpec.load(run / "fixed_netspec.npz")
    assert loaded.time_steps == 12
    for ours, theirs in zip(loaded.connections, fakes.netx.connections, strict=True):
        np.testing.assert_array_equal(ours.weight, theirs.weight)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fixed_netspec_sha256"] == hashlib.sha256((run / "fixed_netspec.npz").read_bytes()).hexdigest()
    assert "netspec_sha256" not in metrics


def test_import_nir_needs_dt_and_writes_a_float_netspec(fakes: FakeFormats, nir_file: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    err = _error(capsys, ["import", str(nir_file), "--out", str(run)])
    assert "--dt SECONDS" in err and "NIR" in err and not run.exists() and fakes.calls == []
    assert main(["import", str(nir_file), "--out", str(run), "--dt", "1e-4"]) == 0
    assert fakes.calls == [("read_nir", {"path": nir_file, "dt": 1e-4, "time_steps": 32})]
    assert json.loads((run / "source.json").read_text())["dt"] == 1e-4
    assert_netspec_equal(NetSpec.load(run / "netspec.npz"), dataclasses.replace(fakes.nir, time_steps=32))
    assert not (run / "fixed_netspec.npz").exists()


def test_the_format_is_told_by_the_layout_and_a_wrong_format_is_named(
        fakes: FakeFormats, netx_file: Path, nir_file: Path, tmp_path: Path) -> None:
    assert interop.detect_format(netx_file) == "netx" and interop.detect_format(nir_file) == "nir"
    with pytest.raises(DataError, match="layout of a netx file, not nir"):
        interop.read_network(netx_file, format_name="nir", dt=1e-3)
    with pytest.raises(DataError, match=r"neither a netx file .* holds \['weights'\]"):
        interop.detect_format(_hdf5(tmp_path / "other.h5", "weights"))
    with pytest.raises(DataError, match="not an HDF5 file"):
        (tmp_path / "text.net").write_text("layer 0: dense\n" * 100)
        interop.detect_format(tmp_path / "text.net")


BAD_FILES: dict[str, tuple[Callable[[Path], Path], BaseException | None, str]] = {
    "not hdf5": (lambda d: _write(d / "weights.net", b"\x00" * 4096), None, "not an HDF5 file"),
    "truncated hdf5": (lambda d: _write(d / "cut.net", _hdf5(d / "whole.net", "layer").read_bytes()[:700]), None,
                       "HDF5"),
    "neither layout": (lambda d: _hdf5(d / "other.h5", "weights"), None, "neither a netx file"),
    "missing": (lambda d: d / "nowhere.net", None, "no file"),
    "reader KeyError": (lambda d: _hdf5(d / "odd.net", "layer"), KeyError("neuron"),
                        "not a readable netx file (KeyError: 'neuron')"),
    "NaN weights": (lambda d: _hdf5(d / "nan.net", "layer"),
                    NetSpecError("layer 1: weight holds NaN or inf values"), "layer 1: weight holds NaN"),
}


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("existing", [False, True], ids=["new run dir", "run dir with --overwrite"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_exits_2_and_leaves_the_run_dir_as_it_was(
        case: str, existing: bool, fakes: FakeFormats, netx_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    make, reader_error, phrase = BAD_FILES[case]
    run = tmp_path / "run"
    if existing:
        assert main(["import", str(netx_file), "--out", str(run)]) == 0
    before = _snapshot(run)
    fakes.read_error = reader_error
    argv = ["import", str(make(tmp_path)), "--out", str(run)] + (["--overwrite"] if existing else [])
    err = _error(capsys, argv)
    assert phrase in err
    assert _snapshot(run) == before  # None: not even created


def test_a_non_empty_run_dir_is_refused_unless_overwrite(fakes: FakeFormats, netx_file: Path, nir_file: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--method", "nope", "--out", str(run)]) == EXIT_USER_ERROR  # a refused train: nothing
    capsys.readouterr()
    assert main(["import", str(netx_file), "--out", str(run)]) == 0
    before = _snapshot(run)
    err = _error(capsys, ["import", str(nir_file), "--out", str(run), "--dt", "0.001"])
    assert "not empty" in err and "--overwrite" in err and "fixed_netspec.npz" in err
    assert _snapshot(run) == before
    (run / "records").mkdir()
    (run / "records" / "torch.npz").write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    assert main(["import", str(nir_file), "--out", str(run), "--dt", "0.001", "--overwrite"]) == 0
    names = sorted(p.name for p in run.iterdir() if p.name != ".lock")
    assert names == ["metrics.json", "netspec.npz", "notes.txt", "source.json"]  # the old run's files are gone
    assert json.loads((run / "source.json").read_text())["format"] == "nir"


def test_a_run_dir_being_written_is_not_imported_into(fakes: FakeFormats, netx_file: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from lavaflow.pipeline.rundir import RunDir

    run = RunDir.create(tmp_path / "run")
    with run.lock():
        err = _error(capsys, ["import", str(netx_file), "--out", str(run.path)])
    assert "another lavaflow process" in err
    assert sorted(p.name for p in run.path.iterdir()) == [".lock"]


# ------------------------------------------------------------------------------------------------ simulate --input
def _spikes(time_steps: int, n_in: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((time_steps, n_in)) < 0.5).astype(np.uint8)


def test_import_then_simulate_records_equal_the_reference_simulators(
        fakes: FakeFormats, netx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lava fixed point on an imported netx network: (T, n) traces equal to models.reference's, T ≠ the spec's."""
    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run), "--steps", str(SPEC_STEPS)]) == 0
    time_steps = 13
    spikes = _spikes(time_steps, 6)
    np.save(tmp_path / "spikes.npy", spikes)
    traces = ["h.v", "h.spikes", "out.u", "out.v", "out.spikes"]
    assert main(["simulate", str(run), "--backend", "torch", "--backend", "lava-fixed", "--input",
                 str(tmp_path / "spikes.npy"), "--record", ",".join(traces[:2]), "--record", ",".join(traces[2:])]) == 0
    out = capsys.readouterr().out
    assert "lava-fixed" in out and "equal to the reference simulator's" in out
    expected = simulate(dataclasses.replace(fakes.netx, time_steps=time_steps), spikes[:, None].astype(float),
                        record=traces).records
    for backend in ("torch", "lava-fixed"):
        with np.load(run / "records" / f"{backend}.npz") as archive:
            assert sorted(archive.files) == sorted(traces)
            for name in traces:
                size = fakes.netx.populations[name.split(".")[0]].size
                assert archive[name].shape == (time_steps, size), (backend, name)
                np.testing.assert_array_equal(archive[name], expected[name][:, 0], err_msg=f"{backend} {name}")
        assert (run / "records" / f"raster_{backend}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert expected["h.spikes"].sum() > 0 and expected["out.spikes"].sum() > 0  # the comparison saw spikes
    assert np.abs(expected["out.v"]).max() > 0


def test_a_float_import_runs_on_lava_float_and_records_every_populations_spikes_by_default(
        fakes: FakeFormats, nir_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["import", str(nir_file), "--out", str(run), "--dt", "0.001"]) == 0
    currents = np.random.default_rng(1).uniform(0.0, 1.0, (5, 4))
    np.save(tmp_path / "currents.npy", currents)
    assert main(["simulate", str(run), "--backend", "lava-float", "--input", str(tmp_path / "currents.npy")]) == 0
    expected = simulate(dataclasses.replace(fakes.nir, time_steps=5), currents[:, None],
                        record=["h.spikes", "out.spikes"]).records
    with np.load(run / "records" / "lava-float.npz") as archive:
        assert sorted(archive.files) == ["h.spikes", "out.spikes"]
        for name in archive.files:
            np.testing.assert_array_equal(archive[name], expected[name][:, 0])
    assert expected["h.spikes"].sum() > 0


@pytest.mark.parametrize(("values", "phrase"), [
    (np.zeros((10, 7)), "shape (10, 7); the network takes one sample of shape (T, 6)"),
    (np.zeros((10, 2, 6)), "shape (10, 2, 6); the network takes one sample of shape (T, 6)"),
    (np.zeros(6), "shape (6,); the network takes one sample of shape (T, 6)"),
    (np.zeros((0, 6)), "holds no time steps"),
    (np.where(np.eye(10, 6) > 0, np.nan, 0.0), "NaN or inf (first at step 0, input 0); the network takes finite "
                                               "values of shape (T, 6)"),
    (np.array([["a"] * 6] * 3), "the network takes real numbers of shape (T, 6)"),
    (np.full((4, 6), 0.5), "rate-encoded input must hold 0/1 spikes"),
])
def test_bad_input_exits_2_naming_the_expected_shape(values: np.ndarray, phrase: str, fakes: FakeFormats,
                                                     netx_file: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run)]) == 0
    np.save(tmp_path / "bad.npy", values)
    err = _error(capsys, ["simulate", str(run), "--backend", "torch", "--input", str(tmp_path / "bad.npy")])
    assert phrase in err and str(tmp_path / "bad.npy") in err
    assert not (run / "records").exists()


def test_input_files_that_are_not_arrays_and_wrong_records_are_refused(
        fakes: FakeFormats, netx_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run)]) == 0
    (tmp_path / "text.npy").write_text("0 1 0 1\n")
    err = _error(capsys, ["simulate", str(run), "--backend", "torch", "--input", str(tmp_path / "text.npy")])
    assert "not a readable .npy array" in err and "(T, 6)" in err
    err = _error(capsys, ["simulate", str(run), "--backend", "torch", "--input", str(tmp_path / "none.npy")])
    assert "no input file" in err and "(T, 6)" in err
    np.save(tmp_path / "spikes.npy", _spikes(4, 6))
    err = _error(capsys, ["simulate", str(run), "--backend", "torch", "--input", str(tmp_path / "spikes.npy"),
                          "--record", "h.w"])
    assert "cannot record 'h.w'" in err and "h.v" in err
    err = _error(capsys, ["simulate", str(run), "--record", "h.v"])
    assert "--input" in err
    err = _error(capsys, ["simulate", str(run), "--input", str(tmp_path / "spikes.npy"), "--limit", "3"])
    assert "leave out --limit" in err
    err = _error(capsys, ["simulate", str(run), "--backend", "lava-float", "--input", str(tmp_path / "spikes.npy")])
    assert "Loihi integers" in err and "lava-fixed" in err
    assert not (run / "records").exists()


def test_an_imported_image_network_is_measured_on_a_data_set(fakes: FakeFormats, netx_file: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """No training config: --data/--encoder/--steps name the samples; the plain keys get the figures."""
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.simulate import evaluation_inputs

    image_net = _cuba_net("events", n_in=64)  # a flat 64-input network: digits' 8×8 images, flattened
    fakes.netx, _ = quantize(image_net)
    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run)]) == 0
    err = _error(capsys, ["simulate", str(run), "--backend", "torch"])
    assert "--data NAME" in err
    assert main(["simulate", str(run), "--backend", "torch", "--data", "digits", "--encoder", "rate", "--steps", "6",
                 "--limit", "20"]) == 0
    assert "imported netx network: 20 test samples of digits (rate encoding, T = 6)" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    driven = dataclasses.replace(RunDir(run).load_spec(), input=Input((64,), "rate"), time_steps=6)
    inputs = evaluation_inputs(driven, "digits", limit=20)
    assert inputs.inputs.shape == (6, 20, 64) and set(np.unique(inputs.inputs)) <= {0.0, 1.0}
    predictions = simulate(driven, inputs.inputs).predictions
    assert metrics["test_accuracy_torch"] == float(np.mean(predictions == inputs.targets))
    assert metrics["simulate_samples_torch"] == 20 and metrics["simulate_data_torch"] == "digits"
    assert metrics["simulate_encoding_torch"] == "rate" and metrics["simulate_steps_torch"] == 6


# ------------------------------------------------------------------------------------------------ export
def test_export_writes_the_runs_network_and_refuses_what_the_format_cannot_express(
        fakes: FakeFormats, nir_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["import", str(nir_file), "--out", str(run), "--dt", "0.002"]) == 0
    assert main(["export", str(run), "--format", "nir"]) == 0  # dt: the run's own
    name, call = fakes.calls[-1]
    assert name == "write_nir" and call["dt"] == 0.002
    assert_netspec_equal(call["spec"], dataclasses.replace(fakes.nir, time_steps=32))
    assert (run / "export" / "network.nir").read_bytes() == b"nir"
    fakes.write_error = NetSpecError("population 'h' resets by subtraction, which netx cannot express; "
                                     "pass --approximate to write it as a zero-reset CUBA neuron")
    err = _error(capsys, ["export", str(run), "--format", "netx", "--out", str(tmp_path / "out.net")])
    assert "population 'h' resets by subtraction" in err and "--approximate" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["graph.nir", "run"])  # no half-written file
    (run / "export" / "network.nir").unlink()
    (run / "export").rmdir()
    assert "population 'h'" in _error(capsys, ["export", str(run), "--format", "netx"])
    assert not (run / "export").exists()  # nor the folder made for it
    fakes.write_error = None
    assert main(["export", str(run), "--format", "netx", "--approximate", "--out", str(tmp_path / "out.net")]) == 0
    assert fakes.calls[-1][1]["approximate"] is True and (tmp_path / "out.net").read_bytes() == b"netx"
    err = _error(capsys, ["export", str(run), "--format", "nir", "--approximate"])
    assert "changes nothing here" in err


def test_a_netx_import_goes_to_nir_only_approximately_and_with_dt(fakes: FakeFormats, netx_file: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from lavaflow.deploy.quantize import dequantize

    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run)]) == 0
    err = _error(capsys, ["export", str(run), "--format", "nir", "--dt", "0.001"])
    assert "Loihi integers" in err and "--approximate" in err and "--format netx" in err
    assert "--dt SECONDS" in _error(capsys, ["export", str(run), "--format", "nir", "--approximate"])
    assert [name for name, _ in fakes.calls] == ["read_netx"]  # refused before any writer ran
    assert main(["export", str(run), "--format", "nir", "--approximate", "--dt", "0.001"]) == 0
    name, call = fakes.calls[-1]
    assert name == "write_nir" and call["dt"] == 0.001
    assert_netspec_equal(call["spec"], dequantize(dataclasses.replace(fakes.netx, time_steps=32)))
    assert main(["export", str(run), "--format", "netx"]) == 0  # exact: the integers as they are
    assert fakes.calls[-1][1]["spec"].__class__ is FixedNetSpec and fakes.calls[-1][1]["approximate"] is False


# ------------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize(("command", "phrases"), [
    ("import", ["top-level 'layer' group", "top-level 'node' group", "source.json", "--dt", "examples:",
                "lavaflow import trained.net --out"]),
    ("export", ["--approximate", "examples:", "lavaflow export runs/bptt --format netx"]),
    ("simulate", ["--input", "records/<backend>.npz", "raster_<backend>.png", "(T, n_in)",
                  "lavaflow simulate runs/mine --backend lava-fixed --input spikes.npy --record"]),
])
def test_help_teaches_each_command_with_an_example(command: str, phrases: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in phrases:
        assert phrase in text, phrase


# ------------------------------------------------------------------------------------------------ the real formats
def test_nir_round_trip_through_the_real_reader_and_writer(tmp_path: Path) -> None:
    """export nir → import gives the same NetSpec (skipped until lavaflow.deploy.nir_graph exists)."""
    pytest.importorskip("lavaflow.deploy.nir_graph")
    from lavaflow.pipeline.rundir import RunDir

    spec = _cuba_net("current", n_in=4)  # CUBA ↔ NIR's CubaLIF (NIR has no neuron firing at v ≥ θ)
    run = RunDir.create(tmp_path / "run")
    run.save_netspec(spec)
    assert main(["export", str(run.path), "--format", "nir", "--dt", "0.001", "--out", str(tmp_path / "n.nir")]) == 0
    assert main(["import", str(tmp_path / "n.nir"), "--out", str(tmp_path / "back"), "--dt", "0.001",
                 "--steps", str(SPEC_STEPS)]) == 0
    assert interop.detect_format(tmp_path / "n.nir") == "nir"
    back = RunDir(tmp_path / "back").load_spec()
    assert isinstance(back, NetSpec)
    drive = np.random.default_rng(2).uniform(0.0, 1.0, (SPEC_STEPS, 3, 4))
    np.testing.assert_array_equal(simulate(back, drive).counts[back.readout.source],
                                  simulate(spec, drive).counts[spec.readout.source])


def test_netx_round_trip_through_the_real_reader_and_writer_keeps_the_spikes(tmp_path: Path) -> None:
    """export netx → import → simulate --input on lava-fixed: the traces of the network written (skipped until
    lavaflow.deploy.netx exists)."""
    pytest.importorskip("lavaflow.deploy.netx")
    from lavaflow.pipeline.rundir import RunDir

    fixed, _ = quantize(_cuba_net())
    run = RunDir.create(tmp_path / "run")
    run.save_netspec(fixed)
    assert main(["export", str(run.path), "--format", "netx"]) == 0
    written = run.path / "export" / "network.net"
    assert interop.detect_format(written) == "netx"
    back = tmp_path / "back"
    assert main(["import", str(written), "--out", str(back), "--steps", str(SPEC_STEPS)]) == 0
    spikes = _spikes(11, 6, seed=5)
    np.save(tmp_path / "spikes.npy", spikes)
    imported = RunDir(back).load_spec()
    names = [f"{name}.spikes" for name in imported.populations]
    assert main(["simulate", str(back), "--backend", "lava-fixed", "--input", str(tmp_path / "spikes.npy")]) == 0
    expected = simulate(dataclasses.replace(fixed, time_steps=11), spikes[:, None].astype(float),
                        record=["h.spikes", "out.spikes"]).records
    with np.load(back / "records" / "lava-fixed.npz") as archive:
        assert sorted(archive.files) == sorted(names)
        last = archive[names[-1]]
    np.testing.assert_array_equal(last, expected["out.spikes"][:, 0])


@pytest.mark.parametrize("group", ["layer", "node"])
def test_a_damaged_file_through_the_real_readers_exits_2_and_writes_nothing(
        group: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An HDF5 file of the right layout but no network in it (skipped until the reader exists)."""
    pytest.importorskip("lavaflow.deploy.netx" if group == "layer" else "lavaflow.deploy.nir_graph")
    path = _hdf5(tmp_path / f"empty.{group}", group)
    err = _error(capsys, ["import", str(path), "--out", str(tmp_path / "run"), "--dt", "0.001"])
    assert str(path) in err
    assert not (tmp_path / "run").exists()


def test_a_spec_file_swapped_into_an_imported_run_is_refused(fakes: FakeFormats, netx_file: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["import", str(netx_file), "--out", str(run)]) == 0
    other, _ = quantize(_soft_reset_net())
    other.save(run / "fixed_netspec.npz")
    np.save(tmp_path / "x.npy", np.zeros((3, 6)))
    err = _error(capsys, ["simulate", str(run), "--backend", "torch", "--input", str(tmp_path / "x.npy")])
    assert "is not the network this run saved" in err and "fixed_netspec_sha256" in err
