"""The linear maps of the fused network model: dense matrices and native convolutions, B samples at a time.

A projection's map takes what its source sent, (B, n_source), to the summed synaptic input (B, n_target) in the
map's dtype (float64; float32 for integer weights and payloads where that is exact, ``exact_dtype``), before any
weight exponent. Convolutions are computed as convolutions (one matmul per kernel tap over a
channels-last copy of the input), never as the unrolled (n_target, n_source) matrix: an MNIST-sized 64→64 conv
would unroll to ~4·10^9 entries. Their numbers equal the unrolled matrix's: in fixed point exactly (every partial
sum is an integer below 2^53, so float64 is exact in any order, as for the dense matmul), in floating point up to
the order of the sums.

``lava_conv_arguments`` translates a Convolution into the arguments of Lava's own Conv process (lava.proc.conv),
which the Loihi graph uses; see lavaflow.processes.network.models for what Lava's Conv models do.

numpy only, like lavaflow.processes.dynamics: no process lives beside this module.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lavaflow.processes.topology import Convolution, Projection, SparseLayout

FLOAT32_INTEGERS = 1 << 24  # float32 holds every integer of magnitude up to 2^24


class LinearMap(Protocol):
    """(B, n_source) float64 → (B, n_target) float64: Σ_j W_ij · x_j for each of the B samples."""

    def __call__(self, source: np.ndarray) -> np.ndarray: ...


class DenseMap:
    """x @ Wᵀ with the matrix transposed once, in ``dtype`` (see ``exact_dtype``)."""

    def __init__(self, weights: np.ndarray, dtype: type = np.float64) -> None:
        self.dtype = dtype
        self.weights_t = np.ascontiguousarray(np.asarray(weights, dtype=dtype).T)

    def __call__(self, source: np.ndarray) -> np.ndarray:
        return source.astype(self.dtype, copy=False) @ self.weights_t


class SparseMap:
    """x @ Wᵀ with W in CSR form, transposed once: the work of the non-zeros only."""

    def __init__(self, weights: np.ndarray, layout: SparseLayout, dtype: type = np.float64) -> None:
        self.dtype = dtype
        self.weights_t = layout.matrix(np.asarray(weights, dtype=dtype)).T.tocsr()

    def __call__(self, source: np.ndarray) -> np.ndarray:
        return np.asarray(source.astype(self.dtype, copy=False) @ self.weights_t)


class ConvMap:
    """torch's conv2d (cross-correlation) of C·H·W-flattened samples, batched, without unrolling the kernel.

    Per step: the batch is laid out channels-last and zero-padded once; then for each of the kH·kW kernel taps the
    strided (B·H'·W', C_in) slice that tap sees is multiplied by that tap's (C_in/groups, C_out/groups) weights per
    group and accumulated. Memory is O(B·C·H·W + kernel), work the convolution's own multiply-adds.
    """

    def __init__(self, kernel: np.ndarray, conv: Convolution, dtype: type = np.float64) -> None:
        self.dtype = dtype
        kernel = np.asarray(kernel, dtype=dtype)
        self.input_shape = tuple(int(n) for n in conv.input_shape)
        self.output_shape = conv.output_shape(kernel.shape)
        self.stride = tuple(int(n) for n in conv.stride)
        self.padding = tuple(int(n) for n in conv.padding)
        self.dilation = tuple(int(n) for n in conv.dilation)
        self.groups = int(conv.groups)
        c_out, c_group, k_h, k_w = kernel.shape
        # taps[dy, dx, g] is the (C_in/groups, C_out/groups) matrix of tap (dy, dx) in group g.
        grouped = kernel.reshape(self.groups, c_out // self.groups, c_group, k_h, k_w)
        self.taps = np.ascontiguousarray(grouped.transpose(3, 4, 0, 2, 1))
        self._images: np.ndarray | None = None  # the padded channels-last input, reused step after step

    def __call__(self, source: np.ndarray) -> np.ndarray:
        batch = source.shape[0]
        c_in, height, width = self.input_shape
        c_out, out_h, out_w = self.output_shape
        (pad_h, pad_w), (step_h, step_w), (dil_h, dil_w) = self.padding, self.stride, self.dilation
        if self._images is None or self._images.shape[0] != batch:  # the padding border stays zero between calls
            self._images = np.zeros((batch, height + 2 * pad_h, width + 2 * pad_w, c_in), dtype=self.dtype)
        images = self._images
        images[:, pad_h : pad_h + height, pad_w : pad_w + width] = source.reshape(batch, c_in, height, width).transpose(
            0, 2, 3, 1
        )
        rows, c_group = batch * out_h * out_w, c_in // self.groups
        span_h, span_w = (out_h - 1) * step_h + 1, (out_w - 1) * step_w + 1
        total = np.zeros((self.groups, rows, c_out // self.groups), dtype=self.dtype)
        for dy in range(self.taps.shape[0]):
            for dx in range(self.taps.shape[1]):
                top, left = dy * dil_h, dx * dil_w
                seen = images[:, top : top + span_h : step_h, left : left + span_w : step_w]  # (B, H', W', C_in)
                columns = seen.reshape(rows, self.groups, c_group).transpose(1, 0, 2)  # (groups, rows, C_in/groups)
                total += np.matmul(columns, self.taps[dy, dx])
        # (groups, B, H', W', C_out/groups) → (B, C_out, H', W'), output channel o = g·C_out/groups + k
        return total.reshape(self.groups, batch, out_h, out_w, -1).transpose(1, 0, 4, 2, 3).reshape(batch, -1)


def linear_map(projection: Projection, dtype: type = np.float64) -> LinearMap:
    """The projection's map: its native convolution or CSR product when it carries a geometry, else its matrix."""
    if projection.conv is not None:
        return ConvMap(projection.weights, projection.conv, dtype)
    if projection.sparse is not None:
        return SparseMap(projection.weights, projection.sparse, dtype)
    return DenseMap(projection.weights, dtype)


