"""N-MNIST files: the 40-bit `.bin` event format, tonic's reader, and a saccade + DVS model that writes them.

N-MNIST (Orchard et al. 2015, Front. Neurosci. 9:437) was recorded by an ATIS camera on a pan-tilt unit looking at
MNIST digits on a monitor; the camera made three 105 ms saccades forming a triangle. `synthesize_nmnist` replays
that motion over real digits in front of a log-intensity ON/OFF event-camera model and writes real N-MNIST files,
so the same tonic reader serves both the real and the synthetic data set.

Event arrays are structured, fields ``x, y, t, p`` (tonic's ``NMNIST.dtype``); ``t`` is in microseconds,
``p`` is 1 for ON (brighter) and 0 for OFF; ``x, y`` are 0-based pixel columns and rows on the 34x34 sensor.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tonic
from tqdm import tqdm

from lavaflow.models.atomic import atomic_write_bytes
from lavaflow.models.errors import DataError

SACCADE_US = 105_000
"""Duration of one of N-MNIST's three saccades (tonic's `stabilize` uses the same 105 ms segments)."""
SACCADE_SHIFTS_PX = ((3.5, 7.0), (3.5, -7.0), (-7.0, 0.0))
"""(dx, dy) image displacement over each saccade, in pixels, as in tonic's `stabilize` (a closed triangle)."""
SENSOR_PX = 34
"""N-MNIST's sensor crop, 34x34, so that a 28x28 digit stays in view during the saccades."""
MAX_TIMESTAMP_US = 2**23
"""The format keeps 23 bits of time; later events would need overflow markers, which we never write."""
OVERFLOW_MARKER_Y = 240
"""tonic's reader treats a row with y == 240 as a timestamp-overflow marker and drops it."""
SYNTH_VERSION = 1
"""Bumped whenever the model below changes, so that cached synthetic files are regenerated."""

EVENT_DTYPE = tonic.datasets.NMNIST.dtype


class NMNIST(tonic.datasets.NMNIST):
    """tonic's N-MNIST reader over local files, never downloading.

    The class must be *named* ``NMNIST``: tonic reads files from ``save_to/<class name>/{Train,Test}``.
    tonic's own `_check_exists` also wants the original ``train.zip`` and at least 10,000 files; here any
    ``.bin`` file in the split folder suffices, and a missing folder raises `DataError` instead of downloading.
    """

    def _check_exists(self) -> bool:
        folder = Path(self.location_on_system, self.folder_name)
        return folder.is_dir() and any(folder.glob("*/*.bin"))

    def download(self) -> None:
        folder = Path(self.location_on_system, self.folder_name)
        raise DataError(
            f"No N-MNIST files in {folder}. lavaflow never downloads: place the N-MNIST recordings as "
            f"{folder}/<digit>/<name>.bin (the layout of N-MNIST's Train.zip/Test.zip, digit 0-9 as the folder "
            "name), or use the data set 'nmnist-synth', which generates N-MNIST-format files from real digits."
        )


