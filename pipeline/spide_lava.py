"""``lavaflow train --method spide --backend lava|lava-float|lava-fixed``: SPIDE trained entirely in a Lava graph.

The shared loop (pipeline.training) steps a torch optimiser on gradients; here the optimiser runs inside the graph
(lavaflow.processes.spide: the plastic connections apply SPIDE's update, SPIDEHost the readout's), so this driver
keeps the loop's contract and its helpers but none of its torch steps: the same data, shuffles (seed, epoch),
learning-rate schedule (warm-up and milestones, per iteration), and the same run dir — config.yaml, checkpoint.pt
(a SPIDEModel state_dict, the SGD state with the graph's momentum buffers, the scheduler), history.csv, metrics.json,
plots/training.png and the NetSpec — so ``simulate``, ``export`` and ``deploy`` treat the run like any other.

Per epoch the training batches stream through the graph (``capacity`` per Lava run), then the test set in
evaluation windows (forward phase only, in the graph); the weights leave the graph once per epoch, for the
checkpoint. ``--resume`` builds the graph from the checkpoint's weights and momentum buffers and goes on at the next
epoch; each batch's dropout masks are keyed by its iteration number, so the resumed run ends where the uninterrupted
one does. The graph takes constant input (encoding "current", as every SPIDE preset): x̄ is what the input edge's
update reads.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from lavaflow.models.errors import ConfigError, LavaflowError
from lavaflow.models.netspec import NetSpec
from lavaflow.pipeline.config import TrainConfig, config_to_yaml
from lavaflow.pipeline.data import Encoding, load_data
from lavaflow.pipeline.lava.spide_graph import Batch, SPIDELavaGraph
from lavaflow.pipeline.plots import plot_training
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.spide import METHOD, SPIDEConfig, initialise
from lavaflow.pipeline.training import (
    HISTORY_KEYS,
    MODULE_STREAM,
    Workers,
    check_run_dir,
    derived_seed,
    first_training_batch,
    learning_rate_factor,
    log,
    make_optimizer,
    refresh_statistics,
    resolve_encoding,
    restore_checkpoint,
)
from lavaflow.processes.spide.process import EVALUATE, LEARN

LAVA_BACKENDS = ("lava", "lava-float", "lava-fixed")  # "lava" is lava-float
CAPACITY = 8  # batches per Lava run: the pipes hold CAPACITY messages of B·n_in float64 values


def train_spide_lava(config: TrainConfig, model_config: SPIDEConfig, run_dir: RunDir, *, backend: str = "lava-float",
                     overwrite: bool = False, resume: bool = False, timeout_s: float | None = None) -> dict[str, Any]:
    """Train SPIDE in the Lava graph into ``run_dir``; returns the metrics (as pipeline.training.train does).

    Raises:
        ConfigError: another method, an encoding other than current, an optimiser other than SGD, a network the
            graph cannot step (conv), or an unknown backend.
        LavaflowError: a run dir that holds another run (without ``overwrite``), or a checkpoint that does not fit
            (with ``resume``).
    """
    if config.method != METHOD.name:
        raise ConfigError(f"--backend {backend} trains the spide method only, got --method {config.method}")
    if backend not in LAVA_BACKENDS:
        raise ConfigError(f"unknown SPIDE backend {backend!r}; choose torch or one of {', '.join(LAVA_BACKENDS)}")
    backend = "lava-float" if backend == "lava" else backend
    if config.optimizer != "sgd":
        raise ConfigError(f"the Lava SPIDE graph steps momentum SGD (the reference's optimiser); set optimizer: sgd "
                          f"(got {config.optimizer})")
    if config.device != "cpu":
        raise ConfigError(f"the Lava simulator runs on the CPU; drop --device {config.device}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(run_dir.lock())
        state = check_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, config.threads))
        stack.callback(torch.set_num_threads, previous_threads)
        return _train(config, model_config, run_dir, backend, timeout_s, state)


def _train(config: TrainConfig, model_config: SPIDEConfig, run_dir: RunDir, backend: str,
           timeout_s: float | None, state: dict[str, Any] | None) -> dict[str, Any]:
    train_set, test_set, info = load_data(config.data, time_steps=config.time_steps, data_dir=config.data_dir,
                                          limit=config.limit, seed=config.seed)
    encoding = resolve_encoding(config, info)
    if encoding != Encoding.CURRENT:
        raise ConfigError(f"the Lava SPIDE graph takes constant input (encoding current); got {encoding.value}. Set "
                          "encoding: current, or train with --backend torch")
    model = METHOD.build(model_config, info.input_shape, info.num_classes, config.time_steps,
                         torch.Generator().manual_seed(config.seed))
    history: list[dict[str, float]] = []
    momentum_buffers: dict[str, np.ndarray] = {}
    if state is None:
        # model.data_init: the shared loop's initialisation from the same first batch (constant input x, as
        # _training_batches feeds it), before the graph copies the weights in; never on resume.
        initialise(model, first_training_batch(train_set, encoding, config))
    # float64, as the graph computes: the checkpoint then holds the graph's weights and momentum buffers exactly,
    # and a resumed graph starts where the interrupted one stood (simulate and the torch backend load it as float32).
    model.double()
    if state is not None:
        momentum_buffers = _restore(model, config, state, run_dir)
        history = [{key: row[key] for key in HISTORY_KEYS} for row in state["history"]]
    # model.batch_norm: the training set's input moments (one pass), from which the graph computes the exact
    # statistics evaluation uses, as the shared loop's refresh after every epoch does.
    statistics_loader = DataLoader(train_set, batch_size=config.test_batch_size)
    refresh_statistics(METHOD, model, statistics_loader, encoding, config.time_steps, "cpu", config.seed)
    sampler = DistributedSampler(train_set, 1, 0, shuffle=True, seed=config.seed, drop_last=False)
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler)
    test_loader = DataLoader(test_set, batch_size=config.batch_size)
    iterations = len(loader)
    # From here on the run dir is this training's: old outputs go (a resumed run keeps its checkpoint and history).
    run_dir.clear(keep=(RunDir.CHECKPOINT, RunDir.HISTORY) if state is not None else ())
    run_dir.write_config(config_to_yaml(config))
    earlier = {int(row.get("epoch", -1)): row.get("epoch_seconds", 0.0) for row in run_dir.read_history()}
    seconds_per_epoch = [float(earlier.get(int(row["epoch"]), 0.0)) for row in history]
    graph = SPIDELavaGraph(model, forward_steps=config.time_steps, backend=backend, batch_size=config.batch_size,
                           momentum=config.momentum, weight_decay=config.weight_decay, capacity=CAPACITY,
                           seed=derived_seed(config.seed, 0, MODULE_STREAM), timeout_s=timeout_s,
                           momentum_buffers=momentum_buffers)
    with graph:
        graph.start()
        log(Workers(), f"spide on {backend}: graph compiled in {graph.setup_seconds:.1f} s")
        for epoch in range(len(history), config.epochs):
            sampler.set_epoch(epoch)
            started = time.perf_counter()
            results = graph.run(_training_batches(loader, config, epoch, iterations))
            if not all(math.isfinite(r.loss_sum) for r in results):
                raise LavaflowError(
                    f"training diverged in the Lava graph at epoch {epoch + 1} (a non-finite loss); "
                    f"{'the checkpoint of epoch ' + str(epoch) + ' is kept' if epoch else 'no checkpoint was written'}"
                    f". Lower the learning rate (now {config.learning_rate:g}) and train again with --overwrite")
            count = len(train_set)
            loss_sum = sum(r.loss_sum for r in results)
            correct = sum(r.correct for r in results)
            seconds = time.perf_counter() - started
            test_loss, test_accuracy = _evaluate(graph, test_loader, len(test_set))
            # the learning rate of the epoch's last iteration, as the shared loop's history has it
            learning_rate = config.learning_rate * learning_rate_factor((epoch + 1) * iterations - 1, iterations,
                                                                        config)
            history.append(dict(zip(HISTORY_KEYS, (epoch + 1, loss_sum / count, correct / count, test_loss,
                                                   test_accuracy, learning_rate), strict=True)))
            seconds_per_epoch.append(seconds)
            run_dir.write_history([{**row, "epoch_seconds": s} for row, s in zip(history, seconds_per_epoch,
                                                                                   strict=True)])
            run_dir.save_checkpoint(_checkpoint(graph, model, config, epoch + 1, iterations, history))
            last = history[-1]
            log(Workers(), f"epoch {epoch + 1}/{config.epochs}: loss {last['train_loss']:.4f}  train "
                f"{last['train_accuracy']:.2%}  test {last['test_accuracy']:.2%}  ({seconds:.1f} s, {backend})")
        setup_seconds, run_seconds = graph.setup_seconds, graph.run_seconds
    spec = METHOD.to_netspec(model, model_config, info.input_shape, encoding.value, config.time_steps)
    spec = NetSpec(spec.input, spec.populations, spec.connections, spec.readout, spec.time_steps,
                   {**spec.metadata, "method": config.method, "data": config.data, "trained_on": backend})
    plot_training(history, run_dir.plots / "training.png", title=f"spide on {config.data} ({backend})",
                  milestones=config.milestones)
    final = history[-1]
    train_seconds = sum(seconds_per_epoch)
    run_dir.update_metrics({
        "method": config.method,
        "backend": backend,
        "data": config.data,
        "encoding": encoding.value,
        "time_steps": config.time_steps,
        "backward_time_steps": model_config.backward_steps,
        "epochs": len(history),
        "limit": config.limit,
        "train_samples": len(train_set),
        "test_samples": len(test_set),
        "train_accuracy": final["train_accuracy"],
        "test_accuracy": final["test_accuracy"],
        "train_loss": final["train_loss"],
        "test_loss": final["test_loss"],
        "best_test_accuracy": max(h["test_accuracy"] for h in history),
        "train_seconds": train_seconds,
        "samples_per_second_train": len(train_set) * len(history) / max(train_seconds, 1e-9),
        "lava_setup_seconds": setup_seconds,
        "lava_run_seconds": run_seconds,
        "num_parameters": spec.num_parameters,
        "num_neurons": sum(p.size for p in spec.populations.values()),
        "workers": 1,
        "threads": config.threads,
    })
    run_dir.save_netspec(spec)
    return run_dir.read_metrics()


def _training_batches(loader: DataLoader, config: TrainConfig, epoch: int, iterations: int) -> Iterator[Batch]:
    """The epoch's batches in the shared loop's order, each with its learning rate (LambdaLR's per iteration) and
    its iteration number as the key of its dropout masks."""
    for iteration, (inputs, labels) in enumerate(loader):
        step = epoch * iterations + iteration
        yield Batch(inputs.reshape(len(labels), -1).double().numpy(), labels.numpy(), LEARN,
                    config.learning_rate * learning_rate_factor(step, iterations, config), key=step)


def _restore(model: Any, config: TrainConfig, state: dict[str, Any], run_dir: RunDir) -> dict[str, np.ndarray]:
    """Load a checkpoint's weights into ``model``; its SGD momentum buffers keyed like the model's state_dict."""
    optimizer = make_optimizer(model, config)
    restore_checkpoint(run_dir, state, model, optimizer)
    buffers = {}
    for key, parameter in model.named_parameters():
        buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
        if buffer is not None:
            buffers[key] = buffer.detach().double().numpy()
    return buffers


def _evaluate(graph: SPIDELavaGraph, loader: DataLoader, samples: int) -> tuple[float, float]:
    """Mean loss and accuracy of the graph's forward phase on a data set (evaluation windows, no dropout)."""
    results = graph.run(Batch(x.reshape(len(y), -1).double().numpy(), y.numpy(), EVALUATE) for x, y in loader)
    return (sum(r.loss_sum for r in results) / max(1, samples), sum(r.correct for r in results) / max(1, samples))


def _checkpoint(graph: SPIDELavaGraph, model: Any, config: TrainConfig, epoch: int, iterations: int,
                history: list[dict[str, float]]) -> dict[str, Any]:
    """The loop's checkpoint layout from the graph's Vars: the model, SGD with the graph's momentum buffers, and
    the scheduler at this epoch's end (so the torch backend could continue it)."""
    parameters, velocities = graph.export()
    state = model.state_dict()
    with torch.no_grad():
        for key, value in parameters.items():
            state[key].copy_(torch.from_numpy(np.asarray(value)).to(state[key].dtype))
    optimizer = make_optimizer(model, config)
    names = dict(model.named_parameters())
    for key, value in velocities.items():
        optimizer.state[names[key]]["momentum_buffer"] = torch.from_numpy(np.asarray(value)).to(names[key].dtype)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: learning_rate_factor(it, iterations, config))
    scheduler.last_epoch = epoch * iterations
    return {"method": config.method, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "history": [dict(row) for row in history]}

