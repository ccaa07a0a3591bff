"""The shared training loop: optimiser, schedule, checkpoints, progress, metrics, plots and DDP, for every method.

A method only builds its network (pipeline.methods); this loop runs it. The same code runs on one process or
under ``torchrun --nproc_per_node=N`` (torch DDP: gloo on CPU, nccl on GPU): each worker takes ``batch_size / N``
samples of every batch and DDP averages the gradients, so N workers take the same step as one worker would on the
combined batch.

Reproducibility: one seed drives model initialisation (a torch.Generator) and every random stream of an epoch:
the shuffling, the input encoding, torch's global RNG and the streams modules hold themselves (IDE's dropout
masks, restarted through ``reseed_random_streams``) are all seeded from (seed, epoch, worker). The checkpoint of
epoch k therefore holds everything epoch k + 1 depends on, and a resumed run writes the same files, byte for
byte, as an uninterrupted one. Wall times are kept out of the checkpoint (history.csv and the ``*_seconds``
metrics hold them) so that the checkpoint is identical too.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from lavaflow.models.errors import ConfigError, LavaflowError
from lavaflow.models.netspec import NetSpec
from lavaflow.pipeline.config import TrainConfig, config_to_yaml, read_yaml
from lavaflow.pipeline.data import DataInfo, Encoding, Kind, encode, load_data
from lavaflow.pipeline.data.augment import augment_images
from lavaflow.pipeline.methods import Method, get_method
from lavaflow.pipeline.plots import plot_training
from lavaflow.pipeline.rundir import RunDir

# Config keys a resumed run must share with its checkpoint: they decide the network the weights belong to, and
# the optimiser whose state the checkpoint holds. Other keys (epochs, learning rate, ...) may change on resume.
RESUME_KEYS = ("method", "data", "model", "optimizer")
# Random streams of an epoch (derived_seed's ``stream``); each DDP worker gets its own block of STREAMS.
ENCODER_STREAM, EVALUATION_STREAM, GLOBAL_STREAM, MODULE_STREAM, STREAMS = 0, 1, 2, 3, 4
# Augmentation's stream, + the worker's rank: outside the blocks above (for fewer than 1,750 workers), so adding it
# left every other stream, and runs without augmentation, as they were.
AUGMENT_STREAM = 7000
# One row of the checkpoint's history. Rows are always built from these very strings, so that pickle writes a
# resumed run's history (keys read back from the checkpoint) with the same bytes as an uninterrupted run's.
HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "learning_rate")


class Collectives:
    """The loop's own collectives, each on one tensor kept for the whole training.

    torch 2.3's gloo process group destroys finished work on its own threads. A tensor whose last reference is
    such work needs the GIL there, while destroy_process_group holds the GIL and joins those threads: a worker
    hung at exit now and then (and without destroy_process_group, an abort at interpreter exit). Tensors that
    Python keeps alive until the group is destroyed never die on those threads, so every collective of the loop
    goes through here (dist.barrier is not used: its work may hold such a tensor too).
    """

    def __init__(self, device: str) -> None:
        self.flag = torch.zeros(1, device=device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)

    def all_true(self, value: bool) -> bool:
        """True when ``value`` is True on every worker."""
        self.flag.fill_(float(value))
        dist.all_reduce(self.flag, op=dist.ReduceOp.MIN)
        return bool(self.flag.item())

    def sum(self, values: list[float]) -> list[float]:
        """The element-wise sum over workers of three numbers."""
        self.sums.copy_(torch.tensor(values, dtype=torch.float64))
        dist.all_reduce(self.sums)
        return self.sums.tolist()

    def synchronise(self) -> None:
        """Return once every worker has called this (a barrier)."""
        self.all_true(True)


@dataclass(frozen=True)
class Workers:
    """This process's place among DDP workers (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    owns_group: bool = False  # this module started the process group (and ends it when training ends)
    collectives: Collectives | None = None  # with more than one worker

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_workers(device: str) -> Workers:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Workers()
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    if device == "cuda":  # one GPU per local worker; "cuda" then means this worker's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Workers(dist.get_rank(), dist.get_world_size(), local_world_size, owns_group, Collectives(device))


def thread_count(requested: int, local_workers: int) -> int:
    """``requested`` CPU threads, or for 0 the cores this process may use shared among the machine's workers."""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, local_workers))