def write_nmnist_bin(path: str | os.PathLike, events: np.ndarray) -> None:
    """Write events as an N-MNIST ``.bin`` file: 5 bytes per event, sorted by time, atomically.

    Layout per event (big-endian 40 bits): x (8) | y (8) | p (1) | t in µs (23). No header, no overflow markers,
    hence the checks: y == 240 would be read as an overflow marker and t must fit 23 bits.

    Args:
        path: file to write; a temporary file beside it is renamed onto it, so readers never see half a file.
        events: structured array with integer fields ``x, y, t, p``.

    Raises:
        ValueError: a field is missing or a value does not fit the format.
    """
    missing = {"x", "y", "t", "p"} - set(events.dtype.names or ())
    if missing:
        raise ValueError(f"events need fields x, y, t, p; missing {sorted(missing)}")
    x, y, t, p = (np.asarray(events[name], dtype=np.int64) for name in ("x", "y", "t", "p"))
    for name, values, high in (("x", x, 255), ("y", y, 255), ("p", p, 1), ("t", t, MAX_TIMESTAMP_US - 1)):
        if values.size and (values.min() < 0 or values.max() > high):
            raise ValueError(f"{name} must lie in [0, {high}], got [{values.min()}, {values.max()}]")
    if np.any(y == OVERFLOW_MARKER_Y):
        raise ValueError(f"y == {OVERFLOW_MARKER_Y} marks a timestamp overflow in N-MNIST files; no event may use it")
    order = np.argsort(t, kind="stable")
    x, y, t, p = x[order], y[order], t[order], p[order]
    raw = np.empty((t.size, 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    atomic_write_bytes(path, raw.tobytes())


def read_nmnist_bin(path: str | os.PathLike) -> np.ndarray:
    """Read an N-MNIST ``.bin`` file with tonic's own reader (structured x, y, t µs, p)."""
    return tonic.io.read_mnist_file(str(path), dtype=EVENT_DTYPE)


def saccade_offsets(times_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image displacement (dx, dy) in pixels at each time: three linear segments of SACCADE_US each."""
    times_us = np.clip(np.asarray(times_us, dtype=np.float64), 0, 3 * SACCADE_US)
    corners = np.cumsum(np.array([(0.0, 0.0), *SACCADE_SHIFTS_PX]), axis=0)  # (4, 2): start of each segment
    knots = np.arange(4) * SACCADE_US
    return np.interp(times_us, knots, corners[:, 0]), np.interp(times_us, knots, corners[:, 1])


def _shift_bilinear(canvas: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Move images (B, H, W) by (dx, dy) ≥ 0 pixels with bilinear interpolation; what leaves the frame is lost."""
    height, width = canvas.shape[1:]
    pad = int(np.ceil(max(dx, dy))) + 1
    padded = np.zeros((canvas.shape[0], height + pad, width + pad), dtype=canvas.dtype)
    padded[:, pad:, pad:] = canvas[:, : height, : width]  # padded[r + pad, c + pad] = canvas[r, c]
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy

    def window(sx: int, sy: int) -> np.ndarray:  # out[r, c] = canvas[r - sy, c - sx]
        return padded[:, pad - sy : pad - sy + height, pad - sx : pad - sx + width]

    return ((1 - fx) * (1 - fy) * window(ix, iy) + fx * (1 - fy) * window(ix + 1, iy)
            + (1 - fx) * fy * window(ix, iy + 1) + fx * fy * window(ix + 1, iy + 1))


def contrast_thresholds(rng: np.random.Generator, *, contrast: float = 0.65, contrast_std: float = 0.04,
                        shape: tuple[int, int] = (SENSOR_PX, SENSOR_PX)) -> np.ndarray:
    """Per-pixel ON/OFF thresholds in log intensity: the sensor's fixed-pattern mismatch, ~N(contrast, std)."""
    return np.clip(rng.normal(contrast, contrast_std, size=shape), 0.2 * contrast, None)


def saccade_events_batch(images: np.ndarray, rngs: Sequence[np.random.Generator], thresholds: np.ndarray, *,
                         dt_us: int = 500, refractory_us: int = 1000, log_eps: float = 0.05,
                         noise_hz: float = 0.2) -> list[np.ndarray]:
    """Events of an ON/OFF DVS watching each image (B, 28, 28) in [0, 1] move along N-MNIST's saccades.

    The model, vectorised over images and pixels, stepped every ``dt_us``:
    L = log(I + log_eps) of the moving image (bilinear shift on the 34x34 canvas, digit at the top-left);
    a pixel not in its refractory period fires when |L − L_ref| ≥ C_pix, ON if positive, then L_ref moves C_pix
    towards L (one event per step at most: refractory ≥ dt). Its timestamp is interpolated linearly within the
    step. L_ref starts at L plus a per-sample random offset in (−C/2, C/2), so samples differ in spike timing;
    background noise events arrive at ``noise_hz`` per pixel with random polarity.

    Args:
        images: (B, 28, 28) intensities in [0, 1].
        rngs: one generator per image (noise, reference offsets), so each sample is the same in any batch.
        thresholds: (34, 34) per-pixel contrast thresholds C_pix (see `contrast_thresholds`).
        dt_us: simulation step in µs; refractory_us: dead time after an event, µs.

    Returns:
        One structured event array per image, sorted by t (µs), fields x, y, t, p.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must be (B, 28, 28), got {images.shape}")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"intensities must lie in [0, 1], got [{images.min()}, {images.max()}]")
    if len(rngs) != len(images):
        raise ValueError(f"need one generator per image: {len(rngs)} generators, {len(images)} images")
    if thresholds.shape != (SENSOR_PX, SENSOR_PX):
        raise ValueError(f"thresholds must be ({SENSOR_PX}, {SENSOR_PX}), got {thresholds.shape}")
    batch = len(images)
    canvas = np.zeros((batch, SENSOR_PX, SENSOR_PX))
    canvas[:, :28, :28] = images
    log_frame = np.log(canvas + log_eps)
    offsets = np.stack([rng.uniform(-0.5, 0.5, (SENSOR_PX, SENSOR_PX)) for rng in rngs]) * thresholds
    reference = log_frame + offsets
    last_event_us = np.full(canvas.shape, -np.inf)
    steps = 3 * SACCADE_US // dt_us
    dx, dy = saccade_offsets(np.arange(steps + 1) * dt_us)
    found: list[tuple[np.ndarray, ...]] = []
    previous = log_frame
    for step in range(1, steps + 1):
        now_us = step * dt_us
        current = np.log(_shift_bilinear(canvas, dx[step], dy[step]) + log_eps)
        difference = current - reference
        fire = (np.abs(difference) >= thresholds) & (now_us - last_event_us >= refractory_us)
        b, row, col = np.nonzero(fire)
        if b.size:
            sign = np.sign(difference[b, row, col])
            # linear interpolation of the crossing time between the previous and this step
            before = (previous[b, row, col] - reference[b, row, col]) * sign
            after = difference[b, row, col] * sign
            fraction = np.clip((thresholds[row, col] - before) / np.maximum(after - before, 1e-12), 0.0, 1.0)
            stamp = np.maximum(now_us - dt_us + np.round(fraction * dt_us), 0).astype(np.int64)
            reference[b, row, col] += sign * thresholds[row, col]
            last_event_us[b, row, col] = now_us
            found.append((b, col, row, stamp, (sign > 0).astype(np.int64)))
        previous = current
    if found:
        b_all, x_all, y_all, t_all, p_all = (np.concatenate(parts) for parts in zip(*found, strict=True))
    else:
        b_all = x_all = y_all = t_all = p_all = np.zeros(0, dtype=np.int64)
    duration_us = steps * dt_us
    results = []
    for index, rng in enumerate(rngs):
        mine = b_all == index
        count = rng.poisson(noise_hz * SENSOR_PX * SENSOR_PX * duration_us * 1e-6)
        noise = (rng.integers(0, SENSOR_PX, count), rng.integers(0, SENSOR_PX, count),
                 rng.integers(0, duration_us, count), rng.integers(0, 2, count))
        events = np.empty(int(mine.sum()) + count, dtype=EVENT_DTYPE)
        for name, signal, extra in zip(("x", "y", "t", "p"), (x_all, y_all, t_all, p_all), noise, strict=True):
            events[name] = np.concatenate([signal[mine], extra])
        results.append(events[np.argsort(events["t"], kind="stable")])
    return results


def saccade_events(image: np.ndarray, rng: np.random.Generator, *, contrast: float = 0.65,
                   contrast_std: float = 0.04, thresholds: np.ndarray | None = None, dt_us: int = 500,
                   refractory_us: int = 1000, noise_hz: float = 0.2) -> np.ndarray:
    """Events of one image (28, 28) in [0, 1]; see `saccade_events_batch` for the model.

    ``thresholds`` (34, 34) is the sensor's fixed pattern; when None it is drawn from ``rng`` with
    ``contrast`` and ``contrast_std``, as one new sensor.
    """
    if thresholds is None:
        thresholds = contrast_thresholds(rng, contrast=contrast, contrast_std=contrast_std)
    return saccade_events_batch(np.asarray(image)[None], [rng], thresholds, dt_us=dt_us,
                                refractory_us=refractory_us, noise_hz=noise_hz)[0]


def _split_folder(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return "Train" if split == "train" else "Test"


def read_manifest(root: Path, split: str) -> dict | None:
    """The manifest of a generated split (``<root>/NMNIST/<Train|Test>/manifest.json``), or None if absent."""
    path = Path(root) / "NMNIST" / _split_folder(split) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def synthesize_nmnist(images: np.ndarray, labels: np.ndarray, root: Path, split: str, seed: int, *,
                      indices: np.ndarray | None = None, source: str = "", batch_size: int = 128,
                      contrast: float = 0.65, contrast_std: float = 0.04) -> None:
    """Write one split of synthetic N-MNIST as ``<root>/NMNIST/<Train|Test>/<label>/<index>.bin``.

    Generated into a temporary folder beside the target and renamed into place, so a split is either complete
    or absent; an older copy of the split is replaced. One sensor (its threshold pattern from ``seed``) records
    every sample, and sample ``i`` draws its own noise from ``(seed, split, i)``, so it is identical whatever
    subset or batch it is generated in. File names are the zero-padded ``indices`` (positions in the source split),
    which keeps tonic's sorted file order equal to the source order within each label.

    Args:
        images: (N, 28, 28) intensities in [0, 1]; labels: (N,) digits 0-9.
        root: tonic's ``save_to`` folder; the files go under ``root/NMNIST``.
        split: "train" or "test".
        seed: fixes the sensor and every sample's noise.
        indices: each image's index in its source split (file name); default 0..N-1.
        source: a word on where the images came from, stored in the manifest.
    """
    folder = _split_folder(split)
    labels = np.asarray(labels, dtype=np.int64)
    indices = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    if not len(images) == len(labels) == len(indices):
        raise ValueError(f"images, labels and indices differ in length: {len(images)}, {len(labels)}, {len(indices)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"labels must be digits 0-9, got [{labels.min()}, {labels.max()}]")
    thresholds = contrast_thresholds(np.random.default_rng([seed, 0]), contrast=contrast, contrast_std=contrast_std)
    split_id = 1 if split == "train" else 2
    target = Path(root) / "NMNIST" / folder
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{folder}.tmp-"))
    try:
        for digit in range(10):
            (staging / str(digit)).mkdir()
        counts = []
        with tqdm(total=len(images), desc=f"nmnist-synth {split}", unit="sample", file=sys.stderr,
                  disable=not sys.stderr.isatty()) as progress:  # a log gets the one line datasets.py prints
            for start in range(0, len(images), batch_size):
                stop = min(start + batch_size, len(images))
                rngs = [np.random.default_rng([seed, split_id, int(i)]) for i in indices[start:stop]]
                batch = saccade_events_batch(images[start:stop], rngs, thresholds)
                for events, label, index in zip(batch, labels[start:stop], indices[start:stop], strict=True):
                    write_nmnist_bin(staging / str(label) / f"{index:05d}.bin", events)
                    counts.append(len(events))
                progress.update(stop - start)
        manifest = {"version": SYNTH_VERSION, "seed": seed, "source": source, "count": len(images),
                    "contrast": contrast, "contrast_std": contrast_std,
                    "mean_events": float(np.mean(counts)) if counts else 0.0}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if target.exists():  # replace an older, smaller or differently seeded copy
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{folder}.old-"))
            os.replace(target, retired / folder)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "manifest.json").exists():
                raise  # otherwise another process has just put a complete split there: keep it
    finally:
        shutil.rmtree(staging, ignore_errors=True)
