"""The lavaflow command: help everywhere, and user errors as one paragraph with exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lavaflow.pipeline.cli import EXIT_USER_ERROR, build_parser, main


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("lavaflow: error: ")
    assert "Traceback" not in err
    return err


def test_help_lists_only_working_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    for name in subcommands:
        assert name in text
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "usage: lavaflow " + name in capsys.readouterr().out


def test_unknown_method(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, ["train", "--method", "magic", "--out", str(tmp_path / "r")])
    assert "magic" in err and "bptt" in err and "ide" in err


def test_unknown_data_set(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, ["train", "--method", "bptt", "--data", "cifar-1000", "--out", str(tmp_path / "r")])
    assert "cifar-1000" in err and "digits" in err


def test_missing_data_files_say_how_to_get_them(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAVAFLOW_DATA_DIR", str(tmp_path / "empty"))
    err = _error(capsys, ["train", "--method", "bptt", "--data", "nmnist", "--data-dir", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "r")])
    assert "NMNIST" in err and str(tmp_path / "empty") in err


def test_unknown_config_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("epochs: 1\nlearning_rat: 0.1\n")
    err = _error(capsys, ["train", "--method", "bptt", "--config", str(config), "--out", str(tmp_path / "r")])
    assert "learning_rat" in err and "learning_rate" in err
    config.write_text("model:\n  hiden: [10]\n")
    err = _error(capsys, ["train", "--method", "bptt", "--config", str(config), "--out", str(tmp_path / "r")])
    assert "hiden" in err and "hidden" in err


def test_bad_config_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("epochs: many\n")
    err = _error(capsys, ["train", "--method", "bptt", "--config", str(config), "--out", str(tmp_path / "r")])
    assert "epochs" in err and "many" in err


def test_unwritable_run_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    err = _error(capsys, ["train", "--method", "bptt", "--epochs", "1", "--out", str(blocker / "run")])
    assert "cannot write" in err and str(blocker / "run") in err


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lavaflow.pipeline.cli", "train", "--method", "nope", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == EXIT_USER_ERROR
    assert "unknown method 'nope'" in result.stderr and "Traceback" not in result.stderr
