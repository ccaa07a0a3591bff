"""Resume is exact: a training killed mid-run (SIGKILL) and resumed writes the same files as an uninterrupted one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from train_helpers import TINY, kill, lavaflow, start_paused_training, wait_for, without


def _metrics_without_wall_times(run: Path) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if not k.endswith("_seconds")}


@pytest.mark.parametrize("method", ["ide", "bptt"])
def test_a_run_killed_mid_training_and_resumed_equals_an_uninterrupted_run(tmp_path: Path, method: str) -> None:
    args = ["--method", method, *TINY, "--epochs", "3", "--seed", "7"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    done = lavaflow("train", *args, "--out", reference)
    assert done.returncode == 0, done.stderr[-3000:]

    process, marker = start_paused_training(tmp_path, 1, *args, "--out", interrupted)
    wait_for(process, marker)
    kill(process)
    assert torch.load(interrupted / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (interrupted / "netspec.npz").exists()

    resumed = lavaflow("train", *args, "--out", interrupted, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and "after epoch 1" in resumed.stderr
    for name in ("checkpoint.pt", "netspec.npz", "config.yaml", *(["network.h5"] if method == "bptt" else [])):
        assert (interrupted / name).read_bytes() == (reference / name).read_bytes(), name
    assert _metrics_without_wall_times(interrupted) == _metrics_without_wall_times(reference)
    history = [(run / "history.csv").read_text() for run in (interrupted, reference)]
    assert without(history[0], "epoch_seconds") == without(history[1], "epoch_seconds")
    assert len(without(history[0], "epoch_seconds")) == 1 + 3
    metrics = json.loads((interrupted / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["train_seconds"] > 0  # wall time of all three epochs, not one


def test_resuming_a_finished_run_with_more_epochs_equals_training_them_at_once(tmp_path: Path) -> None:
    args = ["--method", "ide", *TINY, "--seed", "3"]
    assert lavaflow("train", *args, "--epochs", "3", "--out", tmp_path / "once").returncode == 0
    assert lavaflow("train", *args, "--epochs", "2", "--out", tmp_path / "twice").returncode == 0
    extended = lavaflow("train", *args, "--epochs", "3", "--out", tmp_path / "twice", "--resume")
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert "epochs 2 → 3" in extended.stderr  # the notice names what changed
    for name in ("checkpoint.pt", "netspec.npz", "config.yaml"):
        assert (tmp_path / "twice" / name).read_bytes() == (tmp_path / "once" / name).read_bytes(), name
