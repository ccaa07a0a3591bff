"""``lavaflow bench NAME``: the benchmarks, each printing its figures side by side (never timed assertions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline.choices import BENCHMARKS as DESCRIPTIONS


@dataclass(frozen=True)
class Benchmark:
    description: str
    run: Callable[[bool], str]  # quick -> printed table


def _ide_memory(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.ide_memory import bench_ide_memory, format_table

    rows = bench_ide_memory((5, 30) if quick else (5, 30, 100), repeats=1 if quick else 3)
    return format_table(rows)


def _lava_throughput(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.lava_throughput import bench_lava_throughput, format_table

    if quick:
        return format_table(bench_lava_throughput(plain_samples=8, batched_samples=1024, batch_size=256))
    return format_table(bench_lava_throughput())


def _lava_conv(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.lava_conv import bench_lava_conv, describe

    if quick:
        return describe(bench_lava_conv(fused_samples=4, plain_samples=1, batch_size=4))
    return describe(bench_lava_conv())


def _ide_fmnist(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.ide_fmnist import bench_ide_fmnist, describe

    return describe(bench_ide_fmnist(quick))


def _netx_mnist(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.netx_mnist import bench_netx_mnist, describe

    return describe(bench_netx_mnist(100 if quick else 1000))


def _stdb(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.stdb import bench_stdb, format_table

    rows, metrics = bench_stdb(quick=quick)
    return format_table(rows, metrics)


def _strsbp(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.strsbp import bench_strsbp

    return bench_strsbp(quick)


def _spide_lava(quick: bool) -> str:
    from lavaflow.pipeline.benchmarks.spide_lava import bench_spide_lava, describe

    if quick:
        return describe(bench_spide_lava(batches=2, plain_samples=2))
    from lavaflow.pipeline.benchmarks.spide_lava import compare_with_ide, describe_accuracy

    return describe(bench_spide_lava()) + "\n\n" + describe_accuracy(compare_with_ide(epochs=1))


_RUNS: dict[str, Callable[[bool], str]] = {
    "ide-memory": _ide_memory,
    "lava-throughput": _lava_throughput,
    "ide-fmnist": _ide_fmnist,
    "lava-conv": _lava_conv,
    "netx-mnist": _netx_mnist,
    "spide-lava": _spide_lava,
    "stdb": _stdb,
    "strsbp": _strsbp,
}
BENCHMARKS: dict[str, Benchmark] = {name: Benchmark(DESCRIPTIONS[name], run) for name, run in _RUNS.items()}


def run_benchmark(name: str, quick: bool = False) -> str:
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name].run(quick)
