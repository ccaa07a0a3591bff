"""The shared training loop: determinism, resume after an interrupt, DDP equivalence, run-dir contents."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lavaflow.pipeline import training
from lavaflow.pipeline.config import resolve_config
from lavaflow.pipeline.rundir import RunDir

QUICK = {"epochs": 2, "limit": 100, "batch_size": 20, "time_steps": 4, "test_batch_size": 100}


def _train(out: Path, resume: bool = False, **overrides: object) -> dict:
    config, model_config, method = resolve_config("bptt", "digits", flags={**QUICK, "model": None, **overrides})
    return training.train(config, model_config, method, RunDir.create(out), resume=resume)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return RunDir(out).load_checkpoint()["model"]


def test_same_seed_gives_same_metrics_and_weights(tmp_path: Path) -> None:
    first = _train(tmp_path / "a")
    second = _train(tmp_path / "b")
    for key in ("train_accuracy", "test_accuracy"):
        assert first[key] == second[key]
    for name, value in _weights(tmp_path / "a").items():
        assert torch.equal(value, _weights(tmp_path / "b")[name]), name
    different = _train(tmp_path / "c", seed=1)
    assert any(
        not torch.equal(value, _weights(tmp_path / "c")[name]) for name, value in _weights(tmp_path / "a").items()
    )
    assert different["epochs"] == 2


def test_run_dir_holds_the_documented_files(tmp_path: Path) -> None:
    metrics = _train(tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoint.pt", "netspec.npz", "metrics.json", "plots/training.png"):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("method", "data", "time_steps", "epochs", "train_accuracy", "test_accuracy", "train_seconds"):
        assert key in on_disk, key
    assert on_disk["epochs"] == 2 and on_disk["time_steps"] == 4
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)  # loads without unpickling objects
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    repeat, _, _ = resolve_config("bptt", file=run / "config.yaml")  # the resolved config repeats the run
    assert repeat.epochs == 2 and repeat.limit == 100 and repeat.time_steps == 4


def test_resume_after_interrupt_continues_from_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    reference = _train(tmp_path / "uninterrupted", epochs=3)
    steps_per_epoch = 5  # 100 samples / 20
    calls = {"n": 0}
    real_step = training.train_step

    def interrupted_step(*args: object, **kwargs: object) -> tuple[float, int]:
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 3:  # Ctrl-C in the middle of the third epoch
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "interrupted", epochs=3)
    assert RunDir(tmp_path / "interrupted").load_checkpoint()["epoch"] == 2
    monkeypatch.setattr(training, "train_step", real_step)
    resumed = _train(tmp_path / "interrupted", resume=True, epochs=3)
    assert resumed["epochs"] == 3
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    expected = _weights(tmp_path / "uninterrupted")
    for name, value in _weights(tmp_path / "interrupted").items():
        assert torch.equal(value, expected[name]), name


def _free_port() -> int:
    with socket.socket() as probe:  # loopback only
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DDP_WORKER = """
import sys, torch
from lavaflow.pipeline import training
from lavaflow.pipeline.config import resolve_config
workers = training.init_workers("cpu")
data = torch.load(sys.argv[1], weights_only=True)
config, model_config, method = resolve_config("bptt", "digits")
model = method.build(model_config, (1, 8, 8), 10, 6, torch.Generator().manual_seed(0))
network = torch.nn.parallel.DistributedDataParallel(model)
share = data["inputs"].shape[1] // workers.world_size
part = slice(workers.rank * share, (workers.rank + 1) * share)
training.train_step(network, training.make_optimizer(model, config), data["inputs"][:, part], data["targets"][part])
if workers.is_main:
    torch.save(model.state_dict(), sys.argv[2])
torch.distributed.destroy_process_group()
"""


def test_two_ddp_workers_take_the_same_step_as_one_worker_on_the_combined_batch(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(16, 1, 8, 8, generator=generator)
    inputs = images.unsqueeze(0).expand(6, *images.shape).contiguous()
    targets = torch.randint(0, 10, (16,), generator=generator)
    config, model_config, method = resolve_config("bptt", "digits")
    single = method.build(model_config, (1, 8, 8), 10, 6, torch.Generator().manual_seed(0))
    training.train_step(single, training.make_optimizer(single, config), inputs, targets)

    torch.save({"inputs": inputs, "targets": targets}, tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        str(tmp_path / "worker.py"),
        str(tmp_path / "batch.pt"),
        str(tmp_path / "ddp.pt"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    changed = False
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6, msg=name)
        changed |= "weight" in name
    assert changed
    initial = method.build(model_config, (1, 8, 8), 10, 6, torch.Generator().manual_seed(0)).state_dict()
    assert any(not torch.equal(initial[n], v) for n, v in single.state_dict().items())  # the step did something


def test_learning_rate_schedule_warms_up_and_decays() -> None:
    config, _, _ = resolve_config("bptt", "digits", flags={"warmup_iterations": 4, "milestones": [2], "gamma": 0.5})
    factors = [training.learning_rate_factor(i, 10, config) for i in (0, 1, 3, 9, 19, 20, 35)]
    assert factors == [0.25, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5]
