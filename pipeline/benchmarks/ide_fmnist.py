"""Benchmark: IDE F400, T = 5 on the full Fashion-MNIST with the preset recipe (45 epochs; quick: 3 epochs).

Each seed trains into its own resumable run dir (``runs/bench-ide-fmnist[-quick][-<config>]-seed<n>``: a killed
benchmark continues where it stopped), and the report gives, per seed and over the seeds, the final and best test
accuracy, the mean and spread, the seconds per epoch and the torch thread count, beside the paper's figures.

Seeds and the network come from the environment, since ``lavaflow bench`` takes no options beyond --quick:
``LAVAFLOW_IDE_FMNIST_SEEDS`` (comma-separated, default ``0``) and ``LAVAFLOW_IDE_FMNIST_CONFIG`` (a --config
YAML laid over the preset, e.g. ``pipeline/configs/ide-fashion-mnist-lif.yaml`` for the LIF variant). The same
options are flags of ``python -m lavaflow.pipeline.benchmarks.ide_fmnist``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from lavaflow.models.errors import ConfigError

SEEDS_ENV = "LAVAFLOW_IDE_FMNIST_SEEDS"
CONFIG_ENV = "LAVAFLOW_IDE_FMNIST_CONFIG"
PAPER = {1.0: "90.04 ± 0.09 % (IF)", 0.95: "90.07 ± 0.10 % (LIF λ = 0.95)"}  # README of pkuxmq/IDE-FSNN


@dataclass(frozen=True)
class SeedRun:
    """One seed's training, as its run dir records it."""

    seed: int
    run_dir: str
    epochs: int
    final_accuracy: float
    best_accuracy: float
    best_epoch: int
    seconds_per_epoch: float
    threads: int
    leak: float
    history: tuple[dict[str, float], ...]


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` → (0, 1, 2); ConfigError names the variable for anything else."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{SEEDS_ENV} must be comma-separated integer seeds such as '0,1,2', got {text!r}") from None
    if not seeds:
        raise ConfigError(f"{SEEDS_ENV} names no seed; give e.g. '0' or '0,1,2'")
    return seeds


def run_dir_for(seed: int, quick: bool, config_file: str | None) -> str:
    """The resumable run dir of one seed (the config file's stem keeps variants apart)."""
    variant = f"-{Path(config_file).stem}" if config_file else ""
    return f"runs/bench-ide-fmnist{'-quick' if quick else ''}{variant}-seed{seed}"


def bench_ide_fmnist(quick: bool = False, seeds: tuple[int, ...] | None = None, config_file: str | None = None,
                     epochs: int | None = None) -> list[SeedRun]:
    """Train (or resume) one run per seed and read back what each reached."""
    from lavaflow.pipeline.config import resolve_config
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.training import thread_count, train

    seeds = seeds if seeds is not None else parse_seeds(os.environ.get(SEEDS_ENV, "0"))
    config_file = config_file if config_file is not None else os.environ.get(CONFIG_ENV) or None
    epochs = epochs if epochs is not None else (3 if quick else None)
    runs = []
    for seed in seeds:
        config, model_config, method = resolve_config("ide", "fashion-mnist", file=config_file,
                                                      flags={"epochs": epochs, "seed": seed})
        run_dir = RunDir.create(run_dir_for(seed, quick, config_file))
        train(config, model_config, method, run_dir, resume=True)
        history = tuple(run_dir.load_checkpoint()["history"])
        seconds = [float(row.get("epoch_seconds", 0.0)) for row in run_dir.read_history()]
        accuracies = [float(row["test_accuracy"]) for row in history]
        best = max(range(len(accuracies)), key=accuracies.__getitem__)
        runs.append(SeedRun(seed=seed, run_dir=str(run_dir.path), epochs=len(history),
                            final_accuracy=accuracies[-1], best_accuracy=accuracies[best],
                            best_epoch=int(history[best]["epoch"]),
                            seconds_per_epoch=statistics.fmean(seconds) if seconds else float("nan"),
                            threads=thread_count(config.threads, 1), leak=float(model_config.leak),
                            history=history))
    return runs


def _spread(values: list[float]) -> str:
    """Mean ± sample standard deviation and the range, in percent (the deviation needs two seeds)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2%} (one seed: no spread)"
    return (f"{mean:.2%} ± {statistics.stdev(values):.2%} (min {min(values):.2%}, max {max(values):.2%}, "
            f"{len(values)} seeds)")


def describe(runs: list[SeedRun]) -> str:
    """The per-epoch table of each seed, then final and best accuracy over the seeds, s/epoch and threads."""
    if not runs:
        return "no runs"
    neuron = "IF" if runs[0].leak == 1.0 else f"LIF λ = {runs[0].leak:g}"
    lines = []
    for run in runs:
        lines.append(f"IDE F400 {neuron} T=5 on Fashion-MNIST, seed {run.seed} (run dir {run.run_dir}; resumable)")
        lines.append(f"{'epoch':>5} {'train acc':>10} {'test acc':>9}")
        lines += [f"{int(row['epoch']):>5} {row['train_accuracy']:>10.2%} {row['test_accuracy']:>9.2%}"
                  for row in run.history]
    lines.append("")
    lines.append(f"{'seed':>4} {'epochs':>6} {'final':>7} {'best':>7} {'best at':>7} {'s/epoch':>8} {'threads':>7}")
    lines += [f"{run.seed:>4} {run.epochs:>6} {run.final_accuracy:>7.2%} {run.best_accuracy:>7.2%} "
              f"{run.best_epoch:>7} {run.seconds_per_epoch:>8.1f} {run.threads:>7}" for run in runs]
    lines.append(f"final test accuracy: {_spread([run.final_accuracy for run in runs])}")
    lines.append(f"best test accuracy:  {_spread([run.best_accuracy for run in runs])}")
    lines.append(f"s/epoch {statistics.fmean(run.seconds_per_epoch for run in runs):.1f} with "
                 f"{runs[0].threads} torch thread(s); paper: {PAPER.get(runs[0].leak, 'no figure')} after 100 epochs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"seeds (default ${SEEDS_ENV} or 0)")
    parser.add_argument("--config", default=None, help="a --config YAML over the preset (e.g. the LIF preset)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="3 epochs into separate run dirs")
    args = parser.parse_args(argv)
    seeds = tuple(args.seeds) if args.seeds else None
    print(describe(bench_ide_fmnist(args.quick, seeds, args.config, args.epochs)))


if __name__ == "__main__":
    main()
