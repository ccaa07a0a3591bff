"""``lavaflow simulate``: run a run dir's NetSpec on a backend and record accuracy, spike agreement and speed.

Backends: ``torch`` is the reference simulator (models.reference, float64, the NetSpec time semantics that every
trainer uses); ``lava-float`` and ``lava-fixed`` are Lava's CPU simulator with our process models (fixed point:
quantised by deploy.quantize, bit-accurate Loihi arithmetic); ``loihi2`` needs Intel's lava-loihi.

Spike agreement is the fraction of samples whose output spike counts (the readout's source population) equal the
reference simulator's in the same precision: float for lava-float, the quantised network for lava-fixed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from lavaflow.deploy.quantize import exact_input_range, quantize
from lavaflow.deploy.run_config import BACKENDS
from lavaflow.models.errors import BackendError
from lavaflow.models.netspec import NetSpec
from lavaflow.models.reference import SimulationResult, simulate
from lavaflow.pipeline.config import read_yaml
from lavaflow.pipeline.data import load_data
from lavaflow.pipeline.encoders import Encoding, encode
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.training import epoch_generator

SIMULATE_BACKENDS = ("torch", *BACKENDS)


@dataclass(frozen=True)
class TestInputs:
    """Encoded test samples, time first (T, N, *input_shape), and their labels (N,)."""

    inputs: np.ndarray
    targets: np.ndarray


def test_inputs(
    spec: NetSpec, data: str, *, data_dir: str | None = None, limit: int | None = None, seed: int = 0
) -> TestInputs:
    """Encode the test split exactly as the trainer's evaluation does (same encoder, same seeded generator)."""
    _, test_set, _ = load_data(data, time_steps=spec.time_steps, data_dir=data_dir, limit=limit, seed=seed)
    encoding = Encoding(spec.input.encoding)
    generator = epoch_generator(seed, -1, 1)
    batches, labels = [], []
    for batch, targets in DataLoader(test_set, batch_size=512):
        batches.append(encode(batch, encoding, spec.time_steps, generator).numpy())
        labels.append(targets.numpy())
    return TestInputs(np.ascontiguousarray(np.concatenate(batches, axis=1)), np.concatenate(labels))


def reference(spec: Any, inputs: np.ndarray, batch_size: int = 512) -> SimulationResult:
    """The reference simulator over all samples, in batches to bound memory."""
    parts = [simulate(spec, inputs[:, start : start + batch_size]) for start in range(0, inputs.shape[1], batch_size)]
    return SimulationResult(
        counts={name: np.concatenate([p.counts[name] for p in parts]) for name in parts[0].counts},
        rates=np.concatenate([p.rates for p in parts]),
        logits=np.concatenate([p.logits for p in parts]),
        predictions=np.concatenate([p.predictions for p in parts]),
    )


def simulate_run(
    run_dir: RunDir,
    backend: str,
    *,
    limit: int | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    plain_graph: bool = False,
) -> dict[str, Any]:
    """Simulate the run's test set on ``backend``; merge the figures into metrics.json and return them."""
    if backend not in SIMULATE_BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of: {', '.join(SIMULATE_BACKENDS)}")
    spec = run_dir.load_netspec()
    config = read_yaml(run_dir.file(RunDir.CONFIG)) if run_dir.file(RunDir.CONFIG).is_file() else {}
    data = data or config.get("data") or spec.metadata.get("data")
    if not data:
        raise BackendError(f"{run_dir.path} names no data set; pass --data NAME")
    samples = test_inputs(spec, data, data_dir=data_dir or config.get("data_dir"), limit=limit,
                          seed=int(config.get("seed", 0)))
    source = spec.readout.source
    fixed = None
    if backend == "lava-fixed":
        input_range = 1.0
        if spec.input.encoding == "current":  # one intensity repeated every step: the first step holds every value
            input_range = exact_input_range(samples.inputs[0])
            print(f"input: payload = round(x · 255 / {input_range:.6g}), 8 bits (exact where the data's intensities "
                  f"lie on a 1/n grid)", file=sys.stderr)
        fixed, report = quantize(spec, input_range=input_range)
        print(report, file=sys.stderr)
    oracle_started = time.perf_counter()
    oracle = reference(fixed if fixed is not None else spec, samples.inputs)
    oracle_seconds = time.perf_counter() - oracle_started
    if backend == "torch":
        counts, predictions, seconds = oracle.counts[source], oracle.predictions, oracle_seconds
    else:
        from lavaflow.pipeline.lava_compat import import_lava_runtime

        import_lava_runtime()
        from lavaflow.pipeline.export import run_lava  # imports Lava: only when needed

        result = run_lava(fixed if fixed is not None else spec, samples.inputs, backend=backend,
                          fused=not plain_graph, batch_size=256)
        counts, predictions, seconds = result.counts[source], result.predictions, result.seconds
    count = len(samples.targets)
    metrics = {
        f"test_accuracy_{backend}": float(np.mean(predictions == samples.targets)),
        f"spike_agreement_{backend}": float(np.mean(np.all(counts == oracle.counts[source], axis=1))),
        f"samples_per_second_{backend}": count / seconds,
        f"simulate_seconds_{backend}": seconds,
        f"simulate_samples_{backend}": count,
        f"output_spikes_per_sample_{backend}": float(counts.sum() / count),
    }
    if backend == "torch":
        metrics["spikes_per_sample"] = float(sum(c.sum() for c in oracle.counts.values()) / count)
    return run_dir.update_metrics(metrics)


def format_row(backend: str, metrics: dict[str, Any]) -> str:
    return (
        f"{backend}: test accuracy {metrics[f'test_accuracy_{backend}']:.2%}, spike agreement "
        f"{metrics[f'spike_agreement_{backend}']:.2%}, {metrics[f'samples_per_second_{backend}']:.0f} samples/s "
        f"({metrics[f'simulate_samples_{backend}']} samples)"
    )

