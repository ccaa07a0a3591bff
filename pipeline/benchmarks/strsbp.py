"""Benchmark: ST-RSBP against the BPTT baseline on the same layer sizes and T, on Fashion-MNIST and FSDD.

Each run trains into its own resumable run dir (runs/bench-strsbp-<data>-<method>[-quick]) with the method's preset
for the data set; BPTT gets ST-RSBP's hidden sizes, T and epochs (its slayer blocks have no recurrent connections,
so "R400" is a dense 400 there). The table prints test accuracy (final and best), epochs, wall time and s/epoch
beside the paper's figure and the issue's goal. ``quick``: 1 epoch on the first 2,000 / 500 samples of each split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lavaflow.models.rsnn import RSNNLayer

# data set → (what the paper reports, the goal), as printed beside the measured figures
REFERENCE = {
    "fashion-mnist": ("paper 400-R400: 90.00 % mean, 90.13 % best", "goal ≥ 90.3 %"),
    "fsdd": ("paper: no FSDD figure (TI46-Digits 200-R200-200: 99.39 % best)", "goal ≥ 97 %"),
}
QUICK_LIMIT = 2000


@dataclass(frozen=True)
class BenchRow:
    data: str
    method: str
    layers: str
    time_steps: int
    epochs: int
    test_accuracy: float
    best_test_accuracy: float
    train_seconds: float

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(1, self.epochs)


def _train(method: str, data: str, flags: dict[str, Any], run_name: str) -> dict[str, Any]:
    from lavaflow.pipeline.config import resolve_config
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.training import train

    config, model_config, registered = resolve_config(method, data, flags=flags)
    return train(config, model_config, registered, RunDir.create(f"runs/{run_name}"), resume=True)


def bench_pair(data: str, quick: bool = False) -> list[BenchRow]:
    """Train ST-RSBP (its preset for ``data``) and BPTT with the same hidden sizes, T and epochs; one row each."""
    from lavaflow.pipeline.config import resolve_config

    suffix = "-quick" if quick else ""
    flags: dict[str, Any] = {"epochs": 1, "limit": QUICK_LIMIT} if quick else {}
    strsbp_config, strsbp_model, _ = resolve_config("strsbp", data, flags=flags)
    metrics = _train("strsbp", data, flags, f"bench-strsbp-{data}-strsbp{suffix}")
    layers = "-".join(strsbp_model.layers)
    rows = [BenchRow(data, "strsbp", layers, strsbp_config.time_steps, int(metrics["epochs"]),
                     metrics["test_accuracy"], metrics["best_test_accuracy"], metrics["train_seconds"])]
    hidden = [RSNNLayer.parse(text).size for text in strsbp_model.layers]
    baseline_flags = {**flags, "time_steps": strsbp_config.time_steps, "epochs": strsbp_config.epochs,
                      "model": {"hidden": hidden}}
    if strsbp_config.encoding == "rate":
        baseline_flags["encoding"] = "rate"
    metrics = _train("bptt", data, baseline_flags, f"bench-strsbp-{data}-bptt{suffix}")
    rows.append(BenchRow(data, "bptt", "-".join(str(n) for n in hidden), strsbp_config.time_steps,
                         int(metrics["epochs"]), metrics["test_accuracy"], metrics["best_test_accuracy"],
                         metrics["train_seconds"]))
    return rows


def format_table(rows: list[BenchRow]) -> str:
    header = (f"{'data':<14} {'method':<7} {'hidden':<14} {'T':>4} {'epochs':>6} {'test':>7} {'best':>7} "
              f"{'wall s':>8} {'s/epoch':>8}")
    lines = [header]
    for row in rows:
        lines.append(f"{row.data:<14} {row.method:<7} {row.layers:<14} {row.time_steps:>4} {row.epochs:>6} "
                     f"{row.test_accuracy:>7.2%} {row.best_test_accuracy:>7.2%} {row.train_seconds:>8.0f} "
                     f"{row.seconds_per_epoch:>8.1f}")
    for data in dict.fromkeys(row.data for row in rows):
        if data in REFERENCE:
            paper, goal = REFERENCE[data]
            lines.append(f"{data}: {paper}; {goal}")
    lines.append("bptt: slayer CUBA blocks without recurrence (an rN layer is a dense N); run dirs are resumable")
    return "\n".join(lines)


def bench_strsbp(quick: bool = False, data_sets: tuple[str, ...] = ("fashion-mnist", "fsdd")) -> str:
    """The side-by-side table for ``data_sets``."""
    rows: list[BenchRow] = []
    for data in data_sets:
        rows += bench_pair(data, quick)
    return format_table(rows)
