"""Neuron kinds as plug-ins (ARCHITECTURE §6): one module per kind, and the one registry of them, ``KINDS``.

Every branch on a neuron kind in models/ and deploy/ is a lookup here, and an unknown kind raises NetSpecError
naming it: there is no "else" meaning "the other kind". Adding a kind: write its module (models.kinds.base.NeuronKind
lists the parts), add it to ``KINDS``, give it a Lava process folder in processes/, a row in
processes.kinds.PROCESS_KINDS and one in deploy.lowering.POPULATION_BUILDERS (README: "Adding a neuron kind").
"""

from __future__ import annotations

from types import MappingProxyType

from lavaflow.models.errors import NetSpecError
from lavaflow.models.kinds.base import NeuronKind
from lavaflow.models.kinds.cuba import KIND as CUBA
from lavaflow.models.kinds.cuba_refractory import KIND as CUBA_REFRACTORY
from lavaflow.models.kinds.li import KIND as LI
from lavaflow.models.kinds.lif_potential import KIND as LIF_POTENTIAL
from lavaflow.models.kinds.soft_reset import KIND as SOFT_RESET

# Read-only, built once: kind name → its parts, in the order NetSpec documents them.
KINDS: MappingProxyType[str, NeuronKind] = MappingProxyType(
    {k.name: k for k in (SOFT_RESET, CUBA, CUBA_REFRACTORY, LIF_POTENTIAL, LI)}
)
NODE_CLASSES: tuple[type, ...] = tuple(k.node for k in KINDS.values())


def kind_named(name: object) -> NeuronKind:
    """The kind a FixedPopulation's ``kind`` names.

    Raises:
        NetSpecError: naming ``name`` and the known kinds.
    """
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise NetSpecError(f"neuron kind {name!r} is not one of {tuple(KINDS)}")
    return kind


def kind_of(neurons: object) -> NeuronKind:
    """The kind whose NetSpec node class ``neurons`` is exactly (a subclass would not serialise by name).

    Raises:
        NetSpecError: naming the class and the known node classes.
    """
    for kind in KINDS.values():
        if type(neurons) is kind.node:
            return kind
    known = tuple(cls.__name__ for cls in NODE_CLASSES)
    raise NetSpecError(f"neuron kind {type(neurons).__name__} is not one of {known}")
