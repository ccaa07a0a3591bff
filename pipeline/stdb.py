"""Hybrid conversion + STDB (Rathi et al., ICLR 2020): train an ANN, convert it, fine-tune the SNN with STDB.

Three stages in one run dir (spec part B), each resumable:

1. ANN: the VGG twins' ANN view (models.vgg) trained with cross-entropy for ``model.ann_epochs`` epochs with its own
   optimiser (``model.ann_*``, SGD by default as in the paper).
2. Conversion: threshold balancing (``balance_thresholds``): for each spiking layer in order, the SNN runs with the
   earlier layers' thresholds already set, and the layer's threshold becomes the maximum (or a percentile) of the
   input current it receives over a batch of training samples and ``balance_time_steps`` steps; all thresholds are
   then multiplied by ``threshold_scale``. The converted SNN is measured at the training T and at a long T.
3. STDB fine-tuning: BPTT over T steps with the STDB surrogate α·exp(−β·Δt) (models.vgg.STDBGradient), weights
   only (thresholds and leak stay as converted, spec B.5), with the shared loop's optimiser settings (``epochs``,
   ``learning_rate``, ``milestones`` of the TrainConfig).

Epochs are numbered over both training stages (1 … ann_epochs, then ann_epochs + 1 …); the checkpoint records the
stage ("ann", "converted", "stdb") beside the shared loop's keys, and every epoch's randomness comes from
(seed, epoch, stream) as in pipeline.training, so a resumed run writes the same checkpoint as an uninterrupted one.
The driver reuses the loop's pieces (run-dir checks, optimiser, schedule, train_step, evaluate, seeds, progress,
divergence message); the shared loop itself runs one stage, which is why this method brings its own driver.

Inputs: images in [0, 1] for both stages (one normalisation, spec B.8); the SNN gets them as direct input (the
"current" encoding, the same intensities every step) or as Poisson spikes ("rate", P(spike) = intensity).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lavaflow.deploy import resources
from lavaflow.models.errors import ConfigError, LavaflowError
from lavaflow.models.netspec import INPUT, Conv, Dense, NetSpec
from lavaflow.models.vgg import NEURONS, SURROGATES, SNNNeuron, VGGArchitecture, VGGTwins
from lavaflow.pipeline.config import TrainConfig, config_to_yaml
from lavaflow.pipeline.data import Encoding, Kind, encode, load_data
from lavaflow.pipeline.methods import Method
from lavaflow.pipeline.plots import plot_training
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.training import (
    ENCODER_STREAM,
    EVALUATION_STREAM,
    GLOBAL_STREAM,
    HISTORY_KEYS,
    Diverged,
    Workers,
    apply_hyperparameters,
    check_run_dir,
    derived_seed,
    divergence,
    epoch_generator,
    evaluate,
    learning_rate_factor,
    log,
    make_optimizer,
    progress,
    resolve_encoding,
    restore_checkpoint,
    thread_count,
    train_step,
)

STATISTICS = ("max", "percentile")
STAGES = ("ann", "converted", "stdb")
STAGE_CODES = {"ann": 0, "stdb": 1}  # history's "stage" column: 0 ANN epoch, 1 STDB fine-tuning epoch
BALANCE_STREAM = 5  # the balancing batch and its encoding (beyond the loop's streams 0-3)
PERCENTILE_VALUES = 2**24  # at most this many input values per layer enter a percentile (see balance_thresholds)


@dataclass(frozen=True)
class STDBConfig:
    """The hybrid network and its stages (the ``model:`` config section). Defaults follow spec B.1-B.5.

    Attributes:
        features, classifier, kernel_size, conv_dropout, classifier_dropout: the VGG (models.vgg.VGGArchitecture;
            features are conv channels and "A" for a 2×2 average pool).
        neuron: "soft_reset" (the paper's IF/LIF, reset by subtraction; runs through lavaflow's processes) or
            "cuba" (Lava's LIF, reset to zero: the deploy-exact option lava-dl netx runs unchanged).
        leak: λ, the voltage kept per step (1: IF, the paper's default).
        alpha, beta: the STDB surrogate α·exp(−β·Δt).
        surrogate: "stdb" (the paper's, for fine-tuning) or "voltage" (α·max(0, 1 − |v − θ|/θ)/θ, surrogate-gradient
            BPTT's: what a net trained from scratch needs, since STDB's reaches no neuron that has not fired).
        threshold_scale: thresholds = scale × balanced statistic (0.6-0.8 for T ≥ 100, smaller for small T).
        balance_statistic: "max" (the paper's) or "percentile" of the positive input values.
        balance_percentile: the percentile, in (0, 100], for "percentile".
        balance_samples, balance_time_steps: the training samples and steps threshold balancing runs on.
        ann_epochs, ann_optimizer, ann_learning_rate, ann_momentum, ann_weight_decay, ann_milestones, ann_gamma:
            the ANN stage's training (the TrainConfig's keys of the same names drive fine-tuning).
        long_time_steps: the long T at which the converted net is also measured.
        long_test_samples: the first N test samples of that measurement (it costs long_time_steps / T
            evaluations); 0 measures the whole test set.
    """

    features: tuple[int | str, ...] = (32, "A", 64, "A")
    classifier: tuple[int, ...] = (128,)
    kernel_size: int = 3
    conv_dropout: float = 0.2
    classifier_dropout: float = 0.5
    neuron: str = "soft_reset"
    leak: float = 1.0
    alpha: float = 0.3
    beta: float = 0.01
    surrogate: str = "stdb"
    threshold_scale: float = 0.7
    balance_statistic: str = "max"
    balance_percentile: float = 99.9
    balance_samples: int = 256
    balance_time_steps: int = 100
    ann_epochs: int = 10
    ann_optimizer: str = "sgd"
    ann_learning_rate: float = 0.01
    ann_momentum: float = 0.9
    ann_weight_decay: float = 5e-4
    ann_milestones: tuple[int, ...] = ()
    ann_gamma: float = 0.1
    long_time_steps: int = 256
    long_test_samples: int = 1000

    def __post_init__(self) -> None:
        self.architecture()  # checks features, classifier, kernel and dropouts
        if self.neuron not in NEURONS:
            raise ConfigError(f"model.neuron must be one of {NEURONS}, got {self.neuron!r}")
        if self.surrogate not in SURROGATES:
            raise ConfigError(f"model.surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        if self.balance_statistic not in STATISTICS:
            raise ConfigError(f"model.balance_statistic must be one of {STATISTICS}, got {self.balance_statistic!r}")
        if self.ann_optimizer not in ("sgd", "adam"):
            raise ConfigError(f"model.ann_optimizer must be 'sgd' or 'adam', got {self.ann_optimizer!r}")
        reals = {
            "leak": 0 < self.leak <= 1, "alpha": self.alpha > 0, "beta": self.beta >= 0,
            "threshold_scale": self.threshold_scale > 0, "balance_percentile": 0 < self.balance_percentile <= 100,
            "ann_learning_rate": self.ann_learning_rate > 0, "ann_momentum": 0 <= self.ann_momentum < 1,
            "ann_weight_decay": self.ann_weight_decay >= 0, "ann_gamma": self.ann_gamma > 0,
        }
        for name, valid in reals.items():
            if not (math.isfinite(getattr(self, name)) and valid):
                raise ConfigError(f"model.{name} = {getattr(self, name)!r} is out of range (see STDBConfig)")
        for name, low in (("balance_samples", 1), ("balance_time_steps", 1), ("ann_epochs", 0),
                          ("long_time_steps", 1), ("long_test_samples", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"model.{name} must be at least {low}, got {getattr(self, name)}")

    def architecture(self) -> VGGArchitecture:
        return VGGArchitecture(tuple(self.features), tuple(self.classifier), self.kernel_size, self.conv_dropout,
                               self.classifier_dropout)

    def snn_neuron(self) -> SNNNeuron:
        return SNNNeuron(self.neuron, self.leak, self.alpha, self.beta, self.surrogate)


def build(config: STDBConfig, input_shape: tuple[int, ...], num_classes: int, time_steps: int,
          generator: torch.Generator) -> VGGTwins:
    del time_steps  # the SNN takes any number of steps
    return VGGTwins(config.architecture(), tuple(input_shape), num_classes, config.snn_neuron(), generator)


def to_netspec(model: VGGTwins, config: STDBConfig, input_shape: tuple[int, ...], encoding: str,
               time_steps: int) -> NetSpec:
    """The hybrid SNN (models.vgg.VGGTwins.to_netspec): pools folded into convs, the output read as a potential."""
    del config, input_shape
    return model.to_netspec(encoding, time_steps)


# ------------------------------------------------------------------------------------------------ conversion
class _Statistic:
    """The maximum, or a percentile of the positive values, of every current a layer receives."""

    def __init__(self, statistic: str, percentile: float, total: int) -> None:
        self.statistic, self.percentile = statistic, percentile
        self.stride = max(1, -(-total // PERCENTILE_VALUES))  # every k-th value when there are too many
        self.largest = -math.inf
        self.values: list[np.ndarray] = []

    def observe(self, current: Tensor) -> None:
        if self.statistic == "max":
            self.largest = max(self.largest, float(current.max()))
            return
        kept = current.detach().flatten()[:: self.stride]
        self.values.append(kept[kept > 0].cpu().numpy().astype(np.float64))

    def result(self) -> float:
        if self.statistic == "max":
            return self.largest
        values = np.concatenate(self.values) if self.values else np.zeros(0)
        return float(np.percentile(values, self.percentile)) if values.size else 0.0


@torch.no_grad()
def balance_thresholds(model: VGGTwins, inputs: Tensor, *, statistic: str = "max", percentile: float = 99.9,
                       scale: float = 1.0) -> list[float]:
    """Set each spiking layer's threshold to ``scale`` × the statistic of its input current (spec B.3).

    Layer by layer: the SNN runs on ``inputs`` (T, B, C, H, W) in eval mode as IF neurons (λ = 1, Rathi's
    search), with the earlier layers' thresholds already set to their unscaled statistic, and stops at the layer;
    the statistic is the maximum over (samples, neurons, steps) of the current W·x it receives, or the given
    percentile of the positive ones (values ≤ 0 never make a neuron fire). Only then are all thresholds scaled.
    A percentile over more than 2^24 values per layer uses every k-th value of each step (deterministic).
    Returns the unscaled statistics; the model's ``thresholds`` buffer holds the scaled ones.

    Raises:
        ConfigError: an unknown statistic.
        LavaflowError: a layer that receives no positive current (its threshold would be 0): the ANN is dead there.
    """
    if statistic not in STATISTICS:
        raise ConfigError(f"balance statistic must be one of {STATISTICS}, got {statistic!r}")
    was_training = model.training
    model.eval()
    neuron = model.neuron._replace(leak=1.0)
    found: list[float] = []
    try:
        for layer, name in enumerate(model.layer_names()):
            total = inputs.shape[0] * inputs.shape[1] * _layer_size(model, layer)
            measure = _Statistic(statistic, percentile, total)
            model.layer_inputs(inputs, layer, measure.observe, neuron=neuron)
            value = measure.result()
            if not value > 0:
                raise LavaflowError(
                    f"threshold balancing: layer {name} received no positive input current on the balancing batch, "
                    "so its threshold would be 0; the ANN is dead at that layer: train the ANN longer or with a lower "
                    "learning rate (model.ann_*), or use more balancing samples"
                )
            found.append(value)
            model.thresholds[layer] = value  # unscaled while the later layers are searched
        model.thresholds.copy_(torch.tensor(found, dtype=model.thresholds.dtype) * scale)
    finally:
        model.train(was_training)
    return found


def _layer_size(model: VGGTwins, layer: int) -> int:
    if layer < len(model.convs):
        _, height, width = model.conv_shapes[layer]
        return model.convs[layer].out_channels * height * width
    return model.hidden[layer - len(model.convs)].out_features


# ------------------------------------------------------------------------------------------------ energy
def fan_outs(spec: NetSpec) -> dict[int, np.ndarray]:
    """Per connection index, each source neuron's number of targets (non-zero weights it drives)."""
    sizes = {INPUT: spec.input.size, **{name: population.size for name, population in spec.populations.items()}}
    result = {}
    for index, connection in enumerate(spec.connections):
        synapse = connection.synapse
        if not isinstance(synapse, (Dense, Conv)):
            raise ConfigError(f"energy count: connection {index} holds a {type(synapse).__name__}, not Dense or Conv")
        result[index] = resources.fan_outs(synapse.weight, sizes[connection.source], nonzero_only=True,
                                           conv=synapse if isinstance(synapse, Conv) else None).astype(np.float64)
    return result


def energy(spec: NetSpec, counts: dict[str, np.ndarray], input_events: np.ndarray, ann_macs: int) -> dict[str, float]:
    """Operations per sample from measured activity (spec counts: mean spikes per neuron and sample over T).

    synaptic_operations: Σ over connections of (source spikes × fan-out), the accumulates a spike triggers;
    rate (spike) input counts here too. input_macs: with direct ("current") input, the first layer multiplies
    every non-zero intensity by its weights each step: (non-zero input values × fan-out). neuron_updates: every
    neuron (the output integrator included) updates every step. ann_macs: one ANN pass.
    """
    outs = fan_outs(spec)
    synaptic, input_macs = 0.0, 0.0
    for index, connection in enumerate(spec.connections):
        if connection.source == INPUT:
            operations = float(input_events @ outs[index])
            if spec.input.encoding == "rate":
                synaptic += operations
            else:
                input_macs += operations
        else:
            synaptic += float(counts[connection.source] @ outs[index])
    spikes = sum(float(c.sum()) for c in counts.values())
    updates = float(sum(p.size for p in spec.populations.values()) * spec.time_steps)
    return {"spikes_per_sample": spikes, "synaptic_operations_per_sample": synaptic,
            "input_macs_per_sample": input_macs, "neuron_updates_per_sample": updates,
            "ann_macs_per_sample": float(ann_macs)}


@torch.no_grad()
def measure(model: VGGTwins, loader: DataLoader, encoding: Encoding, time_steps: int, device: str,
            seed: int) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Accuracy, mean spike counts per neuron and sample of every spiking layer, and mean non-zero input values
    per input position and sample, over a data set (eval mode, the evaluation stream of ``evaluate``)."""
    model.eval()
    generator = epoch_generator(seed, -1, EVALUATION_STREAM)
    correct, count = 0, 0
    totals: list[np.ndarray] | None = None
    events = None
    for batch, targets in loader:
        inputs = encode(batch, encoding, time_steps, generator).to(device)
        result = model.run(inputs, record=True)
        correct += int((result.logits.argmax(1) == targets.to(device)).sum())
        count += len(targets)
        sums = [c.sum(0).double().cpu().numpy() for c in result.counts]
        totals = sums if totals is None else [a + b for a, b in zip(totals, sums, strict=True)]
        nonzero = (inputs != 0).sum(0).flatten(1).sum(0).double().cpu().numpy()
        events = nonzero if events is None else events + nonzero
    if totals is None or events is None:
        raise LavaflowError("measuring the hybrid network: the test set is empty")
    return correct / count, [t / count for t in totals], events / count


# ------------------------------------------------------------------------------------------------ the driver
class AnnView(nn.Module):
    """The twins' ANN behind the loop's contract: time-first input (T, B, …) → logits of its mean over time."""

    def __init__(self, twins: VGGTwins) -> None:
        super().__init__()
        self.twins = twins

    def forward(self, inputs: Tensor) -> Tensor:
        return self.twins.ann(inputs.mean(0))


@dataclass
class _Stage:
    """One training stage's network view, optimiser, schedule and settings."""

    name: str
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    settings: TrainConfig
    encoding: Encoding
    time_steps: int


def _ann_settings(config: TrainConfig, model_config: STDBConfig) -> TrainConfig:
    return dataclasses.replace(
        config, optimizer=model_config.ann_optimizer, learning_rate=model_config.ann_learning_rate,
        momentum=model_config.ann_momentum, weight_decay=model_config.ann_weight_decay,
        milestones=model_config.ann_milestones, gamma=model_config.ann_gamma, epochs=max(1, model_config.ann_epochs),
        warmup_iterations=0,
    )


def _stage(name: str, model: VGGTwins, config: TrainConfig, model_config: STDBConfig, encoding: Encoding,
           iterations: int) -> _Stage:
    if name == "ann":  # the ANN sees the intensities themselves: current encoding, one step
        settings, network, steps = _ann_settings(config, model_config), AnnView(model), 1
        encoding = Encoding.CURRENT
    else:
        settings, network, steps = config, model, config.time_steps
    optimizer = make_optimizer(network, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: learning_rate_factor(it, iterations, settings))
    return _Stage(name, network, optimizer, scheduler, settings, encoding, steps)


def train(config: TrainConfig, model_config: STDBConfig, run_dir: RunDir, *, resume: bool = False,
          overwrite: bool = False) -> dict[str, Any]:
    """``pipeline.training.train`` for this method on one worker: lock and check the run dir, then ``train_stages``.

    (Until the shared loop dispatches to a method's own driver, this is the entry point; see the module docstring.)
    """
    threads = thread_count(config.threads, 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with run_dir.lock():
            state = check_run_dir(run_dir, config, resume=resume, overwrite=overwrite)
            return train_stages(config, model_config, METHOD, run_dir, Workers(), threads, state)
    finally:
        torch.set_num_threads(previous)


def train_stages(config: TrainConfig, model_config: STDBConfig, method: Method, run_dir: RunDir, workers: Workers,
                 threads: int, state: dict[str, Any] | None) -> dict[str, Any]:
    """The three stages into ``run_dir`` (the signature of pipeline.training's per-run body), resuming ``state``.

    Raises:
        ConfigError: more than one worker (the stages run on one), or an encoding the data does not suit.
        LavaflowError: a checkpoint of another network, a dead ANN layer, or a diverging loss.
    """
    if workers.world_size > 1:
        raise ConfigError("the stdb method trains on one worker; run it without torchrun")
    train_set, test_set, info = load_data(config.data, time_steps=config.time_steps, data_dir=config.data_dir,
                                          limit=config.limit, seed=config.seed)
    if info.kind is not Kind.IMAGE:
        raise ConfigError(f"the stdb method trains VGG twins on images; {info.name} holds {info.kind.value} data "
                          "(choose digits, mnist5k or fashion-mnist)")
    encoding = resolve_encoding(config, info)
    model = method.build(model_config, info.input_shape, info.num_classes, config.time_steps,
                         torch.Generator().manual_seed(config.seed)).to(config.device)
    sampler = DistributedSampler(train_set, 1, 0, shuffle=True, seed=config.seed, drop_last=False)
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler)
    test_loader = DataLoader(test_set, batch_size=config.test_batch_size)
    iterations = len(loader)
    total_epochs = model_config.ann_epochs + config.epochs
    stage_name, history, conversion, epoch = "ann", [], {}, 0
    stage = _stage("ann", model, config, model_config, encoding, iterations)
    if state is not None:
        stage_name, epoch = str(state.get("stage", "")), int(state["epoch"])
        if stage_name not in STAGES:
            raise LavaflowError(f"the checkpoint {run_dir.file(RunDir.CHECKPOINT)} holds no stdb stage; resume it "
                                "with its own method, or train into another --out directory")
        stage = _stage("ann" if stage_name == "ann" else "stdb", model, config, model_config, encoding, iterations)
        restore_checkpoint(run_dir, state, model, stage.optimizer, stage.scheduler)
        apply_hyperparameters(stage.optimizer, stage.scheduler, stage.settings, iterations)  # a resume may lower lr
        history = [{key: row[key] for key in (*HISTORY_KEYS, "stage")} for row in state["history"]]
        conversion = {key: float(value) for key, value in state.get("conversion", {}).items()}
    run_dir.clear(keep=(RunDir.CHECKPOINT, RunDir.HISTORY) if state is not None else ())
    run_dir.write_config(config_to_yaml(config))
    earlier = {int(row.get("epoch", -1)): row.get("epoch_seconds", 0.0) for row in run_dir.read_history()}
    seconds = [float(earlier.get(int(row["epoch"]), 0.0)) for row in history]

    def checkpoint() -> None:
        run_dir.write_history([{**row, "epoch_seconds": s} for row, s in zip(history, seconds, strict=True)])
        run_dir.save_checkpoint({"method": config.method, "model": model.state_dict(),
                                 "optimizer": stage.optimizer.state_dict(), "scheduler": stage.scheduler.state_dict(),
                                 "epoch": epoch, "history": history, "stage": stage_name, "conversion": conversion})

    while epoch < total_epochs or stage_name == "ann":
        if stage_name == "ann" and epoch >= model_config.ann_epochs:
            started = time.perf_counter()
            conversion = _convert(model, model_config, config, train_set, test_set, test_loader, encoding)
            conversion["conversion_seconds"] = time.perf_counter() - started
            stage_name, stage = "converted", _stage("stdb", model, config, model_config, encoding, iterations)
            checkpoint()
            continue
        loss, accuracy, spent = _epoch(stage, epoch, loader, sampler, config, run_dir, len(history))
        test_loss, test_accuracy = evaluate(stage.network, test_loader, stage.encoding, stage.time_steps,
                                            config.device, config.seed)
        learning_rate = stage.optimizer.param_groups[0]["lr"]
        stage_name = stage.name
        epoch += 1
        history.append(dict(zip((*HISTORY_KEYS, "stage"), (epoch, loss, accuracy, test_loss, test_accuracy,
                                                           learning_rate, STAGE_CODES[stage.name]), strict=True)))
        seconds.append(spent)
        checkpoint()
        log(workers, f"{stage.name} epoch {epoch}/{total_epochs}: loss {loss:.4f}  train {accuracy:.2%}  test "
                     f"{test_accuracy:.2%}  ({spent:.1f} s)")
    return _finish(model, model_config, config, method, run_dir, info, train_set, test_set, encoding, history,
                   seconds, conversion, threads)


def _epoch(stage: _Stage, epoch: int, loader: DataLoader, sampler: DistributedSampler, config: TrainConfig,
           run_dir: RunDir, completed: int) -> tuple[float, float, float]:
    """One epoch of ``stage`` with the loop's seeding; returns (mean loss, accuracy, wall seconds)."""
    torch.manual_seed(derived_seed(config.seed, epoch, GLOBAL_STREAM))  # dropout masks
    sampler.set_epoch(epoch)
    encoder_rng = epoch_generator(config.seed, epoch, ENCODER_STREAM)
    stage.network.train()
    started = time.perf_counter()
    loss_sum, correct, count = 0.0, 0, 0
    for iteration, (batch, targets) in enumerate(progress(loader, Workers(), f"{stage.name} epoch {epoch + 1}")):
        inputs = encode(batch, stage.encoding, stage.time_steps, encoder_rng).to(config.device)
        try:
            loss, right = train_step(stage.network, stage.optimizer, inputs, targets.to(config.device))
        except Diverged as diverged:
            raise divergence(run_dir, stage.settings, diverged.loss, epoch, iteration, len(loader),
                              stage.optimizer.param_groups[0]["lr"], completed) from None
        stage.scheduler.step()
        loss_sum, correct, count = loss_sum + loss * len(targets), correct + right, count + len(targets)
    return loss_sum / max(1, count), correct / max(1, count), time.perf_counter() - started


def _convert(model: VGGTwins, model_config: STDBConfig, config: TrainConfig, train_set: Dataset, test_set: Dataset,
             test_loader: DataLoader, encoding: Encoding) -> dict[str, float]:
    """ANN accuracy, threshold balancing, converted accuracy at T and at the long T (the conversion stage)."""
    _, ann_accuracy = evaluate(AnnView(model), test_loader, Encoding.CURRENT, 1, config.device, config.seed)
    generator = torch.Generator().manual_seed(derived_seed(config.seed, model_config.ann_epochs, BALANCE_STREAM))
    chosen = torch.randperm(len(train_set), generator=generator)[: model_config.balance_samples].tolist()
    images = torch.stack([train_set[i][0] for i in chosen])
    inputs = encode(images, encoding, model_config.balance_time_steps, generator).to(config.device)
    statistics = balance_thresholds(model, inputs, statistic=model_config.balance_statistic,
                                    percentile=model_config.balance_percentile, scale=model_config.threshold_scale)
    _, converted = evaluate(model, test_loader, encoding, config.time_steps, config.device, config.seed)
    samples = model_config.long_test_samples or len(test_set)
    long_set = Subset(test_set, range(min(samples, len(test_set))))
    long_loader = DataLoader(long_set, batch_size=config.test_batch_size)
    _, converted_long = evaluate(model, long_loader, encoding, model_config.long_time_steps, config.device,
                                 config.seed)
    result = {"ann_test_accuracy": ann_accuracy, "converted_test_accuracy": converted,
              "converted_long_test_accuracy": converted_long, "long_test_samples": float(len(long_set))}
    for name, value, threshold in zip(model.layer_names(), statistics, model.thresholds.tolist(), strict=True):
        result[f"balanced_input_{name}"] = value
        result[f"threshold_{name}"] = threshold
    log(Workers(), f"converted: ANN {ann_accuracy:.2%}, SNN {converted:.2%} at T = {config.time_steps}, "
                   f"{converted_long:.2%} at T = {model_config.long_time_steps} ({len(long_set)} test samples)")
    return result


def _finish(model: VGGTwins, model_config: STDBConfig, config: TrainConfig, method: Method, run_dir: RunDir,
            info: Any, train_set: Dataset, test_set: Dataset, encoding: Encoding, history: list[dict[str, float]],
            seconds: list[float], conversion: dict[str, float], threads: int) -> dict[str, Any]:
    """Hybrid accuracy and activity on the test set, energy counts, the NetSpec and metrics.json."""
    test_loader = DataLoader(test_set, batch_size=config.test_batch_size)
    started = time.perf_counter()
    hybrid, counts, input_events = measure(model, test_loader, encoding, config.time_steps, config.device,
                                           config.seed)
    measure_seconds = time.perf_counter() - started
    spec = method.to_netspec(model, model_config, info.input_shape, encoding.value, config.time_steps)
    spec = NetSpec(spec.input, spec.populations, spec.connections, spec.readout, spec.time_steps,
                   {**spec.metadata, "method": config.method, "data": config.data})
    activity = energy(spec, dict(zip(model.layer_names(), counts, strict=True)), input_events, model.ann_macs())
    if history:
        plot_training(history, run_dir.plots / "training.png", title=f"{config.method} on {config.data}",
                      milestones=[model_config.ann_epochs])
    stdb_rows = [row for row in history if row["stage"] == STAGE_CODES["stdb"]]
    final = stdb_rows[-1] if stdb_rows else {}
    stdb_seconds = sum(s for row, s in zip(history, seconds, strict=True) if row["stage"] == STAGE_CODES["stdb"])
    ann_seconds = sum(s for row, s in zip(history, seconds, strict=True) if row["stage"] == STAGE_CODES["ann"])
    run_dir.update_metrics({
        "method": config.method, "data": config.data, "encoding": encoding.value, "time_steps": config.time_steps,
        "epochs": len(stdb_rows), "ann_epochs": len(history) - len(stdb_rows), "limit": config.limit,
        "train_samples": len(train_set), "test_samples": len(test_set),
        "train_accuracy": final.get("train_accuracy"), "train_loss": final.get("train_loss"),
        "test_loss": final.get("test_loss"), "test_accuracy": hybrid, "hybrid_test_accuracy": hybrid,
        "best_test_accuracy": max((row["test_accuracy"] for row in stdb_rows), default=None),
        "long_time_steps": model_config.long_time_steps, "neuron": model_config.neuron,
        "architecture": " ".join(str(item) for item in model_config.features)
        + "".join(f" fc{width}" for width in model_config.classifier),
        **conversion, **activity,
        "ann_train_seconds": ann_seconds, "stdb_train_seconds": stdb_seconds,
        "train_seconds": ann_seconds + stdb_seconds + conversion.get("conversion_seconds", 0.0),
        "measure_seconds": measure_seconds,
        "num_parameters": spec.num_parameters, "num_neurons": sum(p.size for p in spec.populations.values()),
        "workers": 1, "threads": threads,
    })
    run_dir.save_netspec(spec)  # last: it binds the NetSpec to the metrics (netspec_sha256)
    return run_dir.read_metrics()


# The staged driver rides on the Method once the registry has a field for a method's own driver (``train``, see
# the lead's note in the issue); until then ``stdb.train`` is the entry point and the shared loop must not run it.
METHOD = Method(
    name="stdb",
    model_config=STDBConfig,
    build=build,
    to_netspec=to_netspec,
    training_defaults={"optimizer": "adam", "learning_rate": 1e-4, "weight_decay": 5e-4, "time_steps": 32,
                       "epochs": 10},
    description="ANN → SNN conversion by threshold balancing, then STDB fine-tuning (Rathi et al. 2020)",
    train=train_stages,
)
