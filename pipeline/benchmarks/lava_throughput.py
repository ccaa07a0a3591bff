"""Benchmark: samples per second of one network on Lava's CPU simulator, graph by graph, against raw numpy.

The same random feedback IF NetSpec (input → hidden with recurrent feedback → out, soft reset, constant-current
input) runs as

    (a) plain     the Loihi graph: Lava Dense + SoftResetLIF processes, one sample per window (7 OS processes)
    (b) fused     SpikingNetwork's fused model, one sample per window (3 OS processes)
    (c) batched   the fused model with B samples side by side per window
    (d) numpy     the reference simulator (models.reference.simulate) on all samples as one batch

Every Lava process is an OS process synchronised each step (~1 ms per process-step on the 2-core CI machine),
so (a) pays per step and per process, (b) per step only, and (c) spreads each step over B samples, leaving the
per-step cost of the Lava runtime and the numpy work that (d) does too. Two rates are reported: end to end (one
``run_lava`` call: compile, fork, run, read-out, stop; what a user waits for) and steady state (the steps alone,
the rate a long run approaches). Each row also checks that its output spike counts equal the reference's.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from lavaflow.models.netspec import Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import run_lava


@dataclass(frozen=True)
class ThroughputRow:
    """One configuration's measurement.

    Attributes:
        name: "(a) plain", "(b) fused", "(c) fused + batched", "(d) numpy reference".
        samples: samples simulated.
        batch_size: samples per window (numpy: the whole batch).
        processes: Lava OS processes stepping the network (runtime service excluded); 0 for numpy.
        seconds: end-to-end wall time.
        run_seconds: wall time of the steps alone (numpy: the same as ``seconds``).
        agreement: fraction of samples whose output counts equal the reference simulator's.
    """

    name: str
    samples: int
    batch_size: int
    processes: int
    seconds: float
    run_seconds: float
    agreement: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds

    @property
    def steady_samples_per_second(self) -> float:
        return self.samples / self.run_seconds


def feedback_if_spec(
    *, inputs: int = 64, hidden: int = 256, outputs: int = 10, time_steps: int = 16, seed: int = 0
) -> NetSpec:
    """A random single-layer feedback SNN: F (input → hidden), W (hidden → hidden), readout layer (hidden → out).

    Weights are scaled so that hidden neurons fire at moderate rates on U(0, 1) intensities.
    """
    rng = np.random.default_rng(seed)
    connections = (
        Connection("input", "hidden", Dense(rng.normal(0.0, 2.0 / np.sqrt(inputs), (hidden, inputs))), 0),
        Connection("hidden", "hidden", Dense(rng.normal(0.0, 0.5 / np.sqrt(hidden), (hidden, hidden))), 1),
        Connection("hidden", "out", Dense(rng.normal(0.0, 3.0 / np.sqrt(hidden), (outputs, hidden))), 1),
    )
    populations = {
        "hidden": SoftResetNeurons(rng.normal(0.0, 0.05, hidden), threshold=1.0),
        "out": SoftResetNeurons(np.zeros(outputs), threshold=1.0),
    }
    readout = Readout("out", np.eye(outputs), np.zeros(outputs))
    return NetSpec(Input((inputs,), "current"), populations, connections, readout, time_steps)


def bench_lava_throughput(
    *,
    inputs: int = 64,
    hidden: int = 256,
    outputs: int = 10,
    time_steps: int = 16,
    plain_samples: int = 32,
    fused_samples: int = 128,
    batched_samples: int = 4096,
    batch_size: int = 1024,
    backend: str = "lava-float",
    seed: int = 0,
) -> list[ThroughputRow]:
    """Measure (a)–(d) on one random feedback IF network; each Lava row is one ``run_lava`` call.

    Args:
        inputs, hidden, outputs, time_steps: the network (see ``feedback_if_spec``).
        plain_samples: samples for (a), the slowest.
        fused_samples: samples for (b).
        batched_samples: samples for (c) and (d).
        batch_size: B of (c).
        backend: "lava-float" or "lava-fixed" (the reference then runs the quantised network).
        seed: weights and inputs.
    """
    spec = feedback_if_spec(inputs=inputs, hidden=hidden, outputs=outputs, time_steps=time_steps, seed=seed)
    if backend == "lava-fixed":
        from lavaflow.deploy.quantize import quantize

        simulated = quantize(spec)[0]
    else:
        simulated = spec
    rng = np.random.default_rng(seed + 1)
    images = rng.random((batched_samples, inputs))
    # A contiguous (T, N, n) array: a broadcast view would reach BLAS with strided rows and slow numpy down ~5×.
    drive = np.ascontiguousarray(np.broadcast_to(images, (time_steps, batched_samples, inputs)))

    started = time.perf_counter()
    reference = simulate(simulated, drive)
    numpy_seconds = time.perf_counter() - started
    expected = reference.counts["out"]

    rows = []
    for name, samples, fused, batch, processes in (
        ("(a) plain", plain_samples, False, 1, 7),
        ("(b) fused", fused_samples, True, 1, 3),
        ("(c) fused + batched", batched_samples, True, batch_size, 3),
    ):
        result = run_lava(
            simulated, np.ascontiguousarray(drive[:, :samples]), backend=backend, fused=fused, batch_size=batch
        )
        agreement = float(np.mean(np.all(result.counts["out"] == expected[:samples], axis=1)))
        rows.append(ThroughputRow(name, samples, batch, processes, result.seconds, result.run_seconds, agreement))
    rows.append(
        ThroughputRow("(d) numpy reference", batched_samples, batched_samples, 0, numpy_seconds, numpy_seconds, 1.0)
    )
    return rows


def format_table(rows: list[ThroughputRow]) -> str:
    """A plain-text table: samples/s end to end and steady state, each with its ratio to the first row."""
    base, base_steady = rows[0].samples_per_second, rows[0].steady_samples_per_second
    header = (
        f"{'graph':<22}{'samples':>8}{'B':>6}{'procs':>6}{'seconds':>9}{'samples/s':>11}{'×(a)':>8}"
        f"{'steady/s':>11}{'×(a)':>8}{'agree':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.name:<22}{row.samples:>8}{row.batch_size:>6}{row.processes:>6}{row.seconds:>9.2f}"
            f"{row.samples_per_second:>11.0f}{row.samples_per_second / base:>8.1f}"
            f"{row.steady_samples_per_second:>11.0f}{row.steady_samples_per_second / base_steady:>8.1f}"
            f"{row.agreement:>7.0%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("lava-float", "lava-fixed"), default="lava-float")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=4096, help="samples of (c) and (d)")
    args = parser.parse_args()
    rows = bench_lava_throughput(backend=args.backend, batch_size=args.batch_size, batched_samples=args.samples)
    print(format_table(rows))


if __name__ == "__main__":
    main()
