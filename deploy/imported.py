"""What an importer returns: the network as a NetSpec or FixedNetSpec and the facts its file did not make explicit.

`lavaflow import` writes these beside the spec in the run dir (with the file's name, format and sha256), so a run
dir made from a file trained elsewhere says where it came from as a trained run's config does.
"""

from __future__ import annotations

from dataclasses import dataclass

from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import NetSpec


@dataclass(frozen=True)
class ImportedNetwork:
    """A network read from a file of another tool.

    Attributes:
        spec: a FixedNetSpec where the file holds Loihi integers (netx), a NetSpec where it holds real values (NIR).
        format: "netx" or "nir".
        neuron_model: the file's neuron model in its own words, e.g. "CUBA" (netx) or "CubaLIF" (NIR).
        reset_mode: "zero" or "subtract".
        dt: seconds per time step used to discretise continuous-time parameters (NIR); None where the file is
            already in steps (netx).
    """

    spec: NetSpec | FixedNetSpec
    format: str
    neuron_model: str
    reset_mode: str
    dt: float | None = None
