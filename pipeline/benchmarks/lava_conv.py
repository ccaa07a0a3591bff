"""Benchmark: a 64→64 3×3 convolution on 32×32×64 input through Lava, fused and plain, float and fixed point.

Unrolled into a dense matrix this one layer would hold 65,536 × 65,536 weights (4.3e9, 34 GB in float64); the
lowering instead keeps the 64×64×3×3 kernel. The fused model computes the convolution natively (processes/synapses),
the plain graph uses Lava's own Conv process (the graph that targets Loihi). Each row is one ``run_lava`` call
(compile, fork, run, read-out, stop) and checks that its output spike counts equal the reference simulator's in
the same precision (float for lava-float, the quantised network's integers for lava-fixed).
"""

from __future__ import annotations

import time

import numpy as np

from lavaflow.deploy.quantize import quantize
from lavaflow.models.netspec import INPUT, Connection, Conv, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.reference import simulate
from lavaflow.pipeline.benchmarks.lava_throughput import ThroughputRow, format_table
from lavaflow.pipeline.lava.run import run_lava


def conv_spec(*, channels: int = 64, side: int = 32, time_steps: int = 8, seed: int = 0) -> NetSpec:
    """Rate input (C, side, side) → 3×3 conv, padding 1 → C·side² soft-reset IF neurons → 10-class readout."""
    rng = np.random.default_rng(seed)
    fan_in = channels * 9
    conv = Conv(rng.normal(0.0, 2.5 / np.sqrt(fan_in), (channels, channels, 3, 3)), (channels, side, side),
                padding=(1, 1))
    neurons = SoftResetNeurons(rng.normal(0.0, 0.05, conv.out_size), threshold=1.0, shape=conv.output_shape)
    readout = Readout("conv", rng.normal(0.0, 0.01, (10, conv.out_size)), np.zeros(10))
    return NetSpec(Input((channels, side, side), "rate"), {"conv": neurons},
                   (Connection(INPUT, "conv", conv, 0),), readout, time_steps)


def bench_lava_conv(*, fused_samples: int = 16, plain_samples: int = 2, batch_size: int = 16,
                    seed: int = 0) -> list[ThroughputRow]:
    """Rows: fused and plain graph in float and fixed point, and the numpy reference in both precisions."""
    spec = conv_spec(seed=seed)
    fixed, _ = quantize(spec)
    samples = max(fused_samples, plain_samples)
    rng = np.random.default_rng(seed + 1)
    spikes = (rng.random((spec.time_steps, samples, *spec.input.shape)) < 0.2).astype(np.float64)
    rows = []
    for precision, network, backend in (("float", spec, "lava-float"), ("fixed", fixed, "lava-fixed")):
        started = time.perf_counter()
        expected = simulate(network, spikes).counts["conv"]
        seconds = time.perf_counter() - started
        rows.append(ThroughputRow(f"numpy reference {precision}", samples, samples, 0, seconds, seconds, 1.0))
        for graph, count, fused, batch, processes in (("fused", fused_samples, True, batch_size, 3),
                                                      ("plain", plain_samples, False, 1, 4)):
            result = run_lava(network, np.ascontiguousarray(spikes[:, :count]), backend=backend, fused=fused,
                              batch_size=batch)
            agreement = float(np.mean(np.all(result.counts["conv"] == expected[:count], axis=1)))
            rows.append(ThroughputRow(f"{graph} {precision}", count, batch, processes, result.seconds,
                                      result.run_seconds, agreement))
    return rows


def describe(rows: list[ThroughputRow]) -> str:
    spec = conv_spec()
    head = (f"64→64 3×3 conv on 32×32×64 rate input, T = {spec.time_steps}; 65,536 neurons; the unrolled matrix "
            "would hold 4.3e9 weights (ratios against the first row; 'agree' vs the reference in the same precision)")
    return head + "\n" + format_table(rows)
