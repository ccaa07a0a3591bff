"""The names the command line offers, as plain constants.

Building the parser imports only this module, so ``lavaflow --help`` never pays for torch or Lava (a test holds
these lists equal to the registries they mirror: deploy.run_config.BACKENDS and pipeline.benchmarks.BENCHMARKS).
"""

from __future__ import annotations

SIMULATE_BACKENDS: tuple[str, ...] = ("torch", "lava-float", "lava-fixed", "loihi2")
"""``torch`` is the reference simulator; the others are deploy.run_config.BACKENDS."""

DEFAULT_BACKENDS: tuple[str, ...] = ("torch", "lava-float", "lava-fixed")
"""What ``simulate`` runs without --backend: everything this machine can run, side by side."""

BENCHMARKS: dict[str, str] = {
    "ide-memory": "peak memory and time per batch, IDE vs BPTT, T = 5, 30, 100",
    "lava-throughput": "samples/s: plain Lava graph, fused, fused + batched, raw numpy",
    "ide-fmnist": "IDE F400 on full Fashion-MNIST, the paper's recipe, accuracy per epoch",
    "lava-conv": "samples/s of a 64→64 3×3 conv on 32×32×64 in Lava: fused, plain graph, float, fixed",
}
"""Benchmark name → one line of description."""
