"""Every method end to end under torchrun (2 workers, gloo) through the CLI, and an exact resume of a DDP run
(IDE's: it has the most state besides the weights, BatchNorm statistics and per-worker dropout streams)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lavaflow.pipeline.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from train_helpers import TINY, torchrun, without


@pytest.mark.parametrize(("method", "resume"), [("ide", True), ("bptt", False)])
def test_a_method_trains_under_torchrun_for_several_epochs_and_resumes_exactly(
    tmp_path: Path, method: str, resume: bool
) -> None:
    # TINY: 60 samples, batch 20 → 10 per worker, while rank 0 evaluates the 60 test samples in one batch. Before
    # the fix, bptt's workers then held slayer state buffers of different sizes and gloo failed at epoch 2.
    args = ["train", "--method", method, *TINY, "--seed", "5"]
    once, split = tmp_path / "once", tmp_path / "split"
    done = torchrun(*args, "--epochs", "3", "--out", once)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((once / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["epochs"] == 3 and metrics["test_samples"] == 60
    assert torch.load(once / "checkpoint.pt", weights_only=True)["epoch"] == 3
    spec = RunDir(once).load_netspec()
    assert spec.metadata["method"] == method
    rows = without((once / "history.csv").read_text(), "epoch_seconds")
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"]
    assert done.stdout.count("test accuracy") == 1  # one summary, from rank 0
    if not resume:  # each torchrun start costs seconds: one method's resume covers the DDP resume path
        return

    first = torchrun(*args, "--epochs", "2", "--out", split)
    assert first.returncode == 0, first.stderr[-4000:]
    resumed = torchrun(*args, "--epochs", "3", "--out", split, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    for name in ("checkpoint.pt", "netspec.npz", "config.yaml"):
        assert (split / name).read_bytes() == (once / name).read_bytes(), name
    assert without((split / "history.csv").read_text(), "epoch_seconds") == rows
