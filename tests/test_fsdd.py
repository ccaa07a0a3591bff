"""FSDD as ST-RSBP reads it: the official split by take, spike rasters shaped for the RSNN, and the NetSpec of an
RSNN accepting them in the reference simulator. (tests/test_data.py covers the loader's cache and errors.)"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lavaflow.models.reference import simulate
from lavaflow.models.rsnn import RSNN, RSNNArchitecture, RSNNLayer, rsnn_netspec
from lavaflow.pipeline.data import encode, load_data
from lavaflow.pipeline.data.datasets import fsdd_files

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("LAVAFLOW_DATA_DIR", REPO.parent / "shared" / "data"))
HAS_FSDD = any((ROOT / "fsdd" / "recordings").glob("*.wav")) if (ROOT / "fsdd" / "recordings").is_dir() else False
needs_fsdd = pytest.mark.skipif(
    not HAS_FSDD, reason=f"no FSDD recordings in {ROOT / 'fsdd' / 'recordings'} (set LAVAFLOW_DATA_DIR to a folder "
    "holding fsdd/recordings/*.wav from github.com/Jakobovski/free-spoken-digit-dataset)")
NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


@needs_fsdd
def test_official_split_puts_takes_0_to_4_of_every_speaker_and_digit_in_the_test_set():
    train, test = fsdd_files(ROOT)
    parsed = {split: [NAME.match(path.name).groups() for path in files] for split, files in
              (("train", train), ("test", test))}
    assert all(int(take) <= 4 for _, _, take in parsed["test"])
    assert all(int(take) >= 5 for _, _, take in parsed["train"])
    test_pairs = Counter((digit, speaker) for digit, speaker, _ in parsed["test"])
    train_pairs = Counter((digit, speaker) for digit, speaker, _ in parsed["train"])
    assert set(test_pairs) == set(train_pairs) and len(test_pairs) == 60  # 6 speakers × 10 digits
    assert set(test_pairs.values()) == {5} and set(train_pairs.values()) == {45}


@needs_fsdd
def test_fsdd_rasters_feed_an_rsnn_and_its_netspec_alike(tmp_path):
    (tmp_path / "fsdd").mkdir()
    (tmp_path / "fsdd" / "recordings").symlink_to(ROOT / "fsdd" / "recordings", target_is_directory=True)
    train, test, info = load_data("fsdd", time_steps=30, data_dir=tmp_path, limit=10)
    assert (len(train), len(test)) == (10, 10) and info.input_shape == (32,) and info.num_classes == 10
    assert sorted(int(test[i][1]) for i in range(10)) == list(range(10))  # one of each digit, classes in turn
    batch = torch.stack([test[i][0] for i in range(4)])
    assert batch.shape == (4, 30, 32)
    inputs = encode(batch, "events", 30).to(torch.float64)  # (T, B, channels)
    assert inputs.shape == (30, 4, 32) and set(np.unique(inputs.numpy())) <= {0.0, 1.0}
    assert float(inputs.sum()) > 0
    architecture = RSNNArchitecture(32, (RSNNLayer(8), RSNNLayer(8, True)), 10, (0.5, 0.5, 0.5), tau_m=128.0)
    network = RSNN(architecture, torch.Generator().manual_seed(0), 1.0, torch.float64)
    spikes = network.simulate(inputs)
    spec = rsnn_netspec(network, input_shape=info.input_shape, encoding="events", time_steps=30)
    result = simulate(spec, inputs.numpy())
    for name, ours in zip(spec.populations, spikes, strict=True):
        np.testing.assert_array_equal(result.counts[name], ours.sum(0).numpy().astype(np.int64), err_msg=name)
    assert sum(int(s.sum()) for s in spikes) > 0
