"""Training-side user errors exit 2 with one paragraph that names the key, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline import cli
from lavaflow.pipeline.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from train_helpers import TINY, lavaflow


def _fails(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    """Run `lavaflow ARGS` in this process; assert exit 2 and no traceback; return the one-line message."""
    capsys.readouterr()
    status = cli.main([*map(str, args)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err and err.startswith("lavaflow: error: ")
    return " ".join(err.split())


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("method", "yaml_text", "key"), [
    ("bptt", "model: {hidden: [0]}\n", "model.hidden"),
    ("bptt", "model: {hidden: []}\n", "model.hidden"),
    ("bptt", "model: {threshold: -1}\n", "model.threshold"),
    ("ide", "model: {layer_widths: [0]}\n", "model.layer_widths"),
    ("ide", "batch_size: 2.5\n", "config.batch_size"),
    ("ide", "epochs: 3.0\n", "config.epochs"),
    ("ide", "seed: true\n", "config.seed"),
    ("ide", "model: {layer_widths: [2.5]}\n", "model.layer_widths"),
    ("ide", "learning_rate: .nan\n", "config.learning_rate"),
    ("ide", "momentum: 1.5\n", "config.momentum"),
])
def test_bad_config_values_name_their_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, method: str, yaml_text: str, key: str
) -> None:
    message = _fails(capsys, "train", "--method", method, "--config", _yaml(tmp_path, yaml_text),
                     "--out", tmp_path / "run")
    assert key in message
    assert not (tmp_path / "run").exists()  # refused before the run dir was made


@pytest.mark.parametrize(("flags", "words"), [
    (["--limit", "0"], "config.limit (--limit) must be at least 1"),
    (["--limit", "-3"], "config.limit (--limit) must be at least 1"),
    (["--lr", "nan"], "config.learning_rate must be finite and positive"),
    (["--lr", "-1"], "config.learning_rate must be finite and positive"),
    (["--threads", "-1"], "config.threads (--threads)"),
    (["--device", "cuda:99"], "--device"),
    (["--device", "tpu"], "config.device"),
])
def test_bad_flags_name_their_option(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                                     words: str) -> None:
    assert words in _fails(capsys, "train", "--method", "ide", *flags, "--out", tmp_path / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_says_to_use_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = _fails(capsys, "train", "--method", "bptt", "--device", "cuda", "--out", tmp_path / "run")
    assert "no CUDA device is available" in message and "--device cpu" in message


def test_a_method_comes_from_the_flag_or_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = _fails(capsys, "train", "--out", tmp_path / "run")
    assert "--method" in message and "method:" in message
    message = _fails(capsys, "train", "--config", _yaml(tmp_path, "epochs: 2\n"), "--out", tmp_path / "run")
    assert "no training method" in message


def test_integers_may_be_numpy_integers_but_not_floats() -> None:
    config = TrainConfig(method="ide", batch_size=np.int64(32), epochs=np.int32(3), learning_rate=np.float32(0.5),
                         milestones=[np.int64(2)])
    assert config.batch_size == 32 and type(config.batch_size) is int and type(config.epochs) is int
    assert config.learning_rate == 0.5 and config.milestones == (2,)
    with pytest.raises(ConfigError, match=r"config\.batch_size must be an integer, got 2\.5"):
        TrainConfig(method="ide", batch_size=2.5)
    with pytest.raises(ConfigError, match=r"config\.limit"):
        TrainConfig(method="ide", limit=0)


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--method", "ide", *TINY]
    assert lavaflow("train", *args, "--epochs", "1", "--out", run).returncode == 0
    good = (run / "checkpoint.pt").read_bytes()
    diverged = lavaflow("train", *args, "--epochs", "3", "--lr", "1e30", "--out", run, "--resume")
    assert diverged.returncode == 2, diverged.stderr[-3000:]
    message = " ".join(diverged.stderr.split())
    assert "Traceback" not in diverged.stderr
    assert "training diverged" in message and "at epoch 2, iteration" in message
    assert "the checkpoint of epoch 1" in message and "Lower the learning rate (--lr" in message
    assert "epoch 2/3" not in diverged.stderr  # it stopped inside epoch 2, not after training it at NaN
    assert (run / "checkpoint.pt").read_bytes() == good


def test_a_run_diverging_in_its_first_epoch_says_there_is_no_checkpoint(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    message = _fails(capsys, "train", "--method", "ide", *TINY, "--epochs", "2", "--lr", "1e30",
                     "--out", tmp_path / "run")
    assert "at epoch 1, iteration" in message and "no checkpoint" in message
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_and_overwrite_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    message = _fails(capsys, "train", "--method", "ide", *TINY, "--out", tmp_path / "run", "--resume", "--overwrite")
    assert "--resume" in message and "--overwrite" in message and "pass one of them" in message


def test_all_finite_is_exact_where_the_sum_overflows_or_bad_entries_cancel() -> None:
    from lavaflow.pipeline.training import all_finite

    big = torch.full((4,), 3e38)  # every entry finite, the float32 sum overflows: the elementwise test decides
    assert not bool(torch.isfinite(big.sum())) and all_finite(big)
    assert all_finite(torch.zeros(0)) and all_finite(torch.randn(5, 7))
    for bad in (float("inf"), float("-inf"), float("nan")):
        tensor = torch.randn(5, 7)
        tensor[2, 3] = bad
        assert not all_finite(tensor)
    cancelling = torch.tensor([float("inf"), float("-inf"), 1.0])
    assert not all_finite(cancelling)
