"""Lowering: a NetSpec (float) or FixedNetSpec (Loihi integers) → the SpikingNetwork's process records.

Pure data, no Lava runtime: the records are lavaflow.processes.topology's, which pipeline.lava.run hands to the
SpikingNetwork process. What the mapping does, per NetSpec element:

- Populations keep their order and become SoftResetPopulation / CubaPopulation records: θ → vth, u_rest →
  v_reset, voltage_decay → dv, current_decay → du, bias → bias_mant (fixed point: vth, dv, du, bias_mant,
  bias_exp as quantised, v_reset = vth − subtraction).
- Connections become Dense projections (weight (n_out, n_in), fixed-point weight_exp). Input connections carry
  graded payloads (``num_message_bits=8``) for current and event encodings and binary spikes (0 bits) for rate
  encoding; connections between populations carry spikes, with their delay_steps (1..MAX_DELAY) as the
  projection's delay: 1 is Lava Dense's own step, more becomes Lava's DelayDense in the Loihi graph and a spike
  history in the fused model. Input connections (delay 0) keep delay 1: the per-sample window absorbs that step.
- Convolutions become conv projections: the kernel (C_out, C_in/groups, kH, kW) as ``weights`` (fixed point: the
  quantised kernel and its weight_exp) with a topology.Convolution of the input shape, stride, padding, dilation
  and groups (pooling arrives as a depthwise conv with a constant kernel, models.netspec.pool_conv). Both
  models compute them natively, never as an unrolled matrix, so their size is not limited: the fused model in
  numpy, the Loihi graph with Lava's own Conv process (lavaflow.processes.network.models says what that takes).
  ``conv_matrix`` still unrolls one for tools and tests that want the matrix. A conv with a delay above 1 step runs
  in the fused model only: the Loihi graph refuses it (Lava has no delayed Conv).
- The readout is not lowered: it stays on the host (pipeline.lava.run), logits = W·rate + b from the sink's counts
  (λ-weighted when rate_decay > 0).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import FixedNetSpec, FixedPopulation
from lavaflow.models.kinds import kind_of
from lavaflow.models.kinds.cuba_refractory import CubaRefractoryNeurons
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.lif_potential import RESET_MODES, PotentialLIFNeurons
from lavaflow.models.netspec import INPUT, Conv, CubaNeurons, NetSpec, Neurons, SoftResetNeurons, Sparse
from lavaflow.processes.topology import (
    INPUT_SOURCE,
    MAX_DELAY,
    Convolution,
    CubaPopulation,
    CubaRefractoryPopulation,
    LeakyIntegratorPopulation,
    Population,
    PotentialLIFPopulation,
    Projection,
    SoftResetPopulation,
    SparseLayout,
)

MAX_UNROLLED_WEIGHTS = 1 << 25  # entries conv_matrix unrolls at most (256 MiB in float64); the lowering unrolls none
GRADED_BITS = 8  # Dense num_message_bits for intensities and event counts (payloads 0..255)
SPIKE_BITS = 0  # binary spikes


def network_records(spec: NetSpec | FixedNetSpec) -> tuple[list[Population], list[Projection]]:
    """The SpikingNetwork records of ``spec``, in its population and connection order."""
    if isinstance(spec, FixedNetSpec):
        populations = [_fixed_population(p) for p in spec.populations.values()]
    else:
        populations = [_float_population(p) for p in spec.populations.values()]
    index = {name: position for position, name in enumerate(spec.populations)}
    graded = spec.input.encoding in ("current", "events")
    projections = []
    for number, connection in enumerate(spec.connections):
        label = f"connection {number} ({connection.source} → {connection.target})"
        from_input = connection.source == INPUT
        _check_delay(label, connection.source, connection.delay_steps)
        if isinstance(spec, FixedNetSpec):
            weights, weight_exp = connection.weight, int(connection.weight_exp)
            geometry = connection.conv or connection.sparse
        else:
            synapse = connection.synapse
            weights, weight_exp = synapse.weight, 0
            geometry = synapse if isinstance(synapse, (Conv, Sparse)) else None
        projections.append(
            Projection(
                source=INPUT_SOURCE if from_input else index[connection.source],
                target=index[connection.target],
                weights=weights,
                weight_exp=weight_exp,
                num_message_bits=GRADED_BITS if from_input and graded else SPIKE_BITS,
                conv=convolution(geometry) if isinstance(geometry, Conv) else None,
                sparse=sparse_layout(geometry) if isinstance(geometry, Sparse) else None,
                delay=1 if from_input else int(connection.delay_steps),
            )
        )
    return populations, projections


def _check_delay(label: str, source: str, delay_steps: int) -> None:
    """Raise NetSpecError for a delay between populations beyond MAX_DELAY (DelayDense's 6 bits + Dense's step)."""
    if source != INPUT and delay_steps > MAX_DELAY:
        raise NetSpecError(
            f"{label}: delay of {delay_steps} steps; the Lava export takes 1..{MAX_DELAY} steps between populations "
            f"(Loihi 2's synaptic delays, Lava's DelayDense, span 0..63 steps on top of Dense's own one)"
        )


def sparse_layout(sparse: Sparse) -> SparseLayout:
    """The layout record of a NetSpec Sparse (its indices; the values travel as the projection's weights)."""
    return SparseLayout(sparse.rows.astype(np.int64), sparse.cols.astype(np.int64), tuple(sparse.shape))


def convolution(conv: Conv) -> Convolution:
    """The geometry record of a NetSpec Conv (torch's conv2d on C·H·W-flattened populations)."""
    return Convolution(
        input_shape=tuple(int(n) for n in conv.input_shape),
        stride=tuple(int(n) for n in conv.stride),
        padding=tuple(int(n) for n in conv.padding),
        dilation=tuple(int(n) for n in conv.dilation),
        groups=int(conv.groups),
    )


def _float_population(neurons: Neurons) -> Population:
    """The record of a float population, built by its kind's row of POPULATION_BUILDERS."""
    return _builders(kind_of(neurons).name).float_record(neurons)


def _fixed_population(population: FixedPopulation) -> Population:
    """The record of a fixed-point population, built by its kind's row of POPULATION_BUILDERS."""
    return _builders(population.kind).fixed_record(population)


def _builders(kind: str) -> PopulationBuilders:
    """The row of ``kind``; NetSpecError naming it if it has none (every registry kind needs one: tests check)."""
    if kind not in POPULATION_BUILDERS:
        raise NetSpecError(
            f"neuron kind {kind!r} has no Lava population record; the lowering knows {tuple(POPULATION_BUILDERS)}"
        )
    return POPULATION_BUILDERS[kind]


def _float_fields(neurons: Any) -> dict[str, Any]:
    """The fields every float record shares: size, threshold (0 for a kind without one), bias as the mantissa."""
    return {"size": neurons.size, "vth": float(neurons.threshold), "bias_mant": neurons.bias.astype(np.float64)}


def _fixed_fields(population: FixedPopulation) -> dict[str, Any]:
    """The fields every fixed record shares: size, vth, voltage decay, bias mantissa and exponent."""
    return {"size": population.size, "vth": int(population.vth), "dv": int(population.dv),
            "bias_mant": population.bias_mant.astype(np.int64), "bias_exp": int(population.bias_exp)}


def _soft_reset_float(neurons: SoftResetNeurons) -> Population:
    return SoftResetPopulation(**_float_fields(neurons), v_reset=float(neurons.reset_potential),
                               dv=float(neurons.voltage_decay))


def _soft_reset_fixed(population: FixedPopulation) -> Population:
    # a spike removes vth − v_reset = subtraction
    return SoftResetPopulation(**_fixed_fields(population), v_reset=int(population.vth) - int(population.subtraction))


def _cuba_float(neurons: CubaNeurons) -> Population:
    return CubaPopulation(**_float_fields(neurons), du=float(neurons.current_decay), dv=float(neurons.voltage_decay))


def _cuba_fixed(population: FixedPopulation) -> Population:
    return CubaPopulation(**_fixed_fields(population), du=int(population.du))


def _li_float(neurons: LeakyIntegrator) -> Population:
    return LeakyIntegratorPopulation(**_float_fields(neurons), du=float(neurons.current_decay),
                                     dv=float(neurons.voltage_decay))


def _li_fixed(population: FixedPopulation) -> Population:
    return LeakyIntegratorPopulation(**_fixed_fields(population), du=int(population.du))


def _cuba_refractory_float(neurons: CubaRefractoryNeurons) -> Population:
    return CubaRefractoryPopulation(**_float_fields(neurons), du=float(neurons.current_decay),
                                    dv=float(neurons.voltage_decay), refractory=int(neurons.refractory_period))


def _cuba_refractory_fixed(population: FixedPopulation) -> Population:
    return CubaRefractoryPopulation(**_fixed_fields(population), du=int(population.du),
                                    refractory=int(population.refractory))


def _lif_potential_float(neurons: PotentialLIFNeurons) -> Population:
    return PotentialLIFPopulation(
        **_float_fields(neurons),
        dv=float(neurons.voltage_decay),
        v_reset=float(neurons.reset_potential),
        leak=neurons.voltage_decay * neurons.leak_potential,  # the reference's expression: the same float
        reset_mode=RESET_MODES.index(neurons.reset_mode),
    )


def _lif_potential_fixed(population: FixedPopulation) -> Population:
    return PotentialLIFPopulation(**_fixed_fields(population), v_reset=int(population.v_reset),
                                  leak=int(population.leak), reset_mode=int(population.reset_mode))


class PopulationBuilders(NamedTuple):
    """How one neuron kind becomes a Lava population record: from its NetSpec node, from its FixedPopulation."""

    float_record: Callable[[Any], Population]
    fixed_record: Callable[[FixedPopulation], Population]


# The one table of the lowering's neuron kinds: kind name (models.kinds.KINDS) → its record builders. A kind of the
# registry without a row fails tests/test_kinds.py; processes.network builds each record's Lava process.
POPULATION_BUILDERS: MappingProxyType[str, PopulationBuilders] = MappingProxyType(
    {
        "soft_reset": PopulationBuilders(float_record=_soft_reset_float, fixed_record=_soft_reset_fixed),
        "cuba": PopulationBuilders(float_record=_cuba_float, fixed_record=_cuba_fixed),
        "cuba_refractory": PopulationBuilders(float_record=_cuba_refractory_float, fixed_record=_cuba_refractory_fixed),
        "li": PopulationBuilders(float_record=_li_float, fixed_record=_li_fixed),
        "lif_potential": PopulationBuilders(float_record=_lif_potential_float, fixed_record=_lif_potential_fixed),
    }
)


def conv_matrix(kernel: np.ndarray, conv: Conv) -> np.ndarray:
    """The dense (C_out·H'·W', C_in·H·W) matrix of a cross-correlation (torch's conv2d), C·H·W flattened.

    Not used by the lowering (conv projections stay convolutions): for tools and tests that want the matrix.

    Every (output, input) pair meets at most one kernel entry, so integer kernels give integer matrices with the
    same values (fixed point stays exact).

    Raises:
        NetSpecError: the matrix would exceed MAX_UNROLLED_WEIGHTS entries.
    """
    c_in, height, width = conv.input_shape
    c_out, out_h, out_w = conv.output_shape
    in_group, k_h, k_w = kernel.shape[1:]
    out_group = c_out // conv.groups
    if c_out * out_h * out_w * c_in * height * width > MAX_UNROLLED_WEIGHTS:
        raise NetSpecError(
            f"conv {kernel.shape} on {conv.input_shape} unrolls to {c_out * out_h * out_w} × {c_in * height * width} "
            f"weights, beyond the {MAX_UNROLLED_WEIGHTS} the Lava export handles as a dense matrix"
        )
    matrix = np.zeros((c_out * out_h * out_w, c_in * height * width), dtype=kernel.dtype)
    o, y, x, i, dy, dx = np.meshgrid(
        np.arange(c_out),
        np.arange(out_h),
        np.arange(out_w),
        np.arange(in_group),
        np.arange(k_h),
        np.arange(k_w),
        indexing="ij",
    )
    in_y = y * conv.stride[0] - conv.padding[0] + dy * conv.dilation[0]
    in_x = x * conv.stride[1] - conv.padding[1] + dx * conv.dilation[1]
    channel = (o // out_group) * in_group + i  # groups: output channel o reads only its group's input channels
    inside = (in_y >= 0) & (in_y < height) & (in_x >= 0) & (in_x < width)
    rows = ((o * out_h + y) * out_w + x)[inside]
    columns = ((channel * height + in_y) * width + in_x)[inside]
    matrix[rows, columns] = kernel[o[inside], i[inside], dy[inside], dx[inside]]
    return matrix


def check_lava_export(spec: NetSpec) -> None:
    """Raise now what building the Lava graph would raise later (delays beyond MAX_DELAY), without lowering anything.

    Callers check this before a slow reference simulation, so that a network the export cannot take fails at once.
    """
    for number, connection in enumerate(spec.connections):
        _check_delay(
            f"connection {number} ({connection.source} → {connection.target})",
            connection.source,
            connection.delay_steps,
        )