def derived_seed(seed: int, epoch: int, stream: int) -> int:
    """A distinct seed per (seed, epoch, stream): resuming at an epoch reproduces that epoch's randomness."""
    return ((seed * 1_000_003 + epoch) * 7919 + stream) % (2**63)


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, epoch, stream))


def reseed_random_streams(model: torch.nn.Module, seed: int) -> None:
    """Restart the random generators modules hold themselves (they expose ``reseed_random_streams(seed)``)."""
    for index, module in enumerate(model.modules()):
        reseed = getattr(module, "reseed_random_streams", None)
        if callable(reseed):
            reseed(derived_seed(seed, index, 0))


def learning_rate_factor(iteration: int, iterations_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_iterations``, then ×gamma at each milestone epoch (or, for the "cosine"
    schedule, half a cosine from 1 at the first iteration to 0 after the last)."""
    warmup = min(1.0, (iteration + 1) / config.warmup_iterations) if config.warmup_iterations else 1.0
    if config.schedule == "cosine":
        progress = min(1.0, iteration / max(1, iterations_per_epoch * config.epochs))
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))
    epoch = iteration // max(1, iterations_per_epoch)
    return warmup * config.gamma ** sum(epoch >= milestone for milestone in config.milestones)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every entry is finite, at the cost of a sum where it is.

    A sum is not finite whenever an entry is not (inf and NaN propagate), so only a non-finite sum, from a bad
    entry or from overflow, needs the elementwise test. torch.isfinite costs ~10× the sum: over IDE F400's
    gradients it took a tenth of a training step.
    """
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


class Diverged(Exception):  # noqa: N818 (an event, not an error the user sees: the loop reports it)
    """The loss or a gradient is not finite; the step was not taken."""

    def __init__(self, loss: float) -> None:
        super().__init__(loss)
        self.loss = loss


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    workers: Workers | None = None,
) -> tuple[float, int]:
    """One optimiser step on time-first inputs; returns (loss, number correct).

    Raises Diverged, without stepping, when the loss or a gradient is not finite on any worker: the verdict is
    all-reduced, so every DDP worker stops at the same step and none waits for another.
    """
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    finite = bool(torch.isfinite(loss.detach())) and all(
        all_finite(parameter.grad) for parameter in model.parameters() if parameter.grad is not None
    )
    if workers is not None and workers.collectives is not None:
        finite = workers.collectives.all_true(finite)
    if not finite:
        raise Diverged(float(loss.detach()))
    optimizer.step()
    return float(loss.detach()), int((logits.detach().argmax(1) == targets).sum())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: DataLoader, encoding: Encoding, time_steps: int, device: str, seed: int
) -> tuple[float, float]:
    """Mean loss and accuracy of the torch model on a data set (eval mode)."""
    model.eval()
    generator = epoch_generator(seed, -1, EVALUATION_STREAM)
    total_loss, correct, count = 0.0, 0, 0
    for batch, targets in loader:
        inputs = encode(batch, encoding, time_steps, generator).to(device)
        targets = targets.to(device)
        logits = model(inputs)
        total_loss += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets).sum())
        count += len(targets)
    return total_loss / max(1, count), correct / max(1, count)


def refresh_statistics(
    method: Method, model: torch.nn.Module, loader: DataLoader, encoding: Encoding, time_steps: int, device: str,
    seed: int
) -> None:
    """``Method.refresh_statistics`` (IDE's exact BatchNorm statistics): what evaluation uses, recomputed from the
    whole training set before the loop evaluates and saves it; nothing for a method without one."""
    if method.refresh_statistics is None:
        return
    generator = epoch_generator(seed, -2, EVALUATION_STREAM)
    with torch.no_grad():
        method.refresh_statistics(
            model, (encode(batch, encoding, time_steps, generator).to(device) for batch, _ in loader))


def resolve_encoding(config: TrainConfig, info: DataInfo) -> Encoding:
    """The configured encoding, checked against the data: a mismatch would fail deep inside the encoder."""
    name = config.encoding or info.default_encoding
    if name not in info.encodings:
        problem = f"unknown encoding {name!r}"
        if name in {e.value for e in Encoding}:
            problem = f"the encoding {name!r} does not suit {info.name} ({info.kind.value} data, {info.input_shape})"
        raise ConfigError(
            f"{problem}; the encodings that suit {info.name}: {', '.join(info.encodings)} (default "
            f"{info.default_encoding}). Set --encoding or the config's encoding to one of them, or leave it out."
        )
    return Encoding(name)


