"""``lavaflow demo``: the whole pipeline on the embedded digits data, printing a table of results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lavaflow.pipeline.config import resolve_config
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.training import train

DEMO_METHODS = ("bptt",)
DEMO_DATA = "digits"


def run_demo(out: Path) -> list[dict[str, Any]]:
    """Train each demo method on digits into ``out/<method>``; print and return one row per method."""
    rows = []
    for method in DEMO_METHODS:
        print(f"== {method} on {DEMO_DATA}", file=sys.stderr, flush=True)
        config, model_config, registered = resolve_config(method, DEMO_DATA)
        run_dir = RunDir.create(out / method)
        metrics = train(config, model_config, registered, run_dir)
        rows.append({"run dir": str(run_dir.path), **metrics})
    print(format_table(rows))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'method':<8} {'data':<8} {'T':>4} {'epochs':>6} {'train acc':>10} {'test acc':>9} {'train s':>8}  run dir"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['method']:<8} {row['data']:<8} {row['time_steps']:>4} {row['epochs']:>6} "
            f"{row['train_accuracy']:>10.2%} {row['test_accuracy']:>9.2%} {row['train_seconds']:>8.1f}  {row['run dir']}"
        )
    return "\n".join(lines)
