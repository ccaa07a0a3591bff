"""IDE: train a feedback SNN by implicit differentiation on its equilibrium (Xiao et al., NeurIPS 2021).

Per mini-batch (spec §2.6): simulate the SNN for T steps without a graph and measure the last layer's rates a;
the readout reads a; backward solves (I − Jᵀ)β = ∂L/∂a at a and sends β through one evaluation of the fixed-point
map f (``models.feedback``) into every loop parameter (``pipeline.implicit``). Memory is independent of T.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lavaflow.models.errors import ConfigError
from lavaflow.models.feedback import FeedbackArchitecture, FeedbackSNN, feedback_netspec
from lavaflow.models.input_norm import (
    InputMoments,
    dense_statistics,
    drive_statistics,
    input_moments,
    store_exact_statistics,
)
from lavaflow.models.netspec import NetSpec
from lavaflow.models.neurons import SoftResetParams, mean_input
from lavaflow.pipeline.implicit import implicit_backward
from lavaflow.pipeline.methods import Method
from lavaflow.pipeline.solvers import SOLVERS, get_solver

ARCHITECTURES = {"fc": "dense", "conv": "conv"}
BATCH_NORM_STATISTICS = ("running", "exact")


@dataclass(frozen=True)
class IDEConfig:
    """The IDE network (the ``model:`` config section). Defaults are the reference code's (spec §2.5-2.7).

    Attributes:
        architecture: "fc" (dense layers, e.g. F400) or "conv" (convolutions, e.g. F64C5).
        layer_widths: neurons ("fc") or channels ("conv") of each layer in the feedback loop. One width gives the
            single-layer FSNN (feedback W: hidden → hidden); more give the multi-layer FSNN, whose feedback runs
            from the last layer back to the first (spec §2.3).
        kernel_size, stride, padding: the "conv" input layer F (F64C5: 5, 2, 2).
        loop_kernel_size: "conv" in-loop and feedback kernels (stride 1, "same" padding).
        threshold: θ; a spike subtracts θ (reset potential 0).
        leak: λ, the voltage kept per step: 1 gives IF, below 1 LIF (rates are then λ-weighted).
        dropout: variational dropout rate on every connection in training.
        solver, max_iterations, tolerance: the backward fixed-point solve (``pipeline.solvers``; tolerance is
            the relative residual ‖Jᵀβ + g − β‖ / ‖Jᵀβ + g‖ per sample).
        batch_tolerance: if > 0, the solve also stops once the whole batch's absolute residual is at most
            batch_tolerance·√(B·N), the reference code's rule (2e-10; spec §2.6); 0 leaves only ``tolerance``.
        spectral_norm_bound: the feedback weight's spectral norm is at most this; below θ keeps W/θ contractive
            (1 = θ/2, the reference code's, by default; the Fashion-MNIST preset measured 1.5 better).
        batch_norm: BatchNorm on the input layer (folded into F and the bias in the NetSpec).
        batch_norm_momentum: weight of each training batch in BatchNorm's running statistics, which evaluation
            (and the NetSpec) uses. The reference code updates them twice per mini-batch with torch's 0.1 (once
            in the simulation, once in f; spec §6 item 15), i.e. 1 − 0.9² = 0.19 per batch; the Fashion-MNIST
            preset uses 0.5 (its comments give the measurements). The default, torch's 0.1, leaves other runs as
            they were.
        batch_norm_statistics: what evaluation (and the NetSpec) normalises with. "running": the running
            statistics as training left them. "exact": after every epoch the training loop recomputes them once,
            exactly, from the whole (un-augmented) training set through the input layer (``refresh_statistics``);
            they no longer lag or jitter with the last few batches. Training itself always uses batch statistics.
    """

    architecture: str = "fc"
    layer_widths: tuple[int, ...] = (400,)
    kernel_size: int = 5
    stride: int = 2
    padding: int = 2
    loop_kernel_size: int = 5
    threshold: float = 2.0
    leak: float = 1.0
    dropout: float = 0.2
    solver: str = "broyden"
    max_iterations: int = 30
    tolerance: float = 1e-4
    batch_tolerance: float = 0.0
    spectral_norm_bound: float = 1.0
    batch_norm: bool = True
    batch_norm_momentum: float = 0.1
    batch_norm_statistics: str = "running"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"model.architecture {self.architecture!r} is not one of {sorted(ARCHITECTURES)}")
        if self.batch_norm_statistics not in BATCH_NORM_STATISTICS:
            raise ConfigError(f"model.batch_norm_statistics {self.batch_norm_statistics!r} is not one of "
                              f"{list(BATCH_NORM_STATISTICS)}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"model.solver {self.solver!r} is not one of {sorted(SOLVERS)}")
        if not self.layer_widths or min(self.layer_widths) < 1:
            raise ConfigError(f"model.layer_widths needs at least one positive width, got {self.layer_widths}")
        checks = {
            "threshold": self.threshold > 0,
            "leak": 0 < self.leak <= 1,
            "dropout": 0 <= self.dropout < 1,
            "max_iterations": self.max_iterations >= 1,
            "tolerance": self.tolerance >= 0,
            "batch_tolerance": self.batch_tolerance >= 0,
            "spectral_norm_bound": self.spectral_norm_bound > 0,
            "batch_norm_momentum": 0 < self.batch_norm_momentum <= 1,
            "kernel_size": self.kernel_size >= 1 and self.stride >= 1 and self.padding >= 0,
            "loop_kernel_size": self.loop_kernel_size >= 1 and self.loop_kernel_size % 2 == 1,
        }
        bounds = {"threshold": "> 0", "leak": "in (0, 1]", "dropout": "in [0, 1)", "max_iterations": "≥ 1",
                  "tolerance": "≥ 0", "batch_tolerance": "≥ 0", "spectral_norm_bound": "> 0",
                  "kernel_size": "≥ 1 (stride ≥ 1, padding ≥ 0)",
                  "loop_kernel_size": "odd", "batch_norm_momentum": "in (0, 1]"}
        for name, valid in checks.items():
            if not valid:
                raise ConfigError(f"model.{name} = {getattr(self, name)!r} must be {bounds[name]}")
        if self.spectral_norm_bound >= self.threshold:
            raise ConfigError(f"model.spectral_norm_bound = {self.spectral_norm_bound!r} must be below model.threshold "
                              f"= {self.threshold!r}: at ‖W‖ ≥ θ the loop a ↦ σ((W·a + F·x)/θ) need not be "
                              f"contractive, and the equilibrium and the backward solve may not converge")


class IDENetwork(nn.Module):
    """A FeedbackSNN whose forward attaches IDE's implicit gradient in training.

    ``forward(inputs)`` takes time-first input (T, B, *input_shape) and returns logits (B, classes). The
    implicit gradient is attached only in training mode with grad enabled; evaluation is the plain SNN.
    """

    def __init__(self, network: FeedbackSNN, config: IDEConfig) -> None:
        super().__init__()
        self.network = network
        self.batch_norm_statistics = config.batch_norm_statistics
        self._input_moments: InputMoments | None = None  # of the training set, kept by refresh_statistics
        self.solver = get_solver(config.solver, max_iterations=config.max_iterations, tolerance=config.tolerance,
                                 batch_tolerance=config.batch_tolerance)

    def forward(self, inputs: Tensor) -> Tensor:
        equilibrium = self.network.equilibrium(inputs)
        rates = equilibrium.rates
        if self.training and torch.is_grad_enabled():
            rates = implicit_backward(equilibrium.rate_map, rates, self.solver,
                                      transposed_jacobian=equilibrium.transposed_jacobian)
        return self.network.readout(rates.flatten(1))

    def refresh_statistics(self, inputs: Iterable[Tensor]) -> None:
        """With batch_norm_statistics "exact", set BatchNorm's running statistics to those of ``inputs``.

        The training loop calls this after every epoch with the training set (time-first batches, the same
        samples and encoding draws every time), before it evaluates and saves; the statistics are then exact
        for the current weights (export folds them as ever). For dense input layers the inputs' mean and
        covariance are computed at the first call and kept (``InputMoments``): later calls cost one 400×784×784
        product instead of a pass over the data.
        """
        norm = self.network.input_norm
        if self.batch_norm_statistics != "exact" or norm is None:
            return
        network = self.network
        drive = network.input_drive if network.architecture.kind == "conv" else None
        self._input_moments = store_exact_statistics(norm, network.input_weight, network.input_bias,
                                                     _mean_inputs(network, inputs), drive, self._input_moments)


def _mean_inputs(network: FeedbackSNN, inputs: Iterable[Tensor]) -> Iterator[Tensor]:
    """Each batch's λ-weighted mean input (B, *input_shape), as FeedbackSNN.equilibrium feeds F with it."""
    for batch in inputs:
        yield mean_input(batch, network.neuron.leak, network.input_weight.dtype)


