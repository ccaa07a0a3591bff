"""Neuron kinds as plug-ins: every part is registered, and a kind nobody knows is refused everywhere, by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from lavaflow.deploy.lowering import POPULATION_BUILDERS, network_records
from lavaflow.deploy.quantize import dequantize, quantize
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import FIXED_KINDS, FixedNetSpec
from lavaflow.models.kinds import KINDS, kind_named, kind_of
from lavaflow.models.kinds.base import NeuronKind
from lavaflow.models.kinds.cuba_refractory import CubaRefractoryNeurons
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.lif_potential import PotentialLIFNeurons
from lavaflow.models.netspec import (
    INPUT,
    NODE_TYPES,
    Connection,
    CubaNeurons,
    Dense,
    Input,
    NetSpec,
    Neurons,
    Readout,
    SoftResetNeurons,
)
from lavaflow.models.reference import simulate
from lavaflow.processes.kinds import PROCESS_KINDS, check_kinds, process_kind


@dataclass(frozen=True, eq=False)
class BogusNeurons:
    """A neuron node no registry lists: it has every field a reader could want, and still must be refused."""

    bias: np.ndarray
    threshold: float = 1.0
    voltage_decay: float = 0.0
    shape: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leak(self) -> float:
        return 1.0 - self.voltage_decay


def _neurons(kind: str, size: int) -> Neurons:
    bias = np.full(size, 0.05)
    if kind == "soft_reset":  # the test's own table of examples, one per kind of the registry
        return SoftResetNeurons(bias=bias, threshold=1.0, voltage_decay=0.125)
    if kind == "cuba":
        return CubaNeurons(bias=bias, threshold=1.0, current_decay=0.5, voltage_decay=0.125)
    if kind == "cuba_refractory":
        return CubaRefractoryNeurons(
            bias=bias, threshold=1.0, current_decay=0.5, voltage_decay=0.125, refractory_period=2
        )
    if kind == "lif_potential":
        return PotentialLIFNeurons(
            bias=bias, threshold=1.0, voltage_decay=0.125, leak_potential=0.25, reset_potential=-0.25
        )
    if kind == "li":
        return LeakyIntegrator(bias=bias, current_decay=0.5, voltage_decay=0.125)
    raise AssertionError(f"tests/test_kinds.py has no example population for the kind {kind!r}: add one")


def _spec(kind: str) -> NetSpec:
    rng = np.random.default_rng(0)
    return NetSpec(
        input=Input(shape=(4,), encoding="current"),
        populations={"hidden": _neurons(kind, 6), "out": _neurons(kind, 3)},
        connections=(
            Connection(INPUT, "hidden", Dense(rng.uniform(-1, 1, (6, 4))), delay_steps=0),
            Connection("hidden", "out", Dense(rng.uniform(-1, 1, (3, 6)))),
        ),
        readout=Readout(source="out", weight=np.eye(3), bias=np.zeros(3)),
        time_steps=8,
    )


def _inputs(spec: NetSpec) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, (spec.time_steps, 2, *spec.input.shape))


def _bogus_fixed(kind: str = "soft_reset") -> FixedNetSpec:
    """A valid FixedNetSpec whose first population's kind is then overwritten with "bogus" (arrays and records are
    mutable after the build, which is why every reader checks again)."""
    fixed, _ = quantize(_spec(kind))
    object.__setattr__(fixed.populations["hidden"], "kind", "bogus")
    return fixed


# ------------------------------------------------------------------------------------------------ the registry
def test_every_kind_has_all_its_parts() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name
        for part in dataclasses.fields(NeuronKind):
            value = getattr(kind, part.name)
            assert value is not None, f"{name}: missing {part.name}"
            if part.name not in ("name", "variables"):
                assert callable(value), f"{name}.{part.name} is not callable"
        assert NODE_TYPES[kind.node.__name__] is kind.node, f"{name}: its node does not serialise by class name"
        assert kind_of(_neurons(name, 2)) is kind and kind_named(name) is kind
        assert "v" in kind.variables


def test_fixed_kinds_are_the_registry() -> None:
    assert FIXED_KINDS == tuple(KINDS)


def test_the_lowering_table_covers_exactly_the_registry() -> None:
    assert set(POPULATION_BUILDERS) == set(KINDS)


def test_a_kind_without_a_lowering_row_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import lavaflow.deploy.lowering as lowering

    monkeypatch.setattr(lowering, "POPULATION_BUILDERS", {k: v for k, v in POPULATION_BUILDERS.items() if k != "cuba"})
    with pytest.raises(NetSpecError, match="'cuba'"):
        network_records(_spec("cuba"))
    network_records(_spec("soft_reset"))  # the others still lower


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_runs_through_every_stage(name: str) -> None:
    """Each kind builds, simulates in float and integers, quantises, de-quantises and lowers, as its own kind."""
    spec = _spec(name)
    record = [f"out.{variable}" for variable in KINDS[name].variables]  # the kind's variables are recordable
    assert set(simulate(spec, _inputs(spec), record=record).records) == set(record)
    fixed, _ = quantize(spec, input_range=1.0)
    assert {p.kind for p in fixed.populations.values()} == {name}
    assert set(simulate(fixed, _inputs(spec), record=record).records) == set(record)
    assert all(kind_of(n) is KINDS[name] for n in dequantize(fixed).populations.values())
    for records in (network_records(spec)[0], network_records(fixed)[0]):
        expected = type(POPULATION_BUILDERS[name].float_record(spec.populations["out"]))
        assert all(type(r) is expected for r in records)


# ------------------------------------------------------------------------------------------- unknown kinds
def test_netspec_refuses_an_unknown_node_naming_it() -> None:
    with pytest.raises(NetSpecError, match=r"population 'hidden'.*BogusNeurons"):
        NetSpec(
            input=Input(shape=(2,), encoding="current"),
            populations={"hidden": BogusNeurons(np.zeros(2))},
            connections=(Connection(INPUT, "hidden", Dense(np.ones((2, 2))), delay_steps=0),),
            readout=Readout(source="hidden", weight=np.eye(2), bias=np.zeros(2)),
            time_steps=2,
        )


def _with_bogus_node() -> NetSpec:
    """A built NetSpec whose population is then swapped for an unknown node (populations is a mutable dict)."""
    spec = _spec("soft_reset")
    spec.populations["out"] = BogusNeurons(np.zeros(3))
    return spec


def test_the_kind_lookups_refuse_unknown_kinds_naming_them() -> None:
    with pytest.raises(NetSpecError, match="BogusNeurons"):
        kind_of(BogusNeurons(np.zeros(1)))
    with pytest.raises(NetSpecError, match="'bogus'"):
        kind_named("bogus")


def test_the_float_reference_refuses_an_unknown_node() -> None:
    spec = _with_bogus_node()
    with pytest.raises(NetSpecError, match="BogusNeurons"):
        simulate(spec, _inputs(spec))


def test_quantize_refuses_an_unknown_node() -> None:
    with pytest.raises(NetSpecError, match="BogusNeurons"):
        quantize(_with_bogus_node())


def test_the_lowering_refuses_an_unknown_node() -> None:
    with pytest.raises(NetSpecError, match="BogusNeurons"):
        network_records(_with_bogus_node())


def test_fixed_netspec_refuses_an_unknown_kind() -> None:
    fixed, _ = quantize(_spec("cuba"))
    bogus = dataclasses.replace(fixed.populations["hidden"], kind="bogus")
    with pytest.raises(NetSpecError, match=r"population 'hidden'.*'bogus'"):
        FixedNetSpec(
            input=fixed.input,
            input_scale=fixed.input_scale,
            populations={**fixed.populations, "hidden": bogus},
            connections=fixed.connections,
            readout=fixed.readout,
            time_steps=fixed.time_steps,
        )


def test_the_integer_reference_refuses_an_unknown_kind() -> None:
    fixed = _bogus_fixed()
    with pytest.raises(NetSpecError, match="'bogus'"):
        simulate(fixed, _inputs(_spec("soft_reset")))


def test_the_fixed_lowering_refuses_an_unknown_kind() -> None:
    with pytest.raises(NetSpecError, match="'bogus'"):
        network_records(_bogus_fixed("cuba"))


def test_dequantize_refuses_an_unknown_kind() -> None:
    with pytest.raises(NetSpecError, match="'bogus'"):
        dequantize(_bogus_fixed())


# ------------------------------------------------------------------------------------------- the Lava side
def test_the_process_table_covers_exactly_the_registry_and_the_lowering() -> None:
    assert set(PROCESS_KINDS) == set(POPULATION_BUILDERS) == set(KINDS)


@pytest.mark.parametrize("name", list(KINDS))
def test_each_lowered_record_finds_its_own_process_row(name: str) -> None:
    """Float and fixed records of a kind pick that kind's row, whose record type is the one the lowering builds."""
    spec = _spec(name)
    fixed, _ = quantize(spec, input_range=1.0)
    for records in (network_records(spec)[0], network_records(fixed)[0]):
        assert all(process_kind(r) is PROCESS_KINDS[name] and type(r) is PROCESS_KINDS[name].record for r in records)


def test_the_process_table_refuses_an_unknown_record_naming_it() -> None:
    @dataclass(frozen=True, eq=False)
    class BogusPopulation:
        kind = "bogus"
        size: int = 1

    with pytest.raises(ValueError, match=r"BogusPopulation.*'bogus'"):
        process_kind(BogusPopulation())
    with pytest.raises(ValueError, match=r"population 0: .*BogusPopulation"):
        check_kinds((BogusPopulation(),))
