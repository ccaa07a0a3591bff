"""The run directory: the one place that knows the file names, and writes every file atomically.

    config.yaml      the fully resolved config (repeat the run with --config config.yaml)
    checkpoint.pt    model/optimiser/scheduler state, epoch, history; loadable with torch.load(weights_only=True)
    history.csv      one row per epoch (losses, accuracies, learning rate, wall seconds), rewritten every epoch
    netspec.npz      the trained network as a NetSpec; its sha256 is metrics.json's ``netspec_sha256``
    fixed_netspec.npz  instead of netspec.npz where a run holds Loihi integers only (a netx file imported by
                     ``lavaflow import``): the FixedNetSpec; its sha256 is ``fixed_netspec_sha256``
    source.json      imported runs: the file the network came from (name, format, sha256, dt, neuron model, reset)
    metrics.json     flat, stable keys (ARCHITECTURE §3); wall times are the keys ending in ``_seconds``
    network.h5       bptt only: slayer's own network description (lava-dl netx)
    plots/, records/ figures and recorded traces (``simulate --input``: records/<backend>.npz and its raster)
    export/          ``lavaflow export``'s files (network.nir, network.net) unless told another path
    .lock            held (flock) by the training that writes the run dir

A run dir holds one run: a new training refuses a non-empty run dir unless told to overwrite it, and then first
removes every file a run writes (``clear``), so no figure of an earlier run can sit beside the new ones.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lavaflow.models.atomic import atomic_write_bytes, atomic_write_text
from lavaflow.models.errors import LavaflowError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import NetSpec


class RunDir:
    CONFIG = "config.yaml"
    CHECKPOINT = "checkpoint.pt"
    HISTORY = "history.csv"
    NETSPEC = "netspec.npz"
    FIXED_NETSPEC = "fixed_netspec.npz"
    SOURCE = "source.json"
    EXPORT = "export"
    METRICS = "metrics.json"
    NETWORK_H5 = "network.h5"
    PLOTS = "plots"
    RECORDS = "records"
    BUNDLE = "bundle"  # lavaflow deploy's default bundle
    LOCK = ".lock"
    PROBE = ".write-test-"
    # Files a run writes besides the ones above (matched by glob): reports and interrupted atomic writes.
    OWNED_PATTERNS = ("quanti[sz]ation*", ".*.tmp")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | os.PathLike) -> RunDir:
        """Make (or reuse) a writable run dir; a clear error if it cannot be written."""
        run_dir = cls(path)
        try:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            probe = run_dir.path / f"{cls.PROBE}{os.getpid()}"  # one per process: DDP workers probe at once
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
        if not any((run_dir.path / name).is_file() for name in (cls.CONFIG, cls.NETSPEC, cls.FIXED_NETSPEC)):
            raise LavaflowError(
                f"{run_dir.path} is not a lavaflow run dir (no {cls.CONFIG}, {cls.NETSPEC} or {cls.FIXED_NETSPEC}); "
                "create one with `lavaflow train ... --out DIR` or `lavaflow import FILE --out DIR`"
            )
        return run_dir

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def plots(self) -> Path:
        directory = self.path / self.PLOTS
        directory.mkdir(exist_ok=True)
        return directory

    # ---------------------------------------------------------------------------------------------- one run
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run dir for one writer: a second training into it fails at once instead of mixing files.

        flock belongs to the open file, so the kernel releases it when the process exits, however it exits (a
        crash or kill -9 leaves no stale lock). The holder's pid is written into the file for the message.
        """
        path = self.file(self.LOCK)
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise LavaflowError(
                f"cannot write to the run dir {self.path} ({error.strerror or error}); lavaflow writes its results "
                "there: copy the run dir somewhere you can write to, or fix its permissions"
            ) from None
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LavaflowError(
                    f"another lavaflow process (pid {holder}) is writing to the run dir {self.path}; wait for it to "
                    "finish, or choose another --out directory"
                ) from None
            os.ftruncate(handle, 0)
            os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(handle)

    def owned_paths(self) -> list[Path]:
        """The files and folders of a run that exist here (everything ``clear`` removes)."""
        names = [self.CONFIG, self.CHECKPOINT, self.HISTORY, self.NETSPEC, self.FIXED_NETSPEC, self.SOURCE,
                 self.METRICS, self.NETWORK_H5, self.PLOTS, self.RECORDS, self.EXPORT, self.BUNDLE]
        paths = [self.file(name) for name in names if self.file(name).exists()]
        for pattern in self.OWNED_PATTERNS:
            paths += [path for path in sorted(self.path.glob(pattern)) if path not in paths]
        return paths

    def is_empty(self) -> bool:
        """True when nothing but the lock file (or another process's write probe) is in the run dir."""
        return not self.path.exists() or all(
            entry.name == self.LOCK or entry.name.startswith(self.PROBE) for entry in self.path.iterdir()
        )

    def check_new(self, *, overwrite: bool, command: str) -> None:
        """Refuse to write a new run into a run dir holding another one, unless ``overwrite`` (then ``clear`` it).

        Call it holding ``lock``. Training has its own variant that also knows --resume (pipeline.training).

        Raises:
            LavaflowError: the run dir is not empty and ``overwrite`` is False; the message lists what it holds.
        """
        if self.is_empty():
            return
        if not overwrite:
            names = sorted(entry.name for entry in self.path.iterdir()
                           if entry.name != self.LOCK and not entry.name.startswith(self.PROBE))
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            raise LavaflowError(
                f"the run dir {self.path} is not empty (it holds {shown}); pass --overwrite to replace the run in it "
                f"(its spec, metrics, source, plots and records are deleted first), or give `lavaflow {command}` "
                "another --out directory"
            )
        self.clear()

    def clear(self, keep: tuple[str, ...] = ()) -> None:
        """Remove the files an earlier run wrote (other files are left alone), except the names in ``keep``."""
        for path in self.owned_paths():
            if path.name in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

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
        """Load safely: weights_only=True never unpickles arbitrary objects. A damaged file gets a message that
        names it, says what is wrong and what to do."""
        path = self.file(self.CHECKPOINT)
        advice = f"delete it and train again without --resume (or restore a good copy of {self.CHECKPOINT})"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise LavaflowError(f"no checkpoint in {self.path}; train first or drop --resume") from None
        if size == 0:
            raise LavaflowError(f"the checkpoint {path} is empty (0 bytes; an interrupted copy?); {advice}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises OSError, KeyError, RuntimeError, UnpicklingError, ... here
            if not zipfile.is_zipfile(path):
                what = "truncated or not a torch checkpoint (no complete zip archive)"
            elif isinstance(error, pickle.UnpicklingError):  # its text advises weights_only=False: not repeated
                what = "damaged, or holds objects other than tensors and plain values (not written by lavaflow)"
            else:
                what = f"damaged ({_reason(error)})"
            raise LavaflowError(f"the checkpoint {path} ({size} bytes) is {what}; {advice}") from None
        required = ("model", "optimizer", "scheduler", "epoch", "history")
        if not isinstance(state, dict) or any(key not in state for key in required):
            raise LavaflowError(f"the checkpoint {path} is not a lavaflow training checkpoint (it lacks "
                                f"{', '.join(required)}); {advice}")
        return state

    # ---------------------------------------------------------------------------------------------- history
    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """history.csv, one row per epoch; floats written with repr, so they read back exactly."""
        if not rows:
            self.file(self.HISTORY).unlink(missing_ok=True)
            return
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: repr(value) if isinstance(value, float) else value for key, value in row.items()}
                         for row in rows)
        atomic_write_text(self.file(self.HISTORY), stream.getvalue())

    def read_history(self) -> list[dict[str, float]]:
        """The rows of history.csv as numbers ([] when absent or unreadable: it is a record, not state)."""
        try:
            with open(self.file(self.HISTORY), newline="") as stream:
                return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(stream)]
        except (OSError, ValueError, TypeError):
            return []

    # ---------------------------------------------------------------------------------------------- netspec
    def save_netspec(self, spec: NetSpec | FixedNetSpec) -> str:
        """Write the run's network and bind it to this run: its sha256 goes into metrics.json.

        A NetSpec goes to netspec.npz (``netspec_sha256``), a FixedNetSpec (an imported netx network) to
        fixed_netspec.npz (``fixed_netspec_sha256``). The one place that records the binding (training and import
        both save through here). Returns the hash.
        """
        name = self.FIXED_NETSPEC if isinstance(spec, FixedNetSpec) else self.NETSPEC
        spec.save(self.file(name))
        digest = _sha256(self.file(name))
        self.update_metrics({_binding_key(name): digest})
        return digest

    def load_netspec(self) -> NetSpec:
        """The run's float NetSpec; refuses a netspec.npz whose hash is not the one this run recorded (a run dir
        from before the binding, whose metrics have no ``netspec_sha256``, is read as it is)."""
        path = self.file(self.NETSPEC)
        if not path.is_file():
            if self.file(self.FIXED_NETSPEC).is_file():
                raise LavaflowError(
                    f"{self.path} holds a network in Loihi integers ({self.FIXED_NETSPEC}, imported from a netx "
                    "file) and no float NetSpec; this step needs one: import a NIR file instead, or use a command "
                    "that reads fixed-point networks (simulate --backend lava-fixed or torch)"
                )
            raise LavaflowError(
                f"no {self.NETSPEC} in {self.path}; finish `lavaflow train ... --out {self.path}` first"
            )
        self._check_binding(path)
        return NetSpec.load(path)

    def load_spec(self) -> NetSpec | FixedNetSpec:
        """The run's network in whichever precision it holds: netspec.npz (trained, or imported from NIR) if
        present, else fixed_netspec.npz (imported from netx); checked against its recorded hash as ``load_netspec``.
        """
        path = self.file(self.FIXED_NETSPEC)
        if self.file(self.NETSPEC).is_file() or not path.is_file():
            return self.load_netspec()
        self._check_binding(path)
        return FixedNetSpec.load(path)

    def _check_binding(self, path: Path) -> None:
        key = _binding_key(path.name)
        recorded = self.read_metrics().get(key)
        if recorded is not None and _sha256(path) != recorded:
            raise LavaflowError(
                f"{path} is not the network this run saved (its sha256 differs from {key} in "
                f"{self.METRICS}): it was copied from another run or changed since; train or import this run "
                "again (`lavaflow train ... --resume`, `lavaflow import FILE --out RUN --overwrite`) or simulate "
                "the run dir the file came from"
            )

    # ---------------------------------------------------------------------------------------------- source
    def write_source(self, source: dict[str, Any]) -> None:
        """source.json: where an imported network came from (``lavaflow import``)."""
        atomic_write_text(self.file(self.SOURCE), json.dumps(source, indent=2, sort_keys=True) + "\n")

    def read_source(self) -> dict[str, Any]:
        """source.json as a mapping; {} for a run trained here (no source.json)."""
        path = self.file(self.SOURCE)
        if not path.is_file():
            return {}
        try:
            source = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LavaflowError(f"{path} is corrupt ({error}); import the file again with --overwrite") from None
        if not isinstance(source, dict):
            raise LavaflowError(f"{path} does not hold a mapping; import the file again with --overwrite")
        return source

    # ---------------------------------------------------------------------------------------------- metrics
    def read_metrics(self) -> dict[str, Any]:
        path = self.file(self.METRICS)
        if not path.is_file():
            return {}
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LavaflowError(f"{path} is corrupt ({error}); delete it and re-run") from None
        if not isinstance(metrics, dict):
            raise LavaflowError(f"{path} does not hold a mapping of metric names to values; delete it and re-run")
        return metrics

    def update_metrics(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into metrics.json (flat keys), atomically."""
        metrics = {**self.read_metrics(), **values}
        atomic_write_text(self.file(self.METRICS), json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return metrics


def _binding_key(name: str) -> str:
    """metrics.json's key for the sha256 of a spec file: netspec_sha256, fixed_netspec_sha256."""
    return f"{Path(name).stem}_sha256"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reason(error: BaseException) -> str:
    """A short cause for a message: the exception's text, or its type when the text is empty."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
