"""The shared training loop: optimiser, schedule, checkpoints, progress, metrics, plots and DDP, for every method.

A method only builds its network (pipeline.methods); this loop runs it. The same code runs on one process or
under ``torchrun --nproc_per_node=N`` (torch DDP: gloo on CPU, nccl on GPU): each worker takes ``batch_size / N``
samples of every batch and DDP averages the gradients, so N workers take the same step as one worker would on the
combined batch.

Reproducibility: one seed drives model initialisation (a torch.Generator), the shuffling and input encoding of
each epoch (generators seeded from (seed, epoch)), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from lavaflow.models.errors import ConfigError
from lavaflow.models.netspec import NetSpec
from lavaflow.pipeline.config import TrainConfig, config_to_yaml
from lavaflow.pipeline.data import DataInfo, load_data
from lavaflow.pipeline.encoders import Encoding, encode
from lavaflow.pipeline.methods import Method
from lavaflow.pipeline.plots import plot_training
from lavaflow.pipeline.rundir import RunDir


@dataclass(frozen=True)
class Workers:
    """This process's place among DDP workers (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_workers(device: str) -> Workers:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Workers()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Workers(dist.get_rank(), dist.get_world_size())


def derived_seed(seed: int, epoch: int, stream: int) -> int:
    """A distinct seed per (seed, epoch, stream): resuming at an epoch reproduces that epoch's randomness."""
    return ((seed * 1_000_003 + epoch) * 7919 + stream) % (2**63)


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, epoch, stream))


def learning_rate_factor(iteration: int, iterations_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_iterations``, then ×gamma at each milestone epoch."""
    warmup = min(1.0, (iteration + 1) / config.warmup_iterations) if config.warmup_iterations else 1.0
    epoch = iteration // max(1, iterations_per_epoch)
    return warmup * config.gamma ** sum(epoch >= milestone for milestone in config.milestones)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[float, int]:
    """One optimiser step on time-first inputs; returns (loss, number correct)."""
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), int((logits.detach().argmax(1) == targets).sum())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: DataLoader, encoding: Encoding, time_steps: int, device: str, seed: int
) -> tuple[float, float]:
    """Mean loss and accuracy of the torch model on a data set (eval mode)."""
    model.eval()
    generator = epoch_generator(seed, -1, 1)
    total_loss, correct, count = 0.0, 0, 0
    for batch, targets in loader:
        inputs = encode(batch, encoding, time_steps, generator).to(device)
        targets = targets.to(device)
        logits = model(inputs)
        total_loss += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets).sum())
        count += len(targets)
    return total_loss / max(1, count), correct / max(1, count)


def resolve_encoding(config: TrainConfig, info: DataInfo) -> Encoding:
    name = config.encoding or info.default_encoding
    try:
        return Encoding(name)
    except ValueError:
        valid = ", ".join(e.value for e in Encoding)
        raise ConfigError(f"unknown encoding {name!r}; choose one of: {valid}") from None


def train(
    config: TrainConfig, model_config: Any, method: Method, run_dir: RunDir, *, resume: bool = False
) -> dict[str, Any]:
    """Train, checkpointing every epoch; write metrics.json, plots and the NetSpec. Returns the metrics."""
    workers = init_workers(config.device)
    if config.batch_size % workers.world_size:
        raise ConfigError(f"batch_size {config.batch_size} must be divisible by the {workers.world_size} workers")
    train_set, test_set, info = load_data(
        config.data, time_steps=config.time_steps, data_dir=config.data_dir, limit=config.limit, seed=config.seed
    )
    encoding = resolve_encoding(config, info)
    model = method.build(
        model_config, info.input_shape, info.num_classes, config.time_steps, torch.Generator().manual_seed(config.seed)
    ).to(config.device)
    optimizer = make_optimizer(model, config)
    per_worker = config.batch_size // workers.world_size
    iterations_per_epoch = math.ceil(len(train_set) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: learning_rate_factor(it, iterations_per_epoch, config)
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    if workers.is_main:
        run_dir.write_config(config_to_yaml(config))
    if resume and run_dir.has_checkpoint():
        state = run_dir.load_checkpoint()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log(workers, f"resuming {run_dir.path} after epoch {start_epoch}")
    network = model
    if workers.world_size > 1:
        network = torch.nn.parallel.DistributedDataParallel(model)

    test_loader = DataLoader(test_set, batch_size=config.test_batch_size)
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(derived_seed(config.seed, epoch, 2))  # layers that draw from torch's global RNG
        sampler = DistributedSampler(
            train_set, workers.world_size, workers.rank, shuffle=True, seed=config.seed, drop_last=False
        )
        sampler.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=per_worker, sampler=sampler)
        encoder_rng = epoch_generator(config.seed, epoch, 0)
        network.train()
        started = time.perf_counter()
        loss_sum, correct, count = 0.0, 0, 0
        for batch, targets in progress(loader, workers, f"epoch {epoch + 1}/{config.epochs}"):
            inputs = encode(batch, encoding, config.time_steps, encoder_rng).to(config.device)
            loss, right = train_step(network, optimizer, inputs, targets.to(config.device))
            scheduler.step()
            loss_sum, correct, count = loss_sum + loss * len(targets), correct + right, count + len(targets)
        seconds = time.perf_counter() - started
        if workers.is_main:
            test_loss, test_accuracy = evaluate(
                model, test_loader, encoding, config.time_steps, config.device, config.seed
            )
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum / max(1, count),
                    "train_accuracy": correct / max(1, count),
                    "test_loss": test_loss,
                    "test_accuracy": test_accuracy,
                    "seconds": seconds,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                }
            )
            run_dir.save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                }
            )
            last = history[-1]
            log(
                workers,
                f"epoch {epoch + 1}/{config.epochs}: loss {last['train_loss']:.4f}  train {last['train_accuracy']:.2%}"
                f"  test {last['test_accuracy']:.2%}  ({seconds:.1f} s)",
            )
        if workers.world_size > 1:
            dist.barrier()

    if not workers.is_main:
        return {}
    spec = method.to_netspec(model, model_config, info.input_shape, encoding.value, config.time_steps)
    spec = NetSpec(
        spec.input, spec.populations, spec.connections, spec.readout, spec.time_steps,
        {**spec.metadata, "method": config.method, "data": config.data},
    )
    run_dir.save_netspec(spec)
    export_native = getattr(model, "export_hdf5", None)
    if callable(export_native):
        export_native(run_dir.file("network.h5"))
    if history:
        plot_training(history, run_dir.plots / "training.png", title=f"{config.method} on {config.data}")
    final = history[-1] if history else {}
    return run_dir.update_metrics(
        {
            "method": config.method,
            "data": config.data,
            "encoding": encoding.value,
            "time_steps": config.time_steps,
            "epochs": len(history),
            "train_accuracy": final.get("train_accuracy"),
            "test_accuracy": final.get("test_accuracy"),
            "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
            "train_seconds": sum(h["seconds"] for h in history),
            "num_parameters": spec.num_parameters,
            "num_neurons": sum(p.size for p in spec.populations.values()),
            "workers": workers.world_size,
        }
    )


def progress(iterable: Any, workers: Workers, description: str) -> Any:
    """A tqdm bar on stderr for the main worker (silent elsewhere and when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=description, leave=False, disable=not workers.is_main or not sys.stderr.isatty())


def log(workers: Workers, message: str) -> None:
    if workers.is_main:
        print(message, file=sys.stderr, flush=True)
