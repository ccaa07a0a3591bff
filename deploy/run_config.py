"""Backend names → Lava run configurations: the CPU simulator in float or fixed point, or Loihi 2 hardware."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lavaflow.models.errors import BackendError

if TYPE_CHECKING:  # Lava is imported when a configuration is made: the backend names must stay cheap to import
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.run_configs import RunConfig

# Backend name → the model tag Lava selects. floating_pt runs float parameters; fixed_pt the bit-accurate integer
# models, which is what Loihi 2 executes and what netx graphs need (research/lava.md §4.4).
SIMULATOR_TAGS = {"lava-float": "floating_pt", "lava-fixed": "fixed_pt"}
HARDWARE = "loihi2"
BACKENDS = (*SIMULATOR_TAGS, HARDWARE)


def run_config(
    backend: str, *, select_sub_proc_model: bool = False, models: Mapping[AbstractProcess, type] | None = None
) -> RunConfig:
    """The Lava run configuration of ``backend``.

    Args:
        backend: "lava-float" (CPU simulator, floating_pt models), "lava-fixed" (CPU simulator, bit-accurate
            fixed_pt models) or "loihi2" (Loihi 2 hardware, needs Intel's lava-loihi).
        select_sub_proc_model: pick a process's SubProcessModel over its leaf models where it has both: True
            expands lavaflow's SpikingNetwork into the Dense + neuron graph that targets Loihi, False runs its
            fused CPU model. Always True on hardware, where only the sub-process graph can map.
        models: process → the model class to run it with, for processes whose model the caller knows (simulator
            backends only). Lava otherwise finds a model by importing every module beside the process's own
            (research/lava.md), ~0.1 s of a first compile.

    Returns:
        ``Loihi2SimCfg`` for the simulator backends, ``Loihi2HwCfg`` for "loihi2".

    Raises:
        BackendError: an unknown backend, or "loihi2" without lava-loihi.
    """
    if not isinstance(backend, str):
        raise BackendError(f"backend must be a name, one of {', '.join(BACKENDS)}; got {backend!r}")
    from lavaflow.processes.lava_runtime import import_lava_runtime

    import_lava_runtime()
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    from lava.utils import loihi

    if backend in SIMULATOR_TAGS:
        config = Loihi2SimCfg(
            select_tag=SIMULATOR_TAGS[backend], select_sub_proc_model=select_sub_proc_model, loglevel=logging.WARNING
        )
        # Lava's compiler looks processes up in this map by instance (its RunConfig.select, by class).
        config.exception_proc_model_map = dict(models or {})
        return config
    if backend == HARDWARE:
        if not loihi.is_installed():
            raise BackendError(
                "the loihi2 backend needs lava-loihi, Intel's Loihi 2 extension of Lava, which is distributed only "
                "to members of the Intel Neuromorphic Research Community (INRC) and is not installed here; run the "
                "same graph on the CPU simulator instead with --backend lava-fixed (bit-accurate, as Loihi 2 "
                "computes) or --backend lava-float"
            )
        return Loihi2HwCfg(select_tag=SIMULATOR_TAGS["lava-fixed"], select_sub_proc_model=True)
    raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
