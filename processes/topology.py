"""Plain parameter records of a SpikingNetwork: populations and Dense, Sparse or Conv projections in Lava's units.

They are what the lowering (lavaflow.deploy.lowering) makes of a NetSpec: processes/ depends on Lava only, so it
never sees a NetSpec. Values are floats for floating_pt and Lava's integers for fixed_pt. A convolution arrives as
its kernel plus a Convolution geometry (both models compute it natively, never as an unrolled matrix) or, as
before, unrolled into a dense matrix. (They live outside the process folders on purpose: Lava re-executes every
module beside a process under a bare module name while it looks for models, and dataclasses cannot be defined
there.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import scipy.sparse

INPUT_SOURCE = -1  # Projection.source of a connection from the network input
# Longest Projection.delay: Lava's DelayDense (the Loihi graph) takes 6-bit delays 0..63, plus Dense's own step.
MAX_DELAY = 64


@dataclass(frozen=True, eq=False)
class SoftResetPopulation:
    """Parameters of a SoftResetLIF population (see lavaflow.processes.soft_reset.process.SoftResetLIF)."""

    kind: ClassVar[str] = "soft_reset"
    size: int
    vth: float
    v_reset: float
    dv: float
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


@dataclass(frozen=True, eq=False)
class CubaPopulation:
    """Parameters of a CubaLIF population (see lavaflow.processes.cuba.process.CubaLIF)."""

    kind: ClassVar[str] = "cuba"
    size: int
    vth: float
    du: float
    dv: float
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


@dataclass(frozen=True, eq=False)
class CubaRefractoryPopulation:
    """Parameters of a CubaRefractoryLIF population (see lavaflow.processes.cuba_refractory.process)."""

    kind: ClassVar[str] = "cuba_refractory"
    size: int
    vth: float
    du: float
    dv: float
    refractory: int  # steps v is held after a spike
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


@dataclass(frozen=True, eq=False)
class PotentialLIFPopulation:
    """Parameters of a PotentialLIF population (see lavaflow.processes.lif_potential.process)."""

    kind: ClassVar[str] = "lif_potential"
    size: int
    vth: float
    dv: float
    v_reset: float
    leak: float  # dv·v_leak per step (fixed point: 24-bit units)
    reset_mode: int  # 0: v ← v_reset, 1: v −= vth − v_reset
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


@dataclass(frozen=True, eq=False)
class LeakyIntegratorPopulation:
    """Parameters of a LeakyIntegratorNeurons population (see lavaflow.processes.li.process); vth is unused."""

    kind: ClassVar[str] = "li"
    size: int
    vth: float
    du: float
    dv: float
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


class Population(Protocol):
    """What every population record has; its ``kind`` picks its row of lavaflow.processes.kinds.PROCESS_KINDS."""

    kind: ClassVar[str]
    size: int
    vth: float
    dv: float
    bias_mant: np.ndarray
    bias_exp: int


@dataclass(frozen=True)
class Convolution:
    """The geometry of a convolutional Projection, whose ``weights`` are then the kernel (C_out, C_in/groups, kH, kW).

    torch's conv2d (a cross-correlation, zero padding on both sides) between populations flattened in C·H·W order,
    as the NetSpec and torch lay them out. Pairs are (height, width), as in torch; ``groups`` splits the channels
    into independent blocks (C_in and C_out both divisible by it).
    """

    input_shape: tuple[int, int, int]  # (C_in, H, W) of the source, C_in·H·W = its size
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def output_shape(self, kernel_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(C_out, H', W') of this convolution with a kernel of ``kernel_shape`` (torch's formula, floor)."""
        _, height, width = (int(n) for n in self.input_shape)
        c_out, _, k_h, k_w = (int(n) for n in kernel_shape)
        spans = (self.dilation[0] * (k_h - 1) + 1, self.dilation[1] * (k_w - 1) + 1)
        out_h = (height + 2 * self.padding[0] - spans[0]) // self.stride[0] + 1
        out_w = (width + 2 * self.padding[1] - spans[1]) // self.stride[1] + 1
        return c_out, int(out_h), int(out_w)


