"""Run dirs: one writer at a time, one run per dir, resumes that refuse another network, damaged files explained,
the NetSpec bound to its run, permissions from the user's umask."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
import torch

from lavaflow.models.atomic import atomic_write_bytes
from lavaflow.models.errors import LavaflowError
from lavaflow.pipeline import cli
from lavaflow.pipeline.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from train_helpers import TINY, kill, lavaflow, start_paused_training, wait_for


def _train(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str]:
    """`lavaflow train ARGS` in this process; (exit status, stderr)."""
    capsys.readouterr()
    status = cli.main(["train", *map(str, args)])
    return status, capsys.readouterr().err


def test_a_second_training_into_a_locked_run_dir_fails_and_a_killed_one_leaves_no_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--method", "ide", *TINY, "--epochs", "2"]
    first, marker = start_paused_training(tmp_path, 1, *args, "--out", run)
    try:
        wait_for(first, marker)  # the first training holds the lock from its start to its end
        second = lavaflow("train", *args, "--out", run, "--overwrite")
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"another lavaflow process (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the second wrote nothing
    finally:
        kill(first)
    resumed = lavaflow("train", *args, "--out", run, "--resume")  # kill -9 released the lock
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_the_lock_is_exclusive_and_released_on_exit(tmp_path: Path) -> None:
    run_dir = RunDir.create(tmp_path)
    with run_dir.lock():
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(LavaflowError, match="another lavaflow process"), RunDir(tmp_path).lock():
            pass
    with run_dir.lock():  # released when the holder's block ended
        pass


def test_a_new_training_refuses_a_run_dir_with_an_earlier_run_and_overwrite_clears_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--out", run)[0] == 0
    RunDir(run).update_metrics({"test_accuracy_lava-fixed": 0.5})  # as `simulate` leaves them
    (run / "network.h5").write_bytes(b"old")
    (run / "records").mkdir()
    (run / "records" / "lava-fixed.npz").write_bytes(b"old")
    (run / "notes.txt").write_text("the user's own file")
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}

    status, err = _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--seed", "1", "--out", run)
    assert status == 2 and "not empty" in err and "--overwrite" in err and "--resume" in err
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before  # untouched

    status, err = _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--seed", "1", "--out", run,
                         "--overwrite")
    assert status == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test_accuracy_lava-fixed" not in metrics and metrics["epochs"] == 1
    assert not (run / "network.h5").exists() and not (run / "records").exists()
    assert (run / "notes.txt").read_text() == "the user's own file"  # not ours: left alone


def test_resume_refuses_another_method_before_writing_anything(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--out", run)[0] == 0
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    status, err = _train(capsys, "--method", "bptt", *TINY, "--epochs", "2", "--out", run, "--resume")
    assert status == 2 and "another network or optimiser" in err and "method 'ide' → 'bptt'" in err
    status, err = _train(capsys, "--method", "ide", *TINY, "--epochs", "2", "--out", run, "--resume",
                         "--config", _yaml(tmp_path, "model:\n  layer_widths: [32]\n"))
    assert status == 2 and "model.layer_widths [400] → [32]" in err
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before


def test_resume_without_a_checkpoint_says_it_starts_from_scratch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, err = _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--out", tmp_path / "new", "--resume")
    assert status == 0, err
    assert "no checkpoint" in err and "from scratch" in err


@pytest.mark.parametrize(("payload", "words"), [
    (b"", "is empty"),
    (None, "truncated"),  # the first half of a real checkpoint
    (b"not a checkpoint at all" * 20, "truncated or not a torch checkpoint"),
])
def test_a_damaged_checkpoint_is_named_and_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture, payload: bytes | None, words: str
) -> None:
    run = tmp_path / "run"
    assert _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--out", run)[0] == 0
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2] if payload is None else payload)
    status, err = _train(capsys, "--method", "ide", *TINY, "--epochs", "2", "--out", run, "--resume")
    message = " ".join(err.split())
    assert status == 2 and str(checkpoint) in message and words in message
    assert "delete it and train again without --resume" in message and "Traceback" not in err


def test_the_netspec_is_bound_to_its_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name, seed in (("a", "0"), ("b", "1")):
        assert _train(capsys, "--method", "ide", *TINY, "--epochs", "1", "--seed", seed,
                      "--out", tmp_path / name)[0] == 0
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    assert len(a.read_metrics()["netspec_sha256"]) == 64
    a.load_netspec()
    shutil.copyfile(a.file("netspec.npz"), b.file("netspec.npz"))
    with pytest.raises(LavaflowError, match="is not the network this run saved"):
        b.load_netspec()
    assert b.save_netspec(a.load_netspec()) == b.read_metrics()["netspec_sha256"]  # saving re-binds
    b.load_netspec()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "file", b"x")
        RunDir(tmp_path).update_metrics({"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == mode
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"config-{abs(hash(text))}.yaml"
    path.write_text(text)
    return path


def test_a_run_dir_that_cannot_be_written_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """root ignores file modes, so the refusal of a read-only folder is simulated at the one os.open it reaches."""
    real_open = os.open

    def read_only(path: str | os.PathLike, *args: object, **kwargs: object) -> int:
        if str(path).endswith(RunDir.LOCK):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(LavaflowError, match="cannot write to the run dir"), RunDir(tmp_path).lock():
        pass
