"""Benchmark: Intel's trained MNIST netx network (lava-dl's tutorial, 784-128-64-10 CUBA), ours vs lava-dl's netx.

The same file runs twice on the same N MNIST digits, encoded as lava-dl's netx MNIST tutorial does: lavaflow's
read_netx → fused Lava fixed-point run (``run_lava``, many images side by side in one process), and lava-dl's own
``netx.hdf5.Network`` on Loihi2SimCfg(select_tag='fixed_pt') (``pipeline.lava.run.run_netx``: one image at a time,
every layer a Dense and a LIF process). It prints both throughputs (end to end: compile, run, read-out, stop),
both accuracies and whether the output spike counts agree image for image. Each runner first runs 10 digits
untimed: both then start with their modules imported (Lava's compiler, lava-dl's netx), which a first run in a
fresh Python process would otherwise charge to whichever runner goes first.

Encoding (the tutorial's ``InpImgToSpk``): pixels x = p/255 drive an integrate-and-fire encoder, v ← v + x, a spike
where v > 1, then v ← 0; the tutorial's first step of every image sends nothing (it loads the image then), so an
image is T = 32 steps of which 31 carry spikes.

Timing: run_netx gives each image a window of T + L steps (L = 3 layers, each one step late) and counts the last
T; the FixedNetSpec runs T + L − 1 steps on the input padded with zeros (its input connection has no step of its
own), so both count the same output spikes (the network has no bias, which would drive deeper layers early).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavaflow.models.errors import DataError
from lavaflow.models.fixed import FixedNetSpec

TIME_STEPS = 32  # the tutorial's presentation time (a power of 2 for Loihi 2's reset_interval)
NETWORK_FILE = Path(__file__).resolve().parents[2] / "tests" / "data" / "trained_mnist_network.net"
SOURCE = "github lava-nc/lava-dl, tutorials/lava/lib/dl/netx/mnist/trained_mnist_network.net (BSD-3-Clause)"


def encode(images: np.ndarray, time_steps: int = TIME_STEPS) -> np.ndarray:
    """The tutorial's deterministic rate code: (N, 784) uint8 pixels → (T, N, 784) 0/1 uint8 spikes, step 1 silent."""
    intensity = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    voltage = np.zeros_like(intensity)
    spikes = np.zeros((time_steps, *intensity.shape), dtype=np.uint8)
    for step in range(1, time_steps):
        voltage += intensity
        fired = voltage > 1.0
        spikes[step] = fired
        voltage[fired] = 0.0
    return spikes


