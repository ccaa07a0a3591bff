"""Encoders: constant current is a view, rate spikes follow the intensity, events only swap axes."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lavaflow.pipeline.data.encoders import Encoding, RateEncoder, encode


@given(time_steps=st.integers(1, 16), shape=st.lists(st.integers(1, 4), min_size=1, max_size=4))
@settings(max_examples=30, deadline=None)
def test_current_is_an_expand_view_with_equal_slices(time_steps, shape):
    batch = torch.rand(shape)
    out = encode(batch, Encoding.CURRENT, time_steps)
    assert out.shape == (time_steps, *shape)
    assert out.data_ptr() == batch.data_ptr()  # no copy
    assert time_steps == 1 or out.stride(0) == 0  # the time axis repeats the same memory
    for step in range(time_steps):
        assert torch.equal(out[step], batch)


def test_rate_mean_matches_intensity_within_six_sigma():
    intensities = torch.tensor([0.0, 0.05, 0.25, 0.5, 0.9, 1.0]).repeat(50, 1)  # (B=50, 6)
    time_steps = 2000
    spikes = encode(intensities, "rate", time_steps, torch.Generator().manual_seed(1))
    assert spikes.shape == (time_steps, 50, 6) and spikes.dtype == torch.float32
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    draws = time_steps * 50
    for column, p in enumerate(intensities[0].tolist()):
        mean = spikes[:, :, column].mean().item()
        sigma = math.sqrt(p * (1 - p) / draws)  # binomial standard error of the mean
        assert abs(mean - p) <= 6 * sigma + 1e-12, (p, mean)
    assert spikes[:, :, 0].sum() == 0 and spikes[:, :, -1].min() == 1  # p = 0 never fires, p = 1 always


def test_rate_is_reproducible_with_the_same_generator_and_differs_with_another():
    batch = torch.full((8, 1, 4, 4), 0.5)
    first = RateEncoder(10)(batch, torch.Generator().manual_seed(3))
    again = encode(batch, Encoding.RATE, 10, torch.Generator().manual_seed(3))
    other = encode(batch, Encoding.RATE, 10, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_rate_rejects_intensities_outside_unit_interval(bad):
    batch = torch.tensor([[0.2, bad]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode(batch, Encoding.RATE, 4)


def test_events_is_time_first_transpose():
    frames = torch.arange(3 * 5 * 2 * 2 * 2, dtype=torch.float32).reshape(3, 5, 2, 2, 2)  # (B, T, P, H, W)
    out = encode(frames, Encoding.EVENTS, 5)
    assert out.shape == (5, 3, 2, 2, 2)
    for b in range(3):
        for t in range(5):
            assert torch.equal(out[t, b], frames[b, t])


def test_events_rejects_wrong_time_steps_naming_the_shape():
    with pytest.raises(ValueError, match=r"T = 4.*\(3, 5, 32\)"):
        encode(torch.zeros(3, 5, 32), Encoding.EVENTS, 4)
    with pytest.raises(ValueError, match="got \\(3,\\)"):
        encode(torch.zeros(3), Encoding.EVENTS, 3)


def test_unknown_encoding_and_bad_time_steps_raise():
    with pytest.raises(ValueError, match="current, rate, events"):
        encode(torch.zeros(2, 3), "poisson", 4)
    with pytest.raises(ValueError, match="time_steps"):
        encode(torch.zeros(2, 3), Encoding.CURRENT, 0)


@pytest.mark.parametrize(("data", "encoding", "suits"), [
    ("digits", "events", "current, rate"),
    ("fsdd", "rate", "events"),
    ("nmnist", "current", "events"),
    ("digits", "spikes", "current, rate"),
])
def test_an_encoding_that_does_not_suit_the_data_is_a_config_error(data, encoding, suits):
    from lavaflow.models.errors import ConfigError
    from lavaflow.pipeline.config import TrainConfig
    from lavaflow.pipeline.data import DATA_SETS
    from lavaflow.pipeline.training import resolve_encoding

    with pytest.raises(ConfigError, match=f"'{encoding}'.*suit {data}: {suits}"):
        resolve_encoding(TrainConfig(method="ide", data=data, encoding=encoding), DATA_SETS[data].info)
    assert resolve_encoding(TrainConfig(method="ide", data=data), DATA_SETS[data].info).value == suits.split(",")[0]
