"""Plain parameter records of a SpikingNetwork: populations and Dense projections in Lava's units.

They are what the exporter (lavaflow.pipeline.export) makes of a NetSpec: processes/ depends on Lava only, so it
never sees a NetSpec. Values are floats for floating_pt and Lava's integers for fixed_pt; convolutions arrive
unrolled into dense matrices. (They live outside the process folders on purpose: Lava re-executes every module
beside a process under a bare module name while it looks for models, and dataclasses cannot be defined there.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT = -1  # Projection.source of a connection from the network input


@dataclass(frozen=True, eq=False)
class SoftResetPopulation:
    """Parameters of a SoftResetLIF population (see lavaflow.processes.soft_reset.process.SoftResetLIF)."""

    size: int
    vth: float
    v_reset: float
    dv: float
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


@dataclass(frozen=True, eq=False)
class CubaPopulation:
    """Parameters of a CubaLIF population (see lavaflow.processes.cuba.process.CubaLIF)."""

    size: int
    vth: float
    du: float
    dv: float
    bias_mant: np.ndarray  # (size,)
    bias_exp: int = 0


Population = SoftResetPopulation | CubaPopulation


@dataclass(frozen=True, eq=False)
class Projection:
    """A Dense connection: a_out = weights @ s_in (<< weight_exp in fixed_pt), delivered one Lava step later.

    ``num_message_bits`` 0 treats the payload as binary spikes (Lava's Dense casts it to bool, so −1 counts as +1),
    8 as graded values (intensities, event counts). fixed_pt weights are even integers in [−256, 254]: the Loihi
    graph's Dense (mixed sign mode, 8 bits) drops the LSB, the fused model does not, so only even weights give both
    models the same numbers (lavaflow.models.fixed.check_fixed_spec enforces it for a FixedNetSpec).
    """

    source: int  # population index, or INPUT
    target: int  # population index
    weights: np.ndarray  # (n_target, n_source)
    weight_exp: int = 0
    num_message_bits: int = 0


def check_topology(
    input_size: int, populations: tuple[Population, ...], projections: tuple[Projection, ...], output: int
) -> None:
    """Raise ValueError naming the projection and both shapes when a matrix does not fit its populations."""
    if not populations:
        raise ValueError("a network needs at least one population")
    for index, population in enumerate(populations):
        if not isinstance(population, (SoftResetPopulation, CubaPopulation)):
            raise ValueError(f"population {index}: unknown kind {type(population).__name__}")
        if np.shape(population.bias_mant) != (population.size,):
            raise ValueError(
                f"population {index}: bias_mant {np.shape(population.bias_mant)} is not ({population.size},)"
            )
    if not 0 <= output < len(populations):
        raise ValueError(f"output {output} is not a population index (0..{len(populations) - 1})")
    for index, projection in enumerate(projections):
        if not 0 <= projection.target < len(populations):
            raise ValueError(f"projection {index}: unknown target {projection.target}")
        if projection.source == INPUT:
            n_source = input_size
        elif 0 <= projection.source < len(populations):
            n_source = populations[projection.source].size
        else:
            raise ValueError(f"projection {index}: unknown source {projection.source}")
        expected = (populations[projection.target].size, n_source)
        if np.shape(projection.weights) != expected:
            raise ValueError(f"projection {index}: weights {np.shape(projection.weights)} are not {expected}")
        if projection.num_message_bits not in (0, 8):
            raise ValueError(f"projection {index}: num_message_bits must be 0 (spikes) or 8 (graded)")