@dataclass(frozen=True, eq=False)
class SparseLayout:
    """Where the non-zeros of a sparse Projection sit; its ``weights`` are then the (nnz,) values, in this order."""

    rows: np.ndarray  # (nnz,) target indices
    cols: np.ndarray  # (nnz,) source indices
    shape: tuple[int, int]  # (n_target, n_source)

    def matrix(self, values: np.ndarray) -> scipy.sparse.csr_matrix:
        """``values`` at the non-zeros, as the CSR matrix Lava's Sparse process takes."""
        return scipy.sparse.csr_matrix((np.asarray(values), (self.rows, self.cols)), shape=tuple(self.shape))


@dataclass(frozen=True, eq=False)
class Projection:
    """A Dense, Sparse or Conv connection: a_out = W · s_in (<< weight_exp in fixed_pt), delivered one Lava step later.

    W is ``weights`` (n_target, n_source) when ``conv`` and ``sparse`` are None; the convolution of the kernel
    ``weights`` (C_out, C_in/groups, kH, kW) with geometry ``conv``: the same numbers as the unrolled matrix, without
    building it (the fused model computes it natively, the Loihi graph uses Lava's Conv); or the (nnz,) ``weights``
    at the non-zeros of ``sparse`` (a CSR product in the fused model, Lava's Sparse in the Loihi graph).

    ``delay`` is the number of Lava steps between the source sending and the target receiving: 1 is Dense's own
    step (input projections always have it; the window turns it into the NetSpec's delay 0), d > 1 between
    populations is the NetSpec's delay_steps d (the fused model keeps a ring buffer of the source's spikes, the Loihi
    graph uses Lava's DelayDense; lavaflow.processes.network.models says how residue between samples is dropped).

    ``num_message_bits`` 0 treats the payload as binary spikes (Lava's Dense and Conv cast it to bool, so −1 counts
    as +1), 8 as graded values (intensities, event counts). fixed_pt weights are even integers in [−256, 254]: the
    Loihi graph's Dense (mixed sign mode, 8 bits) drops the LSB, the fused model and Lava's Conv do not, so only even
    weights give all of them the same numbers (lavaflow.models.fixed.check_fixed_spec enforces it for a
    FixedNetSpec). A fixed_pt kernel must also keep Σ|w|·|x| below 2^23, which Lava's Conv wraps (the Loihi graph
    refuses a kernel that could reach it; lavaflow.processes.network.models).
    """

    source: int  # population index, or INPUT_SOURCE
    target: int  # population index
    weights: np.ndarray  # (n_target, n_source), or the kernel (C_out, C_in/groups, kH, kW) when conv is given
    weight_exp: int = 0
    num_message_bits: int = 0
    conv: Convolution | None = None  # None: a dense matrix
    delay: int = 1  # Lava steps from source to target, 1..MAX_DELAY; input projections: exactly 1
    sparse: SparseLayout | None = None  # the non-zeros' places when ``weights`` holds only those


def check_topology(
    input_size: int, populations: tuple[Population, ...], projections: tuple[Projection, ...], output: int
) -> None:
    """Raise ValueError naming the projection and both shapes when a matrix does not fit its populations.

    Whether a record's kind is known is lavaflow.processes.kinds.check_kinds's question (it imports this module).
    """
    if not populations:
        raise ValueError("a network needs at least one population")
    for index, population in enumerate(populations):
        if not isinstance(getattr(type(population), "kind", None), str):  # which kinds exist: processes.kinds
            raise ValueError(f"population {index}: {type(population).__name__} is not a population record (no kind)")
        if np.shape(population.bias_mant) != (population.size,):
            raise ValueError(
                f"population {index}: bias_mant {np.shape(population.bias_mant)} is not ({population.size},)"
            )
    if not 0 <= output < len(populations):
        raise ValueError(f"output {output} is not a population index (0..{len(populations) - 1})")
    for index, projection in enumerate(projections):
        if not 0 <= projection.target < len(populations):
            raise ValueError(f"projection {index}: unknown target {projection.target}")
        if projection.source == INPUT_SOURCE:
            n_source = input_size
        elif 0 <= projection.source < len(populations):
            n_source = populations[projection.source].size
        else:
            raise ValueError(f"projection {index}: unknown source {projection.source}")
        expected = (populations[projection.target].size, n_source)
        if projection.conv is not None and projection.sparse is not None:
            raise ValueError(f"projection {index}: a projection is a conv or sparse, not both")
        if projection.conv is not None:
            _check_convolution(f"projection {index}", projection, expected)
        elif projection.sparse is not None:
            _check_sparse(f"projection {index}", projection, expected)
        elif np.shape(projection.weights) != expected:
            raise ValueError(f"projection {index}: weights {np.shape(projection.weights)} are not {expected}")
        if projection.num_message_bits not in (0, 8):
            raise ValueError(f"projection {index}: num_message_bits must be 0 (spikes) or 8 (graded)")
        if not _is_count(projection.delay, 1) or projection.delay > MAX_DELAY:
            raise ValueError(f"projection {index}: delay must be an integer 1..{MAX_DELAY}, got {projection.delay!r}")
        if projection.source == INPUT_SOURCE and projection.delay != 1:
            raise ValueError(f"projection {index}: input projections have a delay of 1 step, got {projection.delay}")