def first_training_batch(train_set: Any, encoding: Encoding, config: TrainConfig) -> torch.Tensor:
    """The run's first training batch, time-first and encoded, as one worker's loop would feed it at epoch 0.

    For data-dependent initialisation (``Method.initialise``). It draws from generators of its own, made alike
    (the sampler's shuffle of (seed, epoch 0), the encoder stream of epoch 0, worker 0), and leaves the loop's
    sampler, its streams and torch's global RNG untouched: a run whose method initialises nothing is as before.
    With N DDP workers it is the combined batch of their first step (each worker takes every N-th index of the
    same shuffle), so every worker computes the same initialisation, whatever N. Augmentation is left out: the
    statistics are the data's.
    """
    sampler = DistributedSampler(train_set, 1, 0, shuffle=True, seed=config.seed, drop_last=False)
    sampler.set_epoch(0)
    # A generator of its own: a DataLoader iterator otherwise draws its base seed from torch's global RNG.
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, generator=torch.Generator())
    batch, _ = next(iter(loader))
    return encode(batch, encoding, config.time_steps, epoch_generator(config.seed, 0, ENCODER_STREAM))


def train(
    config: TrainConfig,
    model_config: Any,
    method: Method,
    run_dir: RunDir,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train into ``run_dir``, checkpointing every epoch; write history.csv, metrics.json, plots and the NetSpec.

    The run dir is locked (``RunDir.lock``) for the whole training. A new training needs an empty run dir, or
    ``overwrite`` to remove the earlier run's files first; ``resume`` continues from the checkpoint, refusing one
    of another method, data set or model, and without a checkpoint says so and starts afresh. These checks come
    before anything is written. Returns the metrics ({} on DDP workers other than rank 0).
    """
    workers = init_workers(config.device)
    try:
        return _train_in(config, model_config, method, run_dir, workers, resume=resume, overwrite=overwrite)
    finally:
        if workers.owns_group:
            dist.destroy_process_group()


def _train_in(
    config: TrainConfig, model_config: Any, method: Method, run_dir: RunDir, workers: Workers, *, resume: bool,
    overwrite: bool,
) -> dict[str, Any]:
    """``train`` once the workers are known: lock and check the run dir on rank 0, then train on every worker."""
    threads = thread_count(config.threads, workers.local_world_size)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, previous_threads)  # a library call leaves the process as it found it
        verdict, state = None, None
        if workers.is_main:
            try:
                stack.enter_context(run_dir.lock())
                state = check_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
            except LavaflowError as error:
                verdict = str(error)
        refused, resuming = verdict is not None, state is not None
        if workers.collectives is not None:  # rank 0's decision on every worker (the others add zeros)
            refused, resuming = (bool(value) for value in workers.collectives.sum(
                [float(refused), float(resuming), 0.0] if workers.is_main else [0.0, 0.0, 0.0])[:2])
        if refused:
            raise LavaflowError(verdict or "rank 0 refused the run dir (its message says why)")
        if resuming and state is None:
            state = run_dir.load_checkpoint()
        metrics = (method.train or _train)(config, model_config, method, run_dir, workers, threads, state)
        if workers.collectives is not None:
            workers.collectives.synchronise()  # rank 0 has written every file (still holding the lock): all end
        return metrics


def restore_checkpoint(run_dir: RunDir, state: dict[str, Any], model: torch.nn.Module,
                       optimizer: torch.optim.Optimizer, scheduler: Any = None) -> None:
    """Load a checkpoint's model, optimiser (and scheduler) state; a LavaflowError that says what to do if it does
    not fit."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LavaflowError(
            f"the checkpoint {run_dir.file(RunDir.CHECKPOINT)} does not fit the network this config builds "
            f"({first_line}); resume with the run's own config.yaml, or train into another --out directory"
        ) from None


