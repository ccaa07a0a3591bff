"""Import Lava's runtime safely after other libraries touched multiprocessing.

Importing ``lava.magma.runtime`` (which every Lava process and Var module pulls in) calls
``multiprocessing.set_start_method('fork')`` without ``force``, which raises "context has already been set" once
anything fixed the start method, e.g. tqdm's progress-bar lock created during training. Lava is archived, so instead
of patching it we let that one call pass when the method already in force is 'fork' (what Lava wants), and refuse
clearly otherwise. The packages whose modules import Lava (``lavaflow.processes``, ``lavaflow.pipeline.lava``) call
this on import, so no lavaflow import order can trip it.
"""

from __future__ import annotations

import multiprocessing


def import_lava_runtime() -> None:
    """Import lava.magma.runtime once, tolerating an already chosen 'fork' start method.

    Raises:
        RuntimeError: another start method is already in force (the error Lava's own import would raise, with the
            fix); a plain RuntimeError because processes/ depends on Lava alone.
    """
    current = multiprocessing.get_start_method(allow_none=True)
    if current not in (None, "fork"):
        raise RuntimeError(
            f"Lava's CPU simulator needs the 'fork' multiprocessing start method, but {current!r} is already in "
            "use in this Python process; run the simulation in a fresh process"
        )
    original = multiprocessing.set_start_method

    def tolerant(method: str | None, force: bool = False) -> None:
        if method == current and not force:
            return
        original(method, force=force)

    multiprocessing.set_start_method = tolerant
    try:
        import lava.magma.runtime.runtime  # noqa: F401 - the import that sets the start method
    finally:
        multiprocessing.set_start_method = original