def _is_count(value: object, low: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low


def _check_sparse(label: str, projection: Projection, expected: tuple[int, int]) -> None:
    """Raise ValueError unless the layout has the target × source shape and one in-range place per weight."""
    layout, count = projection.sparse, np.shape(projection.weights)
    if not isinstance(layout, SparseLayout):
        raise ValueError(f"{label}: sparse must be a SparseLayout, got {type(layout).__name__}")
    if tuple(layout.shape) != expected:
        raise ValueError(f"{label}: sparse shape {tuple(layout.shape)} is not {expected}")
    if len(count) != 1 or np.shape(layout.rows) != count or np.shape(layout.cols) != count:
        raise ValueError(f"{label}: sparse weights {count}, rows {np.shape(layout.rows)}, cols {np.shape(layout.cols)}")
    for name, index, bound in (("rows", layout.rows, expected[0]), ("cols", layout.cols, expected[1])):
        if index.size and (index.min() < 0 or index.max() >= bound):
            raise ValueError(f"{label}: sparse {name} must lie in 0..{bound - 1}")


def _check_convolution(label: str, projection: Projection, expected: tuple[int, int]) -> None:
    """Raise ValueError unless the kernel and geometry map the source's (C, H, W) onto the target's size."""
    conv, kernel_shape = projection.conv, np.shape(projection.weights)
    if not isinstance(conv, Convolution):
        raise ValueError(f"{label}: conv must be a Convolution, got {type(conv).__name__}")
    pairs = {"stride": (conv.stride, 1), "padding": (conv.padding, 0), "dilation": (conv.dilation, 1)}
    for name, (pair, low) in pairs.items():
        if len(tuple(pair)) != 2 or not all(_is_count(value, low) for value in pair):
            raise ValueError(f"{label}: conv {name} must be two integers ≥ {low} (height, width), got {pair!r}")
    if len(tuple(conv.input_shape)) != 3 or not all(_is_count(n, 1) for n in conv.input_shape):
        raise ValueError(f"{label}: conv input_shape must be (C, H, W) of positive integers, got {conv.input_shape!r}")
    if not _is_count(conv.groups, 1):
        raise ValueError(f"{label}: conv groups must be a positive integer, got {conv.groups!r}")
    c_in = int(conv.input_shape[0])
    if len(kernel_shape) != 4 or min(kernel_shape) < 1:
        raise ValueError(f"{label}: a conv kernel is (C_out, C_in/groups, kH, kW), got shape {kernel_shape}")
    if c_in % conv.groups or kernel_shape[0] % conv.groups or kernel_shape[1] * conv.groups != c_in:
        raise ValueError(
            f"{label}: kernel {kernel_shape} with groups={conv.groups} does not fit {c_in} input channels "
            f"(C_in and C_out must be divisible by groups, kernel.shape[1] = C_in/groups)"
        )
    if int(np.prod(conv.input_shape)) != expected[1]:
        raise ValueError(f"{label}: conv input_shape {tuple(conv.input_shape)} does not hold the {expected[1]} sources")
    output_shape = conv.output_shape(kernel_shape)
    if min(output_shape) < 1 or int(np.prod(output_shape)) != expected[0]:
        raise ValueError(
            f"{label}: kernel {kernel_shape} on {tuple(conv.input_shape)} gives output {output_shape}, "
            f"not the {expected[0]} target neurons"
        )
