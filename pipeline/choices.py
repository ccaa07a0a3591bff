"""The names the command line offers, as plain constants, and its argparse value types.

Building the parser imports only this module, so ``lavaflow --help`` never pays for torch or Lava (a test holds
these lists equal to the registries they mirror: deploy.run_config.BACKENDS, pipeline.methods.METHOD_MODULES and
pipeline.benchmarks.BENCHMARKS).
"""

from __future__ import annotations

import argparse

SIMULATE_BACKENDS: tuple[str, ...] = ("torch", "lava-float", "lava-fixed", "loihi2")
"""``torch`` is the reference simulator; the others are deploy.run_config.BACKENDS."""

DEFAULT_BACKENDS: tuple[str, ...] = ("torch", "lava-float", "lava-fixed")
"""What ``simulate`` runs without --backend: everything this machine can run, side by side."""

METHODS: dict[str, str] = {
    "bptt": "surrogate-gradient BPTT, lava-dl slayer CUBA",
    "ide": "implicit differentiation on the equilibrium of a feedback SNN",
    "spide": "spike-only training of a feedback SNN: ternary backward equilibrium, local rate × rate update",
    "stdb": "hybrid ANN→SNN conversion (threshold balancing) + spike-timing-dependent backprop fine-tuning",
    "strsbp": "spike-train level recurrent backprop (ST-RSBP) for recurrent CUBA SNNs",
}
"""Training method → one line of description (pipeline.methods.METHOD_MODULES has the same names)."""

BENCHMARKS: dict[str, str] = {
    "ide-memory": "peak memory and time per batch, IDE vs BPTT, T = 5, 30, 100",
    "lava-throughput": "samples/s: plain Lava graph, fused, fused + batched, raw numpy",
    "ide-fmnist": "IDE F400 on full Fashion-MNIST, the preset's recipe: final/best accuracy, mean ± sd over seeds",
    "lava-conv": "samples/s of a 64→64 3×3 conv on 32×32×64 in Lava: fused, plain graph, float, fixed",
    "netx-mnist": "img/s and accuracy of Intel's MNIST netx network: lavaflow lava-fixed fused vs lava-dl netx",
    "spide-lava": "samples/s of SPIDE training in the Lava graph (fused, plain) vs torch SPIDE; F-MNIST F400 epoch",
    "stdb": "ANN→SNN conversion + STDB on Fashion-MNIST: ANN, converted (long/small T), hybrid, no-ANN-stage SNN",
    "strsbp": "ST-RSBP vs BPTT (same sizes and T): Fashion-MNIST 400-R400 and FSDD test accuracy, wall time, s/epoch",
}
"""Benchmark name → one line of description."""


def positive_int(text: str) -> int:
    """argparse type: a count of at least 1 (0 or a negative count is a mistake, not "all")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
