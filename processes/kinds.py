"""The one table of neuron kinds on the Lava side: population record → its arithmetic and its Lava process.

Every branch on a neuron kind in processes/ is a lookup here (the fused network models pick the arithmetic, the
Loihi graph the neuron process), and a record of a kind nobody registered raises ValueError naming it. Keys are
the kind names of lavaflow.models.kinds.KINDS and deploy.lowering.POPULATION_BUILDERS (tests/test_kinds.py
checks that the three agree). Import-safe: definitions only, no side effects (Lava imports modules near process
modules while it looks for models).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from lavaflow.processes.cuba.process import CubaLIF
from lavaflow.processes.cuba_refractory.process import CubaRefractoryLIF
from lavaflow.processes.dynamics import (
    CubaFixed,
    CubaFloat,
    CubaRefractoryFixed,
    CubaRefractoryFloat,
    LIFixed,
    LIFloat,
    NeuronArithmetic,
    PotentialLIFFixed,
    PotentialLIFFloat,
    SoftResetFixed,
    SoftResetFloat,
    effective_bias,
)
from lavaflow.processes.li.process import LeakyIntegratorNeurons
from lavaflow.processes.lif_potential.process import PotentialLIF
from lavaflow.processes.soft_reset.process import SoftResetLIF
from lavaflow.processes.topology import (
    CubaPopulation,
    CubaRefractoryPopulation,
    LeakyIntegratorPopulation,
    Population,
    PotentialLIFPopulation,
    SoftResetPopulation,
)
from lavaflow.processes.window import AbstractWindowedNeurons


class ProcessKind(NamedTuple):
    """How one kind's population record runs: its record type, its float64 and integer arithmetic (fused model)
    and its neuron process (Loihi graph; ``process(record, common)`` with the keywords every kind shares)."""

    record: type
    float_arithmetic: Callable[[Any], NeuronArithmetic]
    fixed_arithmetic: Callable[[Any], NeuronArithmetic]
    process: Callable[[Any, dict[str, Any]], AbstractWindowedNeurons]


def _float_bias(population: Population) -> np.ndarray:
    return np.asarray(population.bias_mant, dtype=np.float64)


def _fixed_bias(population: Population) -> np.ndarray:
    return effective_bias(population.bias_mant, population.bias_exp)


def _soft_reset_float(p: SoftResetPopulation) -> NeuronArithmetic:
    return SoftResetFloat(vth=float(p.vth), v_reset=float(p.v_reset), dv=float(p.dv), bias=_float_bias(p))


def _soft_reset_fixed(p: SoftResetPopulation) -> NeuronArithmetic:
    return SoftResetFixed(vth=int(p.vth), v_reset=int(p.v_reset), dv=int(p.dv), bias=_fixed_bias(p))


def _cuba_float(p: CubaPopulation) -> NeuronArithmetic:
    return CubaFloat(vth=float(p.vth), du=float(p.du), dv=float(p.dv), bias=_float_bias(p))


def _cuba_fixed(p: CubaPopulation) -> NeuronArithmetic:
    return CubaFixed(vth=int(p.vth), du=int(p.du), dv=int(p.dv), bias=_fixed_bias(p))


def _cuba_refractory_float(p: CubaRefractoryPopulation) -> NeuronArithmetic:
    return CubaRefractoryFloat(
        vth=float(p.vth), du=float(p.du), dv=float(p.dv), bias=_float_bias(p), refractory=float(p.refractory)
    )


def _cuba_refractory_fixed(p: CubaRefractoryPopulation) -> NeuronArithmetic:
    return CubaRefractoryFixed(
        vth=int(p.vth), du=int(p.du), dv=int(p.dv), bias=_fixed_bias(p), refractory=int(p.refractory)
    )


def _lif_potential_float(p: PotentialLIFPopulation) -> NeuronArithmetic:
    subtract = int(p.reset_mode) == 1
    return PotentialLIFFloat(
        vth=float(p.vth),
        dv=float(p.dv),
        bias=_float_bias(p),
        v_reset=float(p.v_reset),
        leak=float(p.leak),
        subtract=subtract,
    )


def _lif_potential_fixed(p: PotentialLIFPopulation) -> NeuronArithmetic:
    subtract = int(p.reset_mode) == 1
    return PotentialLIFFixed(
        vth=int(p.vth), dv=int(p.dv), bias=_fixed_bias(p), v_reset=int(p.v_reset), leak=int(p.leak), subtract=subtract
    )


def _lif_potential_process(p: PotentialLIFPopulation, common: dict[str, Any]) -> AbstractWindowedNeurons:
    return PotentialLIF(v_reset=p.v_reset, leak=p.leak, reset_mode=int(p.reset_mode), **common)


def _li_float(p: LeakyIntegratorPopulation) -> NeuronArithmetic:
    return LIFloat(du=float(p.du), dv=float(p.dv), bias=_float_bias(p))


def _li_fixed(p: LeakyIntegratorPopulation) -> NeuronArithmetic:
    return LIFixed(du=int(p.du), dv=int(p.dv), bias=_fixed_bias(p))


PROCESS_KINDS: MappingProxyType[str, ProcessKind] = MappingProxyType(
    {
        "soft_reset": ProcessKind(
            SoftResetPopulation, _soft_reset_float, _soft_reset_fixed, lambda p, c: SoftResetLIF(v_reset=p.v_reset, **c)
        ),
        "cuba": ProcessKind(CubaPopulation, _cuba_float, _cuba_fixed, lambda p, c: CubaLIF(du=p.du, **c)),
        "cuba_refractory": ProcessKind(
            CubaRefractoryPopulation,
            _cuba_refractory_float,
            _cuba_refractory_fixed,
            lambda p, c: CubaRefractoryLIF(du=p.du, refractory=p.refractory, **c),
        ),
        "lif_potential": ProcessKind(
            PotentialLIFPopulation, _lif_potential_float, _lif_potential_fixed, _lif_potential_process
        ),
        "li": ProcessKind(
            LeakyIntegratorPopulation, _li_float, _li_fixed, lambda p, c: LeakyIntegratorNeurons(du=p.du, **c)
        ),
    }
)


def process_kind(population: object) -> ProcessKind:
    """The row of ``population``'s kind: its record class must be exactly the row's (its ``kind`` names the row).

    Raises:
        ValueError: naming the record's class and kind, and the known kinds.
    """
    kind = getattr(type(population), "kind", None)
    row = PROCESS_KINDS.get(kind) if isinstance(kind, str) else None
    if row is None or type(population) is not row.record:
        raise ValueError(
            f"population record {type(population).__name__} (kind {kind!r}) is not a neuron kind of "
            f"lavaflow.processes.kinds.PROCESS_KINDS {tuple(PROCESS_KINDS)}"
        )
    return row


def check_kinds(populations: tuple[Population, ...]) -> None:
    """Raise ValueError naming the first population whose record is of no known kind."""
    for index, population in enumerate(populations):
        try:
            process_kind(population)
        except ValueError as error:
            raise ValueError(f"population {index}: {error}") from None


def neuron_process(population: Population, window_steps: int, name: str) -> AbstractWindowedNeurons:
    """The Loihi graph's neuron process of one population record."""
    common = {
        "shape": (population.size,),
        "vth": population.vth,
        "dv": population.dv,
        "bias_mant": population.bias_mant,
        "bias_exp": population.bias_exp,
        "window_steps": window_steps,
        "name": name,
    }
    return process_kind(population).process(population, common)
