"""The lavaflow command: help everywhere, and user errors as one paragraph with exit status 2, no traceback."""

from __future__ import annotations

import re
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
    (tmp_path / "empty").mkdir()
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


def test_building_the_parser_imports_neither_torch_nor_lava() -> None:
    """`lavaflow --help` must answer at once: the parser reads only light constants (pipeline.choices)."""
    code = ("import sys; from lavaflow.pipeline.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'lava', 'numpy', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_light_lists_match_the_registries() -> None:
    from lavaflow.deploy.run_config import BACKENDS
    from lavaflow.pipeline import benchmarks, choices
    from lavaflow.pipeline.methods import METHOD_MODULES

    assert choices.SIMULATE_BACKENDS == ("torch", *BACKENDS)
    assert set(choices.DEFAULT_BACKENDS) <= set(choices.SIMULATE_BACKENDS)
    assert {name: entry.description for name, entry in benchmarks.BENCHMARKS.items()} == choices.BENCHMARKS
    assert list(choices.METHODS) == list(METHOD_MODULES)


def test_a_short_train_and_simulate_print_no_third_party_noise(tmp_path: Path) -> None:
    """bptt imports lava-dl's slayer, which prints a CUDA and a Prophesee notice on import; Lava runs follow."""
    run = tmp_path / "run"
    commands = [
        ["train", "--method", "bptt", "--data", "digits", "--epochs", "1", "--limit", "40", "--out", str(run)],
        ["simulate", str(run), "--backend", "torch", "--backend", "lava-fixed", "--limit", "20"],
    ]
    noise = re.compile(r"warn|cuda|prophesee|deprecat|profil", re.IGNORECASE)
    for command in commands:
        result = subprocess.run([sys.executable, "-m", "lavaflow.pipeline.cli", *command], capture_output=True,
                                text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
        assert result.returncode == 0, result.stderr
        lines = [line for line in (result.stdout + result.stderr).splitlines() if noise.search(line)]
        assert not lines, "\n".join(lines)


def test_ctrl_c_outside_training_does_not_promise_a_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lavaflow.pipeline import simulate

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate, "simulate_backends", interrupted)
    (tmp_path / "config.yaml").write_text("data: digits\n")
    assert main(["simulate", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "checkpoint" not in err


@pytest.mark.parametrize("dt", ["0", "-1e-3", "inf", "nan", "1ms"])
def test_a_time_step_that_is_not_positive_seconds_is_refused_by_the_parser(
        dt: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["import", str(tmp_path / "net.nir"), "--out", str(tmp_path / "run"), "--dt", dt])
    assert exit_info.value.code == EXIT_USER_ERROR
    assert "--dt" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_the_examples_of_the_top_level_help_name_every_command_a_user_starts_with(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for example in ("lavaflow train ", "lavaflow import ", "lavaflow simulate ", "lavaflow export ", "lavaflow demo"):
        assert example in text, example
