"""Drop the lines two third-party modules print on import, and nothing else.

On a CPU machine, importing lava-dl's slayer (bptt, netx) prints "No CUDA runtime is found, using CUDA_HOME=..."
(torch.utils.cpp_extension) and a three-line "WARNING: Prophesee Dataset Toolbox could not be found!" (a lava-dl
object-detection demo lavaflow never uses). They are bare ``print`` calls, so a warnings filter cannot catch them.
While exactly those two modules execute, their stdout and stderr go to a buffer; every line that is not one of the
known ones is passed on unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, TextIO

NOISY_IMPORTS: dict[str, tuple[str, ...]] = {
    "torch.utils.cpp_extension": ("No CUDA runtime is found, using CUDA_HOME=",),
    "lava.lib.dl.slayer.object_detection.dataset.prophesee_automotive": (
        "WARNING: Prophesee Dataset Toolbox could not be found!",
        "Only Prophesee DVS demo will not run properly.",
        "Please install it from https://github.com/prophesee-ai/prophesee-automotive-dataset-toolbox",
    ),
}
"""Module → the starts of the lines it prints on import that are dropped."""


def _pass_on(text: str, stream: TextIO, known: Sequence[str]) -> None:
    for line in text.splitlines(keepends=True):
        if not line.strip().startswith(tuple(known)):
            stream.write(line)


class _QuietLoader(importlib.abc.Loader):
    """Wraps a module's own loader; runs its body with the known lines filtered out."""

    def __init__(self, loader: importlib.abc.Loader, known: Sequence[str]) -> None:
        self._loader = loader
        self._known = known

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                self._loader.exec_module(module)
        finally:
            _pass_on(out.getvalue(), sys.stdout, self._known)
            _pass_on(err.getvalue(), sys.stderr, self._known)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ...: tracebacks still show the code
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name not in NOISY_IMPORTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader, NOISY_IMPORTS[name])
        return spec


def silence_import_noise() -> None:
    """Install the filter (idempotent); it acts only if the noisy modules are imported afterwards."""
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
