"""The shared training loop: determinism, learning, the schedule, resume after an interrupt, DDP equivalence,
run-dir contents, figures and threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline import cli, training
from lavaflow.pipeline.config import resolve_config
from lavaflow.pipeline.plots import training_figure
from lavaflow.pipeline.rundir import RunDir

QUICK = {"epochs": 2, "limit": 100, "batch_size": 20, "time_steps": 4, "test_batch_size": 100, "threads": 1}


def _train(out: Path, resume: bool = False, method: str = "bptt", **overrides: object) -> dict:
    config, model_config, registered = resolve_config(method, "digits", flags={**QUICK, "model": None, **overrides})
    return training.train(config, model_config, registered, RunDir.create(out), resume=resume)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return RunDir(out).load_checkpoint()["model"]


def test_same_seed_gives_identical_files_and_another_seed_other_weights(tmp_path: Path) -> None:
    first = _train(tmp_path / "a")
    second = _train(tmp_path / "b")
    for name in ("checkpoint.pt", "netspec.npz", "config.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert {k: v for k, v in first.items() if not k.endswith("_seconds")} == {
        k: v for k, v in second.items() if not k.endswith("_seconds")}
    _train(tmp_path / "c", seed=1)
    assert any(
        not torch.equal(value, _weights(tmp_path / "c")[name]) for name, value in _weights(tmp_path / "a").items()
    )


@pytest.mark.parametrize("method", ["bptt", "ide"])
def test_the_loss_falls_and_accuracy_rises_on_digits(tmp_path: Path, method: str) -> None:
    _train(tmp_path / "run", method=method, epochs=4)
    history = RunDir(tmp_path / "run").load_checkpoint()["history"]
    losses = [row["train_loss"] for row in history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0], losses
    assert history[-1]["test_accuracy"] > 0.5  # chance is 0.1


def test_the_learning_rate_of_each_epoch_follows_the_milestones(tmp_path: Path) -> None:
    _train(tmp_path / "run", method="ide", epochs=4, learning_rate=0.1, milestones=[1, 3], gamma=0.5)
    history = RunDir(tmp_path / "run").load_checkpoint()["history"]
    assert [row["learning_rate"] for row in history] == [0.1, 0.05, 0.05, 0.025]  # 0.1 · 0.5^(milestones passed)


def test_learning_rate_schedule_warms_up_and_decays() -> None:
    config, _, _ = resolve_config("bptt", "digits", flags={"warmup_iterations": 4, "milestones": [2], "gamma": 0.5})
    factors = [training.learning_rate_factor(i, 10, config) for i in (0, 1, 3, 9, 19, 20, 35)]
    assert factors == [0.25, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5]


def test_the_cosine_schedule_falls_from_one_to_zero_over_all_iterations() -> None:
    config, _, _ = resolve_config("bptt", "digits", flags={"schedule": "cosine", "epochs": 4, "milestones": [1]})
    factors = [training.learning_rate_factor(i, 10, config) for i in (0, 10, 20, 30, 40)]  # 10 iterations/epoch
    assert factors == pytest.approx([1.0, 0.5 + 0.5 ** 1.5, 0.5, 0.5 - 0.5 ** 1.5, 0.0])  # milestones ignored
    with pytest.raises(ConfigError, match="schedule"):
        resolve_config("bptt", "digits", flags={"schedule": "linear"})


def test_run_dir_holds_the_documented_files(tmp_path: Path) -> None:
    metrics = _train(tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoint.pt", "history.csv", "netspec.npz", "metrics.json", "network.h5",
                 "plots/training.png"):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == metrics
    assert on_disk["epochs"] == 2 and on_disk["time_steps"] == 4 and on_disk["method"] == "bptt"
    assert on_disk["test_samples"] == 100 and on_disk["limit"] == 100 and on_disk["threads"] == 1
    history = RunDir(run).load_checkpoint()["history"]
    assert on_disk["test_accuracy"] == history[-1]["test_accuracy"]
    assert on_disk["train_seconds"] == pytest.approx(sum(row["epoch_seconds"] for row in RunDir(run).read_history()))
    rows = RunDir(run).read_history()
    assert [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows] == history  # exact floats
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)  # loads without unpickling objects
    assert checkpoint["epoch"] == 2 and checkpoint["method"] == "bptt"


def test_training_runs_on_the_configured_threads_and_restores_the_process_setting(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    seen = []
    real_step = training.train_step
    monkeypatch.setattr(training, "train_step", lambda *a, **k: seen.append(torch.get_num_threads()) or real_step(
        *a, **k))
    before = torch.get_num_threads()
    assert _train(tmp_path / "run", epochs=1, threads=2)["threads"] == 2
    assert set(seen) == {2} and torch.get_num_threads() == before


def test_the_run_dirs_config_repeats_the_run_with_no_other_flag_than_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _train(tmp_path / "run", method="ide", seed=4)
    assert cli.main(["train", "--config", str(tmp_path / "run" / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    for name in ("checkpoint.pt", "netspec.npz", "config.yaml"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_resume_after_interrupt_continues_from_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    reference = _train(tmp_path / "uninterrupted", method="ide", epochs=3)
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
        _train(tmp_path / "interrupted", method="ide", epochs=3)
    assert RunDir(tmp_path / "interrupted").load_checkpoint()["epoch"] == 2
    monkeypatch.setattr(training, "train_step", real_step)
    resumed = _train(tmp_path / "interrupted", resume=True, method="ide", epochs=3)
    assert {k: v for k, v in resumed.items() if not k.endswith("_seconds")} == {
        k: v for k, v in reference.items() if not k.endswith("_seconds")}
    assert (RunDir(tmp_path / "interrupted").load_checkpoint()["history"]
            == RunDir(tmp_path / "uninterrupted").load_checkpoint()["history"])
    expected = _weights(tmp_path / "uninterrupted")
    for name, value in _weights(tmp_path / "interrupted").items():
        assert torch.equal(value, expected[name]), name


def test_dropout_masks_differ_between_epochs_and_restart_with_the_epoch_seed() -> None:
    _, model_config, method = resolve_config("ide", "digits")
    model = method.build(model_config, (1, 8, 8), 10, 4, torch.Generator().manual_seed(0)).train()
    network = model.network
    draws = []
    for seed in (11, 12, 11):
        training.reseed_random_streams(model, seed)
        draws.append(network.operators(torch.rand(3, 400, generator=torch.Generator().manual_seed(0))).masks[0])
    assert torch.equal(draws[0], draws[2]) and not torch.equal(draws[0], draws[1])


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
training.train_step(network, training.make_optimizer(model, config), data["inputs"][:, part], data["targets"][part],
                    workers)
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
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               str(tmp_path / "worker.py"), str(tmp_path / "batch.pt"), str(tmp_path / "ddp.pt")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    changed = False
    for name, value in single.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-6, msg=name)
        changed |= "weight" in name
    assert changed
    initial = method.build(model_config, (1, 8, 8), 10, 6, torch.Generator().manual_seed(0)).state_dict()
    assert any(not torch.equal(initial[n], v) for n, v in single.state_dict().items())  # the step did something


def test_the_training_figure_has_integer_epochs_a_log_loss_over_decades_and_milestone_lines() -> None:
    def row(epoch: int, loss: float) -> dict[str, float]:
        return {"epoch": epoch, "train_loss": loss, "test_loss": loss, "train_accuracy": 0.5, "test_accuracy": 0.5}

    figure = training_figure([row(1, 2.0), row(2, 0.5), row(3, 0.01)], "t", milestones=[1, 9])
    loss_axis, accuracy_axis = figure.axes
    assert loss_axis.get_yscale() == "log" and accuracy_axis.get_yscale() == "linear"
    for axis in (loss_axis, accuracy_axis):
        ticks = [tick for tick in axis.get_xticks() if 1 <= tick <= 3]
        assert ticks and all(float(tick).is_integer() for tick in ticks)
        vertical = [line for line in axis.get_lines() if list(line.get_xdata()) == [1.5, 1.5]]
        assert len(vertical) == 1  # milestone 1: between epochs 1 and 2; milestone 9 lies beyond the run
    flat = training_figure([row(1, 2.0), row(2, 1.0)], "t")
    assert flat.axes[0].get_yscale() == "linear"


def test_thread_count_shares_the_cores_among_local_workers(monkeypatch) -> None:
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert training.thread_count(3, 4) == 3
    assert training.thread_count(0, 1) == 8 and training.thread_count(0, 2) == 4 and training.thread_count(0, 16) == 1


def test_exact_batch_norm_statistics_are_those_of_the_whole_training_set_after_training(tmp_path: Path) -> None:
    from lavaflow.pipeline.data import encode, load_data
    from lavaflow.pipeline.ide import input_statistics

    _train(tmp_path / "run", method="ide", model={"batch_norm_statistics": "exact"})
    _train(tmp_path / "plain", method="ide")
    config, model_config, method = resolve_config("ide", "digits", flags={**QUICK, "model": None})
    model = method.build(model_config, (1, 8, 8), 10, config.time_steps, torch.Generator())
    weights = _weights(tmp_path / "run")
    model.load_state_dict(weights)
    train_set, _, _ = load_data("digits", time_steps=config.time_steps, limit=config.limit)
    images = train_set.tensors[0]
    mean, variance = input_statistics(model.network, [encode(images, "current", config.time_steps)])
    assert torch.equal(weights["network.input_norm.running_mean"], mean)
    assert torch.equal(weights["network.input_norm.running_var"], variance)
    plain = _weights(tmp_path / "plain")  # the same training (only evaluation's statistics differ) ...
    assert torch.equal(plain["network.input_weight"], weights["network.input_weight"])
    assert not torch.equal(plain["network.input_norm.running_mean"], mean)  # ... with lagging running statistics


def test_augmentation_changes_training_reproducibly_and_is_refused_for_non_images(tmp_path: Path) -> None:
    _train(tmp_path / "plain", method="ide")
    _train(tmp_path / "a", method="ide", augment_flip=True, augment_shift=1)
    _train(tmp_path / "b", method="ide", augment_flip=True, augment_shift=1)
    assert (tmp_path / "a" / "checkpoint.pt").read_bytes() == (tmp_path / "b" / "checkpoint.pt").read_bytes()
    assert not torch.equal(_weights(tmp_path / "a")["network.input_weight"],
                           _weights(tmp_path / "plain")["network.input_weight"])
    with pytest.raises(ConfigError, match="augment_shift"):
        resolve_config("ide", "digits", flags={"augment_shift": -1})
