"""The linear maps of SPIDE's edges in numpy, on C·H·W-flattened batches: what SPIDENetwork's fused model applies
forward (W·s), backward (the adjoint Wᵀ·e, from the same array, so W and Wᵀ stay tied) and in the local update (the
batch-summed ``error ⊗ pre`` of a dense edge; its weight-shared sum over positions for a convolution).

Their torch twins are models.spide_network's Linear / Conv / ConvTranspose / AvgPool, which the torch SPIDE runs;
a SPIDE Lava graph is built from those (pipeline.lava.spide_graph) and its update equals theirs (tests). A
convolution runs as processes.synapses.ConvMap (one matmul per kernel tap on channels-last arrays, never an
unrolled matrix); its adjoint and its kernel gradient step the same taps. Products of integer-valued operands (fixed
point: counts and weights in LSBs) are exact in float64.

numpy only, beside no process: Lava imports every module next to a process module while it looks for models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lavaflow.processes.synapses import ConvMap
from lavaflow.processes.topology import Convolution


@dataclass(frozen=True)
class Dense:
    """y = W·x, W (n_out, n_in) as torch.nn.Linear's."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def weight_shape(self) -> tuple[int, ...] | None:
        return (math.prod(self.output_shape), math.prod(self.input_shape))

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return (math.prod(self.output_shape),)

    def apply(self, source: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return source @ weight.T

    def adjoint(self, error: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return error @ weight

    def weight_gradient(self, pre: np.ndarray, error: np.ndarray) -> np.ndarray:
        """Σ_batch error·preᵀ."""
        return error.T @ pre

    def expand_bias(self, bias: np.ndarray) -> np.ndarray:
        """The bias as a current per target neuron."""
        return bias

    def current(self, source: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """W·source + b: the edge's current into its target."""
        return self.apply(source, weight) + self.expand_bias(bias)

    def bias_gradient(self, error: np.ndarray) -> np.ndarray:
        return error.sum(0)


@dataclass(frozen=True)
class Conv:
    """y = conv2d(x, W, stride, padding) (torch's cross-correlation, zero padding), W (C_out, C_in, k, k).

    ``transposed``: y = conv_transpose2d(x, W, stride, padding, output_padding) instead, W (C_in, C_out, k, k): the
    adjoint of the convolution from y's shape to x's with the same kernel, so the two swap roles.
    """

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    kernel: int
    stride: int
    padding: int
    transposed: bool = False

    @property
    def weight_shape(self) -> tuple[int, ...] | None:
        small, large = self._shapes()
        return (small[0], large[0], self.kernel, self.kernel)

    @property
    def bias_shape(self) -> tuple[int, ...] | None:
        return (self.output_shape[0],)

    def _shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(the convolution's output shape, its input shape): the strided side and the full side."""
        return (self.input_shape, self.output_shape) if self.transposed else (self.output_shape, self.input_shape)

    def apply(self, source: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return self._backward(source, weight) if self.transposed else self._forward(source, weight)

    def adjoint(self, error: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return self._forward(error, weight) if self.transposed else self._backward(error, weight)

    def weight_gradient(self, pre: np.ndarray, error: np.ndarray) -> np.ndarray:
        """Σ_batch Σ_positions of error ⊗ the input patch; for the transposed map ⟨e, Wᵀx⟩ = ⟨W·e, x⟩ swaps them."""
        full, strided = (error, pre) if self.transposed else (pre, error)
        rows = self._channels_last(strided, self._shapes()[0])
        gradient = np.empty(self.weight_shape)
        for dy, dx, seen in self._taps(self._padded(full)):
            gradient[:, :, dy, dx] = rows.T @ seen
        return gradient

    def expand_bias(self, bias: np.ndarray) -> np.ndarray:
        _, height, width = self.output_shape
        return np.repeat(bias, height * width)

    current = Dense.current

    def bias_gradient(self, error: np.ndarray) -> np.ndarray:
        return error.reshape(error.shape[0], self.output_shape[0], -1).sum((0, 2))

    # ------------------------------------------------------------------------------------------ the convolution
    @staticmethod
    def _channels_last(values: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """(B, C·H·W) → (B·H·W, C)."""
        channels, height, width = shape
        return values.reshape(-1, channels, height, width).transpose(0, 2, 3, 1).reshape(-1, channels)

    def _padded(self, full: np.ndarray) -> np.ndarray:
        """The full side, channels-last, zero-padded: (B, H + 2p, W + 2p, C)."""
        channels, height, width = self._shapes()[1]
        pad = self.padding
        padded = np.zeros((full.shape[0], height + 2 * pad, width + 2 * pad, channels))
        padded[:, pad:pad + height, pad:pad + width] = full.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
        return padded

    def _taps(self, padded: np.ndarray):
        """Per kernel tap (dy, dx), the (B·H'·W', C) view of the full side that tap sees."""
        _, out_h, out_w = self._shapes()[0]
        span_h, span_w = (out_h - 1) * self.stride + 1, (out_w - 1) * self.stride + 1
        for dy in range(self.kernel):
            for dx in range(self.kernel):
                seen = padded[:, dy:dy + span_h:self.stride, dx:dx + span_w:self.stride]
                yield dy, dx, seen.reshape(-1, padded.shape[-1])

    def _forward(self, full: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """The convolution: full side (B, C·H·W) → strided side (B, C'·H'·W')."""
        geometry = Convolution(self._shapes()[1], (self.stride, self.stride), (self.padding, self.padding))
        return ConvMap(weight, geometry)(full)

    def _backward(self, strided: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Its adjoint: strided side → full side; rows and columns no tap reaches stay zero (torch's output_padding)."""
        batch = strided.shape[0]
        rows = self._channels_last(strided, self._shapes()[0])
        channels, height, width = self._shapes()[1]
        pad = self.padding
        padded = np.zeros((batch, height + 2 * pad, width + 2 * pad, channels))
        _, out_h, out_w = self._shapes()[0]
        span_h, span_w = (out_h - 1) * self.stride + 1, (out_w - 1) * self.stride + 1
        taps = np.ascontiguousarray(weight.transpose(2, 3, 0, 1))  # (k, k, C', C): a strided slice defeats BLAS
        for dy in range(self.kernel):
            for dx in range(self.kernel):
                padded[:, dy:dy + span_h:self.stride, dx:dx + span_w:self.stride] += (
                    rows @ taps[dy, dx]).reshape(batch, out_h, out_w, channels)
        return padded[:, pad:pad + height, pad:pad + width].transpose(0, 3, 1, 2).reshape(batch, -1)


@dataclass(frozen=True)
class AvgPool:
    """k × k average pooling, stride k: a fixed map (no weight, no bias; H and W divisible by k)."""

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    kernel: int

    weight_shape = None
    bias_shape = None

    def apply(self, source: np.ndarray, weight: None) -> np.ndarray:
        channels, height, width = self.input_shape
        k = self.kernel
        blocks = source.reshape(-1, channels, height // k, k, width // k, k)
        return blocks.sum((3, 5)).reshape(source.shape[0], -1) / (k * k)

    def current(self, source: np.ndarray, weight: None, bias: None) -> np.ndarray:
        """The pooled source (no weight, no bias)."""
        return self.apply(source, weight)

    def adjoint(self, error: np.ndarray, weight: None) -> np.ndarray:
        """Each output's error spread evenly (÷ k²) over its k × k window."""
        spread = np.repeat(np.repeat(error.reshape(-1, *self.output_shape), self.kernel, 2), self.kernel, 3)
        return spread.reshape(error.shape[0], -1) / (self.kernel * self.kernel)


EdgeOperator = Dense | Conv | AvgPool
