"""The run directory: the one place that knows the file names, and writes every file atomically.

    config.yaml      the fully resolved config (repeat the run with --config config.yaml)
    checkpoint.pt    model/optimiser/scheduler state, epoch, history; loadable with torch.load(weights_only=True)
    netspec.npz      the trained network as a NetSpec
    metrics.json     flat, stable keys (ARCHITECTURE §3)
    plots/           figures
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from lavaflow.models.atomic import atomic_write_bytes, atomic_write_text
from lavaflow.models.errors import LavaflowError
from lavaflow.models.netspec import NetSpec


class RunDir:
    CONFIG = "config.yaml"
    CHECKPOINT = "checkpoint.pt"
    NETSPEC = "netspec.npz"
    METRICS = "metrics.json"
    PLOTS = "plots"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike) -> RunDir:
        """Make (or reuse) a writable run dir; a clear error if it cannot be written."""
        run_dir = cls(path)
        try:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            probe = run_dir.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise LavaflowError(
                f"cannot write to the run dir {run_dir.path} ({error.strerror or error}); choose another --out "
                "directory that you can write to"
            ) from None
        return run_dir

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run dir (for export, simulate, deploy)."""
        run_dir = cls(path)
        if not (run_dir.path / cls.CONFIG).is_file() and not (run_dir.path / cls.NETSPEC).is_file():
            raise LavaflowError(
                f"{run_dir.path} is not a lavaflow run dir (no {cls.CONFIG} or {cls.NETSPEC}); create one with "
                "`lavaflow train ... --out DIR` or `lavaflow import FILE --out DIR`"
            )
        return run_dir

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def plots(self) -> Path:
        directory = self.path / self.PLOTS
        directory.mkdir(exist_ok=True)
        return directory

    # ---------------------------------------------------------------------------------------------- config
    def write_config(self, text: str) -> None:
        atomic_write_text(self.file(self.CONFIG), text)

    # ---------------------------------------------------------------------------------------------- checkpoint
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.file(self.CHECKPOINT), buffer.getvalue())

    def has_checkpoint(self) -> bool:
        return self.file(self.CHECKPOINT).is_file()

    def load_checkpoint(self) -> dict[str, Any]:
        """Load safely: weights_only=True never unpickles arbitrary objects."""
        path = self.file(self.CHECKPOINT)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise LavaflowError(f"no checkpoint in {self.path}; train first or drop --resume") from None
        except Exception as error:
            raise LavaflowError(f"{path} is not a readable lavaflow checkpoint ({error})") from None

    # ---------------------------------------------------------------------------------------------- netspec
    def save_netspec(self, spec: NetSpec) -> None:
        spec.save(self.file(self.NETSPEC))

    def load_netspec(self) -> NetSpec:
        path = self.file(self.NETSPEC)
        if not path.is_file():
            raise LavaflowError(f"no {self.NETSPEC} in {self.path}; finish `lavaflow train` or `lavaflow import` first")
        return NetSpec.load(path)

    # ---------------------------------------------------------------------------------------------- metrics
    def read_metrics(self) -> dict[str, Any]:
        path = self.file(self.METRICS)
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise LavaflowError(f"{path} is corrupt ({error}); delete it and re-run") from None

    def update_metrics(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into metrics.json (flat keys), atomically."""
        metrics = {**self.read_metrics(), **values}
        atomic_write_text(self.file(self.METRICS), json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return metrics
