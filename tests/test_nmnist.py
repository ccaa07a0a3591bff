"""N-MNIST files: exact round trip, the real recording through tonic, and the saccade + DVS model."""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tonic
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import shift as ndimage_shift

from lavaflow.models.errors import DataError
from lavaflow.pipeline.data import load_data
from lavaflow.pipeline.data import nmnist_synth as ns
from lavaflow.pipeline.data.datasets import stratified_first, synth_source_arrays


def find_shared(relative: str) -> Path | None:
    """``relative`` under $LAVAFLOW_DATA_DIR, else under ../shared/data beside the repository, else None."""
    roots = [Path(os.environ["LAVAFLOW_DATA_DIR"])] if os.environ.get("LAVAFLOW_DATA_DIR") else []
    roots.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    return next((root / relative for root in roots if (root / relative).exists()), None)


SAMPLE = find_shared("nmnist/sample_nmnist.bin")
needs_sample = pytest.mark.skipif(
    SAMPLE is None,
    reason="the real N-MNIST recording nmnist/sample_nmnist.bin is "
    "neither under $LAVAFLOW_DATA_DIR nor in ../shared/data",
)


def make_events(x, y, t, p) -> np.ndarray:
    events = np.empty(len(x), dtype=ns.EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


@st.composite
def event_arrays(draw):
    n = draw(st.integers(0, 200))

    def ints(low: int, high: int):
        return st.lists(st.integers(low, high), min_size=n, max_size=n)

    ys = [value if value != 240 else 241 for value in draw(ints(0, 255))]
    return make_events(draw(ints(0, 255)), ys, draw(ints(0, 2**23 - 1)), draw(ints(0, 1)))


@given(events=event_arrays())
@settings(max_examples=60, deadline=None)
def test_bin_round_trip_is_exact(events):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample.bin"
        ns.write_nmnist_bin(path, events)
        back = ns.read_nmnist_bin(path)
        assert os.listdir(folder) == ["sample.bin"]  # the temporary file was renamed, none left behind
        assert path.stat().st_size == 5 * len(events)
    expected = events[np.argsort(events["t"], kind="stable")]
    assert back.dtype == tonic.datasets.NMNIST.dtype
    for name in ("x", "y", "t", "p"):
        assert np.array_equal(back[name], expected[name]), name


def test_writer_encodes_the_documented_bit_layout(tmp_path):
    # x=1, y=2, ON, t=0x012345 µs -> bytes 01 02 (1<<7 | 0x01) 0x23 0x45
    ns.write_nmnist_bin(tmp_path / "one.bin", make_events([1], [2], [0x012345], [1]))
    assert (tmp_path / "one.bin").read_bytes() == bytes([0x01, 0x02, 0x81, 0x23, 0x45])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("y", 240, "overflow"),
        ("t", 2**23, "t must lie"),
        ("t", -1, "t must lie"),
        ("x", 256, "x must lie"),
        ("p", 2, "p must lie"),
    ],
)
def test_writer_rejects_values_the_format_cannot_hold(tmp_path, field, value, match):
    events = make_events([3, 4], [5, 6], [10, 20], [0, 1])
    events[field][1] = value
    with pytest.raises(ValueError, match=match):
        ns.write_nmnist_bin(tmp_path / "bad.bin", events)
    assert not (tmp_path / "bad.bin").exists()


@needs_sample
def test_real_recording_decodes_through_tonic():
    events = ns.read_nmnist_bin(SAMPLE)
    assert len(events) == 4325
    assert (events["x"].min(), events["x"].max(), events["y"].min(), events["y"].max()) == (0, 33, 0, 33)
    assert (events["t"].min(), events["t"].max()) == (654, 311_175)
    assert np.all(np.diff(events["t"]) >= 0)
    assert ((events["p"] == 1).sum(), (events["p"] == 0).sum()) == (2145, 2180)


@needs_sample
def test_nmnist_loader_reads_a_local_tree_without_downloading(tmp_path):
    for split in ("Train", "Test"):
        (tmp_path / "NMNIST" / split / "4").mkdir(parents=True)
        shutil.copy(SAMPLE, tmp_path / "NMNIST" / split / "4" / "00000.bin")
    time_steps = 8
    train, test, info = load_data("nmnist", time_steps=time_steps, data_dir=tmp_path)
    frames, target = train[0]
    assert (len(train), len(test), target, info.input_shape) == (1, 1, 4, (2, 34, 34))
    assert frames.shape == (time_steps, 2, 34, 34) and frames.dtype.is_floating_point
    # tonic's ToFrame(n_time_bins=T) cuts [t0, t0 + T·w) into T windows, w = (t_last − t0) // T
    t = ns.read_nmnist_bin(SAMPLE)["t"]
    width = (t[-1] - t[0]) // time_steps
    per_bin = np.diff(np.searchsorted(t, t[0] + width * np.arange(time_steps + 1)))  # window i: [start, end)
    assert np.array_equal(frames.sum(dim=(1, 2, 3)).numpy(), per_bin)


def test_nmnist_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(DataError, match=r"NMNIST.Train.*<digit>.*nmnist-synth"):
        load_data("nmnist", time_steps=5, data_dir=tmp_path)