@torch.no_grad()
def input_statistics(network: FeedbackSNN, inputs: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-channel mean and unbiased variance of the input layer's drive F·x + b over every batch of ``inputs``.

    The drive is the one training normalises: F applied to each sample's λ-weighted mean input (spec §2.6), so
    the result is what BatchNorm's batch statistics would give on one batch holding all the samples.
    """
    if network.architecture.kind != "conv":
        return dense_statistics(network.input_weight, network.input_bias, input_moments(_mean_inputs(network, inputs)))
    return drive_statistics(network.input_drive(average) for average in _mean_inputs(network, inputs))


def architecture_of(config: IDEConfig, input_shape: tuple[int, ...], num_classes: int) -> FeedbackArchitecture:
    """The FeedbackArchitecture an IDEConfig describes for a data set."""
    try:
        return FeedbackArchitecture(
            kind=ARCHITECTURES[config.architecture], input_shape=tuple(input_shape),
            layer_widths=tuple(config.layer_widths), num_classes=num_classes, kernel_size=config.kernel_size,
            stride=config.stride, padding=config.padding, loop_kernel_size=config.loop_kernel_size)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None


def neuron_of(config: IDEConfig) -> SoftResetParams:
    """IDE's neurons: fire at v ≥ θ, subtract θ (reset potential 0), keep λ of the voltage per step."""
    return SoftResetParams(threshold=config.threshold, reset_potential=0.0, voltage_decay=1.0 - config.leak)


def build(config: IDEConfig, input_shape: tuple[int, ...], num_classes: int, time_steps: int,
          generator: torch.Generator) -> IDENetwork:
    """Build an IDE network; ``generator`` draws its initial weights and its dropout masks."""
    if time_steps < 1:
        raise ConfigError(f"time_steps must be at least 1, got {time_steps}")
    network = FeedbackSNN(architecture_of(config, input_shape, num_classes), neuron=neuron_of(config),
                          dropout=config.dropout, spectral_norm_bound=config.spectral_norm_bound,
                          batch_norm=config.batch_norm, batch_norm_momentum=config.batch_norm_momentum,
                          generator=generator)
    return IDENetwork(network, config)


def to_netspec(module: nn.Module, config: IDEConfig, input_shape: tuple[int, ...], encoding: str,
               time_steps: int) -> NetSpec:
    """Describe a trained IDE network as a NetSpec (BatchNorm folded, dropout off; see feedback_netspec)."""
    network = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    if not isinstance(network, IDENetwork):
        raise TypeError(f"expected an IDENetwork built by pipeline.ide.build, got {type(network).__name__}")
    if tuple(network.network.architecture.input_shape) != tuple(input_shape):
        raise ConfigError(f"input shape {tuple(input_shape)} differs from the network's "
                          f"{network.network.architecture.input_shape}")
    metadata = {"method": "ide", "architecture": config.architecture, "solver": config.solver}
    return feedback_netspec(network.network, encoding=encoding, time_steps=time_steps, metadata=metadata)


METHOD = Method(
    name="ide",
    model_config=IDEConfig,
    build=build,
    to_netspec=to_netspec,
    training_defaults={"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                       "milestones": (30, 60, 90), "gamma": 0.1, "epochs": 100, "batch_size": 128},
    description="Implicit differentiation on the equilibrium of a feedback SNN (Xiao et al. 2021): memory "
                "independent of T; IF/LIF soft-reset neurons, θ = 2.",
    refresh_statistics=IDENetwork.refresh_statistics,
)