def exact_dtype(projection: Projection) -> type:
    """float32 where it is exact for this integer projection, else float64.

    Every partial sum of Σ_j W_ij·x_j is an integer no larger than max_i Σ_j |W_ij| · max|x|; below 2^24 float32
    represents all of them, so its BLAS product (twice float64's speed) is exact in any order. max|x| is 1 for a
    binary projection (Lava casts the payload to bool) and 2^bits − 1 for a graded one.
    """
    weights = np.abs(np.asarray(projection.weights, dtype=np.float64))
    if projection.conv is not None:  # an output sums one output channel's whole kernel at most
        largest_sum = weights.reshape(weights.shape[0], -1).sum(axis=1).max(initial=0.0)
    elif projection.sparse is not None:  # the non-zeros' total: a bound that needs no layout
        largest_sum = weights.sum()
    else:
        largest_sum = weights.sum(axis=1).max(initial=0.0)
    bits = int(projection.num_message_bits)
    largest_payload = (1 << bits) - 1 if bits else 1
    return np.float32 if largest_sum * largest_payload < FLOAT32_INTEGERS else np.float64


def lava_conv_arguments(kernel: np.ndarray, conv: Convolution) -> dict[str, Any]:
    """The arguments of lava.proc.conv.process.Conv that compute torch's conv2d on (C, H, W) data seen as (W, H, C).

    Lava's Conv is a true convolution (scipy's convolve2d flips the kernel) in WHC layout with a (C_out, kW, kH,
    C_in/groups) kernel and (x, y) = (width, height) pairs, so the kernel is flipped in both spatial axes and
    transposed, and every pair swapped. Lava stores the geometry as int8 Vars: values above 127 are refused.
    """
    kernel = np.asarray(kernel)
    c_in, height, width = (int(n) for n in conv.input_shape)
    geometry = {
        "padding": (int(conv.padding[1]), int(conv.padding[0])),
        "stride": (int(conv.stride[1]), int(conv.stride[0])),
        "dilation": (int(conv.dilation[1]), int(conv.dilation[0])),
    }
    largest = max(*kernel.shape[2:], *(n for pair in geometry.values() for n in pair), int(conv.groups))
    if largest > np.iinfo(np.int8).max:
        raise ValueError(
            f"Lava's Conv keeps kernel size, stride, padding, dilation and groups in int8 Vars; {largest} does not fit"
        )
    return {
        "weight": np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)),
        "input_shape": (width, height, c_in),
        "groups": int(conv.groups),
        **geometry,
    }


def shift(values: np.ndarray, exponent: int) -> np.ndarray:
    """Integer sums scaled by 2^exponent as Lava's Dense does it: << e, or arithmetic >> −e (floor)."""
    return values << exponent if exponent >= 0 else values >> -exponent
