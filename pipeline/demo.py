"""``lavaflow demo``: the whole pipeline on the embedded digits data.

For each demo method: train (torch) → NetSpec → the reference simulator, Lava float and Lava fixed point (the
network quantised to Loihi 2's bit widths) → a Loihi 2 deployment bundle (cores, estimated energy) → one table of
accuracy, spike agreement, spikes per sample, cores and energy per sample.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lavaflow.pipeline.config import resolve_config
from lavaflow.pipeline.deployment import deploy_run
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.simulate import simulate_run
from lavaflow.pipeline.training import train

DEMO_METHODS = ("ide", "bptt")
DEMO_DATA = "digits"
DEMO_BACKENDS = ("torch", "lava-float", "lava-fixed")


def run_demo(out: Path) -> list[dict[str, Any]]:
    """Train and simulate each demo method into ``out/<method>``; print and return one metrics dict per method."""
    rows = []
    for method in DEMO_METHODS:
        print(f"== {method} on {DEMO_DATA}: training", file=sys.stderr, flush=True)
        config, model_config, registered = resolve_config(method, DEMO_DATA)
        run_dir = RunDir.create(out / method)
        metrics = train(config, model_config, registered, run_dir, overwrite=True)  # the demo's own run dirs
        for backend in DEMO_BACKENDS:
            print(f"== {method}: simulating on {backend}", file=sys.stderr, flush=True)
            metrics = simulate_run(run_dir, backend)
        print(f"== {method}: deploying to Loihi 2", file=sys.stderr, flush=True)
        deploy_run(run_dir, overwrite=True)
        metrics = run_dir.read_metrics()
        rows.append({"run_dir": str(run_dir.path), **metrics})
    print(format_table(rows))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Accuracy per backend side by side, spike agreement with the reference, spikes per sample."""
    header = (
        f"{'method':<7}{'T':>4}{'epochs':>7}{'train s':>8}{'torch':>9}{'lava-float':>11}{'lava-fixed':>11}"
        f"{'agree float':>12}{'agree fixed':>12}{'spikes/sample':>14}{'cores':>6}{'µJ/sample':>10}  run dir"
    )
    lines = [f"digits test accuracy per backend ({rows[0]['simulate_samples_torch'] if rows else 0} samples)",
             header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['method']:<7}{row['time_steps']:>4}{row['epochs']:>7}{row['train_seconds']:>8.0f}"
            f"{row['test_accuracy_torch']:>9.2%}{row['test_accuracy_lava-float']:>11.2%}"
            f"{row['test_accuracy_lava-fixed']:>11.2%}{row['spike_agreement_lava-float']:>12.2%}"
            f"{row['spike_agreement_lava-fixed']:>12.2%}{row['spikes_per_sample']:>14.1f}{row['loihi2_cores']:>6}"
            f"{row['loihi_energy_per_sample_joules'] * 1e6:>10.2f}  {row['run_dir']}"
        )
    lines.append("torch = reference simulator (float64); agree = samples whose output spike counts equal the "
                 "reference's in the same precision; cores, µJ/sample: lavaflow deploy's Loihi 2 partition and energy "
                 "estimate (RUN/bundle)")
    return "\n".join(lines)