def mnist_inputs(samples: int, time_steps: int = TIME_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` test digits of mnist5k (1,000 test, then training digits), encoded: (T, N, 784), (N,)."""
    from lavaflow.pipeline.data.datasets import data_dir, mnist5k_arrays

    x_train, y_train, x_test, y_test = mnist5k_arrays(data_dir())
    images = np.concatenate([np.asarray(x_test), np.asarray(x_train)])[:samples]
    labels = np.concatenate([np.asarray(y_test), np.asarray(y_train)])[:samples]
    if images.shape[0] < samples:
        raise DataError(f"mnist5k holds {images.shape[0]} digits; ask for at most that many")
    return encode(images, time_steps), labels.astype(np.int64)


def network_file(path: str | Path | None = None) -> Path:
    path = NETWORK_FILE if path is None else Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; copy it from {SOURCE}")
    return path


def window_spec(path: Path, time_steps: int) -> FixedNetSpec:
    """read_netx's spec, run for T + L − 1 steps so that its counts cover netx's window (module docstring)."""
    from lavaflow.deploy.netx import read_netx

    spec = read_netx(path, time_steps=time_steps).spec
    assert isinstance(spec, FixedNetSpec)
    return dataclasses.replace(spec, time_steps=time_steps + len(spec.populations) - 1)


def padded(spec: FixedNetSpec, inputs: np.ndarray) -> np.ndarray:
    extra = spec.time_steps - inputs.shape[0]
    return np.concatenate([inputs, np.zeros((extra, *inputs.shape[1:]), dtype=inputs.dtype)])


def our_counts(spec: FixedNetSpec, inputs: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """Output spike counts (N, 10) of lavaflow's fused Lava fixed-point run; ``spec`` from ``window_spec``."""
    from lavaflow.pipeline.lava.run import run_lava

    result = run_lava(spec, padded(spec, inputs), backend="lava-fixed", fused=True, batch_size=batch_size)
    return result.counts[spec.readout.source]


def netx_counts(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Output spike counts (N, 10) of lava-dl's netx run of ``path`` on ``inputs`` (T, N, 784)."""
    from lavaflow.pipeline.lava.run import run_netx

    return run_netx(path, inputs.astype(np.int64)).counts


@dataclass(frozen=True)
class NetxMnistRow:
    runner: str
    samples: int
    seconds: float
    accuracy: float

    @property
    def images_per_second(self) -> float:
        return self.samples / self.seconds


@dataclass(frozen=True)
class NetxMnistResult:
    rows: tuple[NetxMnistRow, ...]
    agreement: float  # fraction of images whose 10 output counts are equal in both runs
    time_steps: int
    our_step_seconds: float  # lavaflow's Lava steps alone (no checks, compile, fork or stop)


def bench_netx_mnist(
    samples: int = 1000, *, netx_samples: int | None = None, batch_size: int = 1000, path: str | Path | None = None
) -> NetxMnistResult:
    """Run both on the same digits; lava-dl's netx on the first ``netx_samples`` (default: all) since it is slow.
    ``batch_size``: digits side by side in lavaflow's fused model (1,000: one window of Lava steps for all of
    them; every Lava step synchronises every process, so fewer, wider windows run faster)."""
    import time

    from lavaflow.pipeline.lava.run import run_lava, run_netx

    file = network_file(path)
    inputs, labels = mnist_inputs(samples)
    netx_samples = samples if netx_samples is None else min(netx_samples, samples)
    spec = window_spec(file, inputs.shape[0])
    warm_up = inputs[:, :10]  # untimed: imports and first-use costs (module docstring)
    run_lava(spec, padded(spec, warm_up), backend="lava-fixed", fused=True, batch_size=10)
    run_netx(file, warm_up.astype(np.int64))
    started = time.perf_counter()
    ours = run_lava(spec, padded(spec, inputs), backend="lava-fixed", fused=True, batch_size=batch_size)
    our_seconds = time.perf_counter() - started
    started = time.perf_counter()
    theirs = run_netx(file, inputs[:, :netx_samples].astype(np.int64))
    netx_seconds = time.perf_counter() - started
    counts = ours.counts[spec.readout.source]
    agreement = float(np.all(counts[:netx_samples] == theirs.counts, axis=1).mean())
    rows = (
        NetxMnistRow("lavaflow read_netx → lava-fixed fused", samples, our_seconds,
                     float((counts.argmax(axis=1) == labels).mean())),
        NetxMnistRow("lava-dl netx.hdf5.Network (fixed_pt)", netx_samples, netx_seconds,
                     float((theirs.counts.argmax(axis=1) == labels[:netx_samples]).mean())),
    )
    return NetxMnistResult(rows, agreement, inputs.shape[0], ours.run_seconds)


def describe(result: NetxMnistResult) -> str:
    """The table ``lavaflow bench netx-mnist`` prints."""
    lines = [
        f"Intel's MNIST netx network (784-128-64-10 CUBA, T={result.time_steps}, tutorial rate code) on mnist5k",
        f"{'runner':<40} {'images':>7} {'seconds':>8} {'img/s':>9} {'accuracy':>9}",
    ]
    for row in result.rows:
        lines.append(f"{row.runner:<40} {row.samples:>7} {row.seconds:>8.1f} {row.images_per_second:>9.1f} "
                     f"{row.accuracy:>9.2%}")
    ours, theirs = result.rows
    lines.append(f"(lavaflow's Lava steps alone: {result.our_step_seconds:.1f} s, "
                 f"{ours.samples / result.our_step_seconds:.0f} img/s)")
    lines.append(f"speed-up {ours.images_per_second / theirs.images_per_second:.0f}x; output spike counts equal on "
                 f"{result.agreement:.1%} of the {theirs.samples} images both ran")
    return "\n".join(lines)
