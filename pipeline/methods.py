"""The registry of training methods: ``--method X`` finds ``METHODS[X]``.

A method says how to build its torch network and how to describe the trained network as a NetSpec; the shared
loop (pipeline.training) owns optimiser, schedule, checkpoints, progress and DDP. A network's ``forward`` takes
time-first input (T, B, *input_shape) and returns logits (B, classes); the loop minimises cross-entropy on them.
Methods whose gradient is not plain backprop (IDE's implicit differentiation) hide that inside ``forward`` with
custom autograd functions, so the loop and DDP never need to know.

A module that draws random numbers from a generator of its own (IDE's dropout masks) exposes
``reseed_random_streams(seed: int)``: the loop restarts it every epoch from (seed, epoch, worker), which keeps a
resumed run identical to an uninterrupted one without putting generator states into checkpoints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from lavaflow.models.errors import ConfigError
from lavaflow.models.netspec import NetSpec


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the ``--method`` name.
        model_config: a frozen dataclass of the method's network hyper-parameters (the ``model:`` config section).
        build: (model_config, input_shape, num_classes, time_steps, generator) -> torch.nn.Module.
        to_netspec: (trained module, model_config, input_shape, encoding, time_steps) -> NetSpec.
        training_defaults: overrides of the shared loop's defaults (optimiser, learning rate, ...) for this method.
        description: one line for listings.
        train: a staged method's own driver, or None for the shared loop.
        initialise: (built module, first training batch) -> None, a data-dependent initialisation (SPIDE's
            ``data_init``); None: the built weights are the start.
        refresh_statistics: (module, training batches) -> None, recomputes what evaluation uses from the training
            set after every epoch (IDE's exact BatchNorm statistics); None: nothing to recompute.
    """

    name: str
    model_config: type
    build: Callable[..., torch.nn.Module]
    to_netspec: Callable[..., NetSpec]
    training_defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # A staged method's own driver (stdb: ANN, conversion, fine-tuning), called by pipeline.training in place of the
    # shared loop's per-run body with the same arguments; None: the shared loop trains it.
    train: Callable[..., dict[str, Any]] | None = None
    # Data-dependent initialisation from the run's first training batch (time-first, encoded as the loop feeds it),
    # called once on a fresh run, before training and before DDP's wrap (which copies rank 0's weights to every
    # worker); a resumed run skips it, its weights come from the checkpoint.
    initialise: Callable[[torch.nn.Module, torch.Tensor], None] | None = None
    # After every epoch, before evaluation and the checkpoint: the module recomputes evaluation-time state from the
    # training set (time-first batches, encoded as evaluation encodes them, the same draws every epoch).
    refresh_statistics: Callable[[torch.nn.Module, Iterable[torch.Tensor]], None] | None = None


# name -> module defining METHOD; imported lazily so `lavaflow --help` stays fast.
METHOD_MODULES: dict[str, str] = {
    "bptt": "lavaflow.pipeline.bptt",
    "ide": "lavaflow.pipeline.ide",
    "spide": "lavaflow.pipeline.spide",
    "stdb": "lavaflow.pipeline.stdb",
    "strsbp": "lavaflow.pipeline.strsbp",
}


class RuleGradient(torch.autograd.Function):
    """Forward: ``output`` unchanged. Backward: the parameters' gradients from ``rule(grad_output)`` in place of
    backprop through the forward pass: how SPIDE's spike-based update and ST-RSBP's spike-train level gradients
    reach the shared loop's optimiser (``RuleGradient.apply(output, rule, *parameters)``; ``rule`` returns one
    gradient per parameter, in their order)."""

    @staticmethod
    def forward(ctx: Any, output: torch.Tensor, rule: Callable, *parameters: torch.Tensor) -> torch.Tensor:
        ctx.rule = rule
        return output.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rule, ctx.rule = ctx.rule, None  # drop the forward's tensors as soon as they have served
        return (None, None, *rule(grad_output))


def get_method(name: str) -> Method:
    """Return the registered method called ``name``; ConfigError lists the valid names otherwise."""
    if name not in METHOD_MODULES:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHOD_MODULES))}")
    method = importlib.import_module(METHOD_MODULES[name]).METHOD
    if not isinstance(method, Method):
        raise TypeError(f"{METHOD_MODULES[name]}.METHOD is not a Method")
    return method
