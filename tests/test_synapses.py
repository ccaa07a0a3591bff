"""The fused model's linear maps: float32 only where it is exact (processes.synapses.exact_dtype)."""

from __future__ import annotations

import numpy as np
import pytest

from lavaflow.processes.synapses import FLOAT32_INTEGERS, DenseMap, exact_dtype
from lavaflow.processes.topology import Convolution, Projection, SparseLayout


def _dense(weights: np.ndarray, bits: int) -> Projection:
    return Projection(source=-1, target=0, weights=weights, num_message_bits=bits)


def _at_bound(rows: int, cols: int, payload: int, margin: int) -> np.ndarray:
    """Integer weights in [−256, 256] whose largest row Σ|w| · payload is FLOAT32_INTEGERS + margin (row 0)."""
    rng = np.random.default_rng(0)
    weights = rng.integers(-64, 65, (rows, cols))
    target = -(-(FLOAT32_INTEGERS + margin) // payload)  # the smallest Σ|w| reaching the bound
    first = np.full(cols, 256)
    excess = first.sum() - target
    assert excess >= 0, "not enough columns to reach the bound"
    for index in range(cols):  # lower the first row's entries until Σ|w| = target exactly
        cut = min(excess, 256)
        first[index] -= cut
        excess -= cut
    weights[0] = first
    return weights


@pytest.mark.parametrize("bits", [0, 8])
def test_float32_is_chosen_exactly_below_the_bound(bits: int) -> None:
    payload = 255 if bits else 1
    cols = FLOAT32_INTEGERS // (256 * payload) + 2
    below = _at_bound(3, cols, payload, -payload)
    above = _at_bound(3, cols, payload, payload)
    assert exact_dtype(_dense(below, bits)) is np.float32
    assert exact_dtype(_dense(above, bits)) is np.float64


def test_the_float32_product_equals_the_integer_product_at_the_bound() -> None:
    """The worst case just below 2^24 — every payload at 255 where the row is largest — stays exact."""
    weights = _at_bound(3, FLOAT32_INTEGERS // (256 * 255) + 2, 255, -255)
    projection = _dense(weights, 8)
    assert exact_dtype(projection) is np.float32
    rng = np.random.default_rng(1)
    payloads = rng.integers(0, 256, (64, weights.shape[1]))
    payloads[0] = 255
    exact = payloads.astype(np.int64) @ weights.T.astype(np.int64)
    np.testing.assert_array_equal(np.rint(DenseMap(weights, np.float32)(payloads)).astype(np.int64), exact)


def test_beyond_the_bound_float32_would_round_so_float64_is_kept() -> None:
    """Why the bound matters: 259 payloads of 255 on weights of 255 sum to an odd integer above 2^24, which
    float32 cannot hold; exact_dtype keeps float64 for such a projection."""
    weights = np.full((1, 259), 255)
    payloads = np.full((1, 259), 255)
    exact = 259 * 255 * 255
    assert exact > FLOAT32_INTEGERS and exact % 2 == 1
    assert exact_dtype(_dense(weights, 8)) is np.float64
    assert int(DenseMap(weights, np.float32)(payloads)[0, 0]) != exact
    assert int(DenseMap(weights, np.float64)(payloads)[0, 0]) == exact


def test_conv_and_sparse_bounds() -> None:
    kernel = np.full((2, 1, 3, 3), 256)  # Σ|w| per output channel: 9·256
    conv = Convolution(input_shape=(1, 4, 4))
    assert exact_dtype(Projection(-1, 0, kernel, num_message_bits=8, conv=conv)) is np.float32
    big = np.full((1, 300, 3, 3), 256)  # 300·9·256·255 > 2^24
    assert exact_dtype(Projection(-1, 0, big, num_message_bits=8, conv=Convolution(input_shape=(300, 4, 4)))) \
        is np.float64
    layout = SparseLayout(shape=(2, 3), rows=np.array([0, 1]), cols=np.array([0, 2]))
    assert exact_dtype(Projection(-1, 0, np.array([256, -256]), num_message_bits=0, sparse=layout)) is np.float32