def test_bilinear_shift_matches_scipy():
    canvas = np.random.default_rng(0).random((2, 34, 34))
    for dx, dy in [(0.0, 0.0), (3.5, 7.0), (0.25, 6.75), (7.0, 0.0), (5.2, 1.9)]:
        expected = ndimage_shift(canvas, (0, dy, dx), order=1, mode="grid-constant", cval=0.0)
        assert np.allclose(ns._shift_bilinear(canvas, dx, dy), expected, atol=1e-12), (dx, dy)


def test_saccade_offsets_trace_the_triangle():
    dx, dy = ns.saccade_offsets(np.array([0, 52_500, 105_000, 210_000, 262_500, 315_000]))
    assert np.allclose(dx, [0, 1.75, 3.5, 7, 3.5, 0]) and np.allclose(dy, [0, 3.5, 7, 0, 0, 0])


@pytest.fixture(scope="module")
def digit_events():
    """Events of 12 real digits (mnist5k, else enlarged sklearn digits), one sensor, seeds 0..11."""
    _, (x_train, y_train, _, _) = synth_source_arrays(Path(tempfile.mkdtemp()))
    keep = stratified_first(y_train, 12)
    thresholds = ns.contrast_thresholds(np.random.default_rng(0))
    rngs = [np.random.default_rng(i) for i in range(12)]
    return x_train[keep], thresholds, ns.saccade_events_batch(x_train[keep], rngs, thresholds)


def test_synthetic_events_look_like_nmnist(digit_events):
    _, _, samples = digit_events
    counts = np.array([len(events) for events in samples])
    # the real recording has 4,325 events; C = 0.65 was calibrated to give about that many on average
    assert 2_000 <= counts.min() and counts.max() <= 9_000 and 3_000 <= counts.mean() <= 6_000, counts
    for events in samples:
        assert np.all(np.diff(events["t"]) >= 0)
        assert events["x"].min() >= 0 and events["x"].max() <= 33 and events["y"].max() <= 33
        assert events["t"].min() >= 0 and events["t"].max() < 3 * ns.SACCADE_US
        share = np.bincount(events["t"] // ns.SACCADE_US, minlength=3) / len(events)
        assert np.all((share > 0.15) & (share < 0.55)), share  # every saccade contributes about a third
        assert 0.3 < events["p"].mean() < 0.7  # ON and OFF both present


def test_tonic_stabilize_undoes_the_synthetic_motion(digit_events):
    """Our saccades move the image the way tonic's `stabilize` (from N-MNIST's authors) assumes.

    The event centroids of the three saccades lie apart by about the mean displacements, (3.5, 3.5) px; after
    tonic removes the motion they nearly coincide (stroke orientation leaves about a pixel per sample). A mirrored
    motion would double the spread instead.
    """

    def spread(events: np.ndarray) -> float:
        parts = [events[events["t"] // ns.SACCADE_US == k] for k in range(3)]
        return np.ptp([[part["x"].mean(), part["y"].mean()] for part in parts], axis=0).max()

    _, _, samples = digit_events
    raw = np.mean([spread(events) for events in samples])
    steady = np.mean([spread(tonic.datasets.nmnist.stabilize(events.copy())) for events in samples])
    assert raw > 3.0 and steady < 0.5 * raw, (raw, steady)


def test_synthesis_is_deterministic_and_batch_independent(digit_events):
    images, thresholds, samples = digit_events
    single = ns.saccade_events(images[3], np.random.default_rng(3), thresholds=thresholds)
    assert np.array_equal(single, samples[3])  # alone or in a batch of 12, the same events
    again = ns.saccade_events(images[3], np.random.default_rng(3), thresholds=thresholds)
    other = ns.saccade_events(images[3], np.random.default_rng(4), thresholds=thresholds)
    assert np.array_equal(single, again)
    assert not np.array_equal(single, other)


def test_nmnist_synth_generates_once_and_reads_through_tonic(tmp_path):
    train, test, info = load_data("nmnist-synth", time_steps=6, data_dir=tmp_path, limit=20, seed=7)
    assert (len(train), len(test), info.kind.value, info.input_shape) == (20, 20, "events", (2, 34, 34))
    split_dir = tmp_path / "nmnist-synth" / "NMNIST" / "Train"
    files = sorted(split_dir.glob("*/*.bin"))
    assert len(files) == 20
    _, (_, y_train, _, _) = synth_source_arrays(tmp_path)
    for path in files:  # file <label>/<index>.bin holds source sample <index>, whose label is <label>
        assert int(path.parent.name) == y_train[int(path.stem)]
    assert sorted(train.targets) == sorted(y_train[stratified_first(y_train, 20)].tolist())
    frames, target = train[0]
    assert frames.shape == (6, 2, 34, 34) and frames.sum() > 1_000 and target == train.targets[0]

    stamps = {path: path.stat().st_mtime_ns for path in split_dir.rglob("*")}
    smaller, _, _ = load_data("nmnist-synth", time_steps=6, data_dir=tmp_path, limit=10, seed=7)
    assert {path: path.stat().st_mtime_ns for path in split_dir.rglob("*")} == stamps  # reused, not regenerated
    assert sorted(smaller.targets) == list(range(10))  # one per class, from the cached twenty
    events = ns.read_nmnist_bin(files[0])
    assert 2_000 <= len(events) <= 9_000