def check_run_dir(run_dir: RunDir, config: TrainConfig, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Decide, before writing anything, whether this training may use the run dir; the checkpoint to resume from.

    Raises LavaflowError for a run dir that holds another run (without ``resume`` or ``overwrite``), or whose
    checkpoint belongs to a different network (method, data set or model config).
    """
    if resume and overwrite:
        raise LavaflowError("--resume continues the run in the run dir and --overwrite replaces it: pass one of them")
    previous = _previous_config(run_dir)
    if resume:
        previous = _with_model_defaults(previous, config)
        _check_same_network(run_dir, config, previous)
        if run_dir.has_checkpoint():
            state = run_dir.load_checkpoint()
            if previous.get("method") is None and state.get("method") not in (None, config.method):
                _check_same_network(run_dir, config, {"method": state["method"]})
            changed = _changed_settings(config, previous)
            log(Workers(), f"resuming {run_dir.path} after epoch {int(state['epoch'])}"
                + (f"; settings changed since: {changed}" if changed else ""))
            return state
        log(Workers(), f"lavaflow: notice: --resume found no checkpoint in {run_dir.path}, so this training starts "
            "from scratch (epoch 1)")
        return None
    if not run_dir.is_empty() and not overwrite:
        names = ", ".join(path.name for path in sorted(run_dir.path.iterdir())
                          if path.name != RunDir.LOCK and not path.name.startswith(RunDir.PROBE))
        raise LavaflowError(
            f"the run dir {run_dir.path} is not empty (it holds {_shorten(names)}); pass --resume to continue the "
            "run in it, --overwrite to replace it (its config, checkpoint, NetSpec, metrics, history, network.h5, "
            "plots and records are deleted first), or choose another --out directory"
        )
    return None


def trained_with(run_dir: RunDir, config: TrainConfig) -> bool:
    """The run dir's config.yaml says ``config`` (model keys added since it was written read as their defaults)."""
    previous = _with_model_defaults(_previous_config(run_dir), config)
    current = _plain(config_dict(config))
    return bool(previous) and all(_plain(previous.get(key)) == value for key, value in current.items())


def _previous_config(run_dir: RunDir) -> dict[str, Any]:
    path = run_dir.file(RunDir.CONFIG)
    return read_yaml(path) if path.is_file() else {}


def _with_model_defaults(previous: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """``previous`` with the model keys its config.yaml lacks set to their defaults: keys added to the method's
    model config after the run was written (SPIDE's data_init), whose default is what that run was built with."""
    if not isinstance(previous.get("model"), dict) or previous.get("method", config.method) != config.method:
        return previous
    try:
        fields = dataclasses.fields(get_method(config.method).model_config)
    except (ConfigError, TypeError):
        return previous
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    return {**previous, "model": {**defaults, **previous["model"]}}


def _check_same_network(run_dir: RunDir, config: TrainConfig, previous: dict[str, Any]) -> None:
    current = _plain(config_dict(config))
    differences = []
    for key in RESUME_KEYS:
        if key not in previous or (key == "model" and previous.get("method", config.method) != config.method):
            continue  # another method's model keys say nothing more than the method does
        before, after = _plain(previous[key]), current[key]
        if key == "model" and isinstance(before, dict):
            differences += [f"model.{name} {before.get(name)!r} → {after.get(name)!r}"
                            for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
        elif before != after:
            differences.append(f"{key} {before!r} → {after!r}")
    if differences:
        raise LavaflowError(
            f"cannot --resume {run_dir.path}: it holds a run of another network or optimiser "
            f"({'; '.join(differences)}); resume it with its own settings (`lavaflow train --config "
            f"{run_dir.file(RunDir.CONFIG)} --out {run_dir.path} --resume`), or train this one into another --out "
            "directory"
        )


def _changed_settings(config: TrainConfig, previous: dict[str, Any]) -> str:
    current = _plain(config_dict(config))
    return ", ".join(f"{key} {_plain(previous[key])!r} → {current[key]!r}" for key in current
                     if key in previous and _plain(previous[key]) != current[key])


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def config_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _train(
    config: TrainConfig,
    model_config: Any,
    method: Method,
    run_dir: RunDir,
    workers: Workers,
    threads: int,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    if config.batch_size % workers.world_size:
        raise ConfigError(f"batch_size {config.batch_size} must be divisible by the {workers.world_size} workers")
    train_set, test_set, info = load_data(
        config.data, time_steps=config.time_steps, data_dir=config.data_dir, limit=config.limit, seed=config.seed
    )
    encoding = resolve_encoding(config, info)
    if (config.augment_flip or config.augment_shift) and info.kind is not Kind.IMAGE:
        raise ConfigError(f"augment_flip / augment_shift move images, but {info.name} holds {info.kind.value} "
                          "data; leave them out for this data set")
    model = method.build(
        model_config, info.input_shape, info.num_classes, config.time_steps, torch.Generator().manual_seed(config.seed)
    ).to(config.device)
    optimizer = make_optimizer(model, config)
    per_worker = config.batch_size // workers.world_size
    sampler = DistributedSampler(
        train_set, workers.world_size, workers.rank, shuffle=True, seed=config.seed, drop_last=False
    )
    loader = DataLoader(train_set, batch_size=per_worker, sampler=sampler)
    iterations_per_epoch = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: learning_rate_factor(it, iterations_per_epoch, config)
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    if state is not None:
        restore_checkpoint(run_dir, state, model, optimizer, scheduler)
        apply_hyperparameters(optimizer, scheduler, config, iterations_per_epoch)
        start_epoch = int(state["epoch"])
        history = [{key: row[key] for key in HISTORY_KEYS} for row in state["history"]]
    elif method.initialise is not None:  # a fresh run only; before DDP's wrap, which copies rank 0's weights
        method.initialise(model, first_training_batch(train_set, encoding, config).to(config.device))
    if workers.is_main:
        # From here on the run dir is this training's: old outputs go (a resumed run keeps its checkpoint).
        run_dir.clear(keep=(RunDir.CHECKPOINT, RunDir.HISTORY) if state is not None else ())
        run_dir.write_config(config_to_yaml(config))
    earlier = {int(row.get("epoch", -1)): row.get("epoch_seconds", 0.0)
               for row in (run_dir.read_history() if workers.is_main else [])}  # wall times of resumed epochs
    seconds_per_epoch = [float(earlier.get(int(row["epoch"]), 0.0)) for row in history]
    network = model
    if workers.world_size > 1:
        # broadcast_buffers=False: DDP would otherwise copy rank 0's buffers to every worker before each forward.
        # slayer keeps its neuron state in buffers shaped like the last batch, and rank 0 alone also evaluates
        # (another batch size), so the copies differed in size and gloo failed at epoch 2. No buffer needs the
        # copy: BatchNorm's running statistics only matter on rank 0 (it evaluates and saves), and the spectral
        # norm's power-iteration vectors follow the weights, which DDP keeps identical.
        network = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)

    test_loader = DataLoader(test_set, batch_size=config.test_batch_size)
    statistics_loader = DataLoader(train_set, batch_size=config.test_batch_size)  # in order, not augmented
    for epoch in range(start_epoch, config.epochs):
        streams = STREAMS * workers.rank
        torch.manual_seed(derived_seed(config.seed, epoch, GLOBAL_STREAM + streams))
        reseed_random_streams(model, derived_seed(config.seed, epoch, MODULE_STREAM + streams))
        sampler.set_epoch(epoch)
        encoder_rng = epoch_generator(config.seed, epoch, ENCODER_STREAM + streams)
        augment_rng = epoch_generator(config.seed, epoch, AUGMENT_STREAM + workers.rank)
        augmenting = config.augment_flip or config.augment_shift > 0
        network.train()
        started = time.perf_counter()
        loss_sum, correct, count = 0.0, 0, 0
        learning_rate = optimizer.param_groups[0]["lr"]
        for iteration, (batch, targets) in enumerate(progress(loader, workers, f"epoch {epoch + 1}/{config.epochs}")):
            if augmenting:
                batch = augment_images(batch, augment_rng, flip=config.augment_flip, shift=config.augment_shift)
            inputs = encode(batch, encoding, config.time_steps, encoder_rng).to(config.device)
            learning_rate = optimizer.param_groups[0]["lr"]
            try:
                loss, right = train_step(network, optimizer, inputs, targets.to(config.device), workers)
            except Diverged as diverged:
                raise divergence(run_dir, config, diverged.loss, epoch, iteration, iterations_per_epoch,
                                  learning_rate, len(history)) from None
            scheduler.step()
            loss_sum, correct, count = loss_sum + loss * len(targets), correct + right, count + len(targets)
        seconds = time.perf_counter() - started
        if workers.collectives is not None:  # the epoch's loss and accuracy over every worker's samples
            loss_sum, correct, count = workers.collectives.sum([loss_sum, correct, count])
        if workers.is_main:
            # Evaluation's statistics, outside the epoch's time as evaluation is (training never reads them). IDE's
            # exact BatchNorm statistics: one pass over the data at the first epoch (~2 s for Fashion-MNIST on one
            # thread), ~10 ms at each later one.
            refresh_statistics(method, model, statistics_loader, encoding, config.time_steps, config.device,
                               config.seed)
            test_loss, test_accuracy = evaluate(
                model, test_loader, encoding, config.time_steps, config.device, config.seed
            )
            values = (epoch + 1, loss_sum / max(1, count), correct / max(1, count), test_loss, test_accuracy,
                      learning_rate)  # the learning rate of the epoch's last iteration
            history.append(dict(zip(HISTORY_KEYS, values, strict=True)))
            seconds_per_epoch.append(seconds)
            run_dir.write_history([{**row, "epoch_seconds": s} for row, s in zip(history, seconds_per_epoch,
                                                                                   strict=True)])
            run_dir.save_checkpoint(
                {
                    "method": config.method,
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
        if workers.collectives is not None:
            workers.collectives.synchronise()

    if not workers.is_main:
        return {}
    spec = method.to_netspec(model, model_config, info.input_shape, encoding.value, config.time_steps)
    spec = NetSpec(
        spec.input, spec.populations, spec.connections, spec.readout, spec.time_steps,
        {**spec.metadata, "method": config.method, "data": config.data},
    )
    export_native = getattr(model, "export_hdf5", None)
    if callable(export_native):  # written beside, then renamed: a crash never leaves half an HDF5 file
        temporary = run_dir.file(f".{RunDir.NETWORK_H5}.{os.getpid()}.tmp")
        export_native(temporary)
        os.replace(temporary, run_dir.file(RunDir.NETWORK_H5))
    if history:
        plot_training(history, run_dir.plots / "training.png", title=f"{config.method} on {config.data}",
                      milestones=config.milestones)
    final = history[-1] if history else {}
    run_dir.update_metrics(
        {
            "method": config.method,
            "data": config.data,
            "encoding": encoding.value,
            "time_steps": config.time_steps,
            "epochs": len(history),
            "limit": config.limit,
            "train_samples": len(train_set),
            "test_samples": len(test_set),  # the samples test_accuracy was measured on (the first N of the split)
            "train_accuracy": final.get("train_accuracy"),
            "test_accuracy": final.get("test_accuracy"),
            "train_loss": final.get("train_loss"),
            "test_loss": final.get("test_loss"),
            "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
            "train_seconds": sum(seconds_per_epoch),
            "num_parameters": spec.num_parameters,
            "num_neurons": sum(p.size for p in spec.populations.values()),
            "workers": workers.world_size,
            "threads": threads,
        }
    )
    run_dir.save_netspec(spec)  # last: it binds the NetSpec to the metrics (netspec_sha256)
    return run_dir.read_metrics()


def apply_hyperparameters(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, config: TrainConfig,
    iterations_per_epoch: int,
) -> None:
    """After loading a checkpoint: use this config's learning rate, momentum and weight decay (a resume may lower
    the learning rate of a diverging run). With unchanged settings every value is the one the checkpoint holds."""
    scheduler.base_lrs = [config.learning_rate for _ in optimizer.param_groups]
    factor = learning_rate_factor(scheduler.last_epoch, iterations_per_epoch, config)
    for group in optimizer.param_groups:
        group["initial_lr"] = config.learning_rate
        group["lr"] = config.learning_rate * factor  # as LambdaLR computes it: base_lr * lambda(last_epoch)
        group["weight_decay"] = config.weight_decay
        if "momentum" in group:
            group["momentum"] = config.momentum
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def divergence(
    run_dir: RunDir, config: TrainConfig, loss: float, epoch: int, iteration: int, iterations: int,
    learning_rate: float, completed: int,
) -> LavaflowError:
    kept = (f"the checkpoint of epoch {completed} in {run_dir.path} is kept" if completed
            else "no epoch had finished, so there is no checkpoint")
    return LavaflowError(
        f"training diverged: the loss (or a gradient) became {loss} at epoch {epoch + 1}, iteration "
        f"{iteration + 1} of {iterations} (learning rate {learning_rate:g}); training stopped before that step "
        f"and {kept}. Lower the learning rate (--lr, now {config.learning_rate:g}; try {config.learning_rate / 10:g})"
        " and train again (--overwrite, or --resume from the checkpoint)"
    )


def progress(iterable: Any, workers: Workers, description: str) -> Any:
    """A tqdm bar on stderr for the main worker (silent elsewhere and when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=description, leave=False, disable=not workers.is_main or not sys.stderr.isatty())


def log(workers: Workers, message: str) -> None:
    if workers.is_main:
        print(message, file=sys.stderr, flush=True)
