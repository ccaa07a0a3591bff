"""Deployment bundle: the FixedNetSpec, a netx file where netx can express it, a manifest and golden vectors.

A bundle is a directory that proves, wherever it is replayed, that the network computes what the bit-accurate
simulator computed when the bundle was written:

    manifest.json       format and version; versions of lavaflow, lava-nc, lava-dl, numpy, torch and Python; the
                        quantisation (input scale, population scales, weight exponents, the quantiser's report);
                        the run it came from (config, source, netspec hash); time steps; resources and energy in
                        brief; and the sha256 of every other file
    fixed_netspec.npz   the deploy artifact (models.fixed.FixedNetSpec)
    network.net         lava-dl netx HDF5 (what Intel's Loihi flow reads), only where the network is
                        netx-expressible; otherwise the manifest's ``netx.reason`` says why not
    golden.npz          inputs (T, N, *input_shape), the readout population's expected spike counts (N, n) and
                        chosen traces "population.variable" (T, N, n), from models.reference's integer mode
    resources.json      the resource report (deploy.resources) and the energy estimate (deploy.energy)

``read_bundle`` checks every file against its sha256 before anything is read, so a corrupted or edited file fails
naming the file; ``first_mismatch`` finds where a replay first departs from the golden vectors (sample, layer,
step). Replaying needs Lava and lives in pipeline.deployment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import platform
import secrets
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lavaflow.models.atomic import atomic_write_bytes, atomic_write_text
from lavaflow.models.errors import DataError, LavaflowError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.reference import SimulationResult, simulate

BUNDLE_FORMAT = "lavaflow-loihi2-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPEC = "fixed_netspec.npz"
NETX = "network.net"
GOLDEN = "golden.npz"
RESOURCES = "resources.json"
PACKAGES = ("lavaflow", "lava-nc", "lava-dl", "numpy", "torch", "h5py")
_COUNTS, _INPUTS, _RECORD, _NETX = "counts", "inputs", "record:", "netx_counts"  # golden.npz keys


# ------------------------------------------------------------------------------------------------ golden vectors
@dataclass(frozen=True, eq=False)
class GoldenVectors:
    """What the bit-accurate simulator produced for the bundle's inputs.

    Attributes:
        inputs: (T, N, *input_shape) exactly as the simulators take them (models.reference.simulate).
        output: the readout's source population, whose spike counts every replay must reproduce.
        counts: (N, n_output) int64 spike counts of ``output`` over the T steps.
        records: "population.variable" → (T, N, n) traces (spikes uint8; v, u int64 in 24-bit LSBs).
        netx_counts: (N, n_output) what lava-dl's netx run of the bundle's netx file must count (``netx_window``),
            or None.
    """

    inputs: np.ndarray
    output: str
    counts: np.ndarray
    records: dict[str, np.ndarray]
    netx_counts: np.ndarray | None = None

    @property
    def samples(self) -> int:
        return int(self.counts.shape[0])


def golden_vectors(spec: FixedNetSpec, inputs: np.ndarray, record: Sequence[str] = ()) -> GoldenVectors:
    """Run ``inputs`` through the bit-accurate simulator and keep the output counts and the ``record`` traces."""
    return golden_from_result(spec, inputs, simulate(spec, inputs, record=list(record)), record)


def golden_from_result(spec: FixedNetSpec, inputs: np.ndarray, result: SimulationResult,
                       record: Sequence[str]) -> GoldenVectors:
    """The golden vectors of a bit-accurate run already made (``simulate(spec, inputs, record=record)``)."""
    output = spec.readout.source
    return GoldenVectors(np.ascontiguousarray(inputs), output, result.counts[output],
                         {name: result.records[name] for name in record})


def netx_window(spec: FixedNetSpec, inputs: np.ndarray) -> np.ndarray:
    """The output counts a netx run of ``spec``'s netx file gives for ``inputs`` (T, N, ...), from the reference.

    netx (pipeline.lava.run.run_netx) presents a sample in a window of T + L steps, L the number of layers, each a
    step late, and counts the last T; that equals this spec run for T + L − 1 steps on the input padded with zeros
    (its input connection has no step of its own). Exact for chains without bias: netx resets each layer when the
    sample's first input reaches it, so a bias would drive a deeper layer for fewer steps there.
    """
    extra = len(spec.populations) - 1
    window = dataclasses.replace(spec, time_steps=spec.time_steps + extra)
    padded = np.concatenate([inputs, np.zeros((extra, *inputs.shape[1:]), dtype=inputs.dtype)])
    return simulate(window, padded).counts[spec.readout.source]


def default_record(spec: FixedNetSpec, samples: int, budget_bytes: int = 1 << 22) -> list[str]:
    """Every population's spikes when they fit ``budget_bytes`` as uint8 traces, else the output's alone: the
    traces let a replay name the layer and step where it first departs, not just the sample."""
    every = [f"{name}.spikes" for name in spec.populations]
    size = sum(p.size for p in spec.populations.values()) * spec.time_steps * samples
    return every if size <= budget_bytes else [f"{spec.readout.source}.spikes"]


def save_golden(golden: GoldenVectors) -> bytes:
    buffer = io.BytesIO()
    arrays = {_INPUTS: golden.inputs, _COUNTS: golden.counts,
              **{f"{_RECORD}{name}": values for name, values in golden.records.items()}}
    if golden.netx_counts is not None:
        arrays[_NETX] = golden.netx_counts
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_golden(path: Path, output: str) -> GoldenVectors:
    """golden.npz as written by ``save_golden``; never unpickles.

    Raises:
        DataError: naming the file, when it is unreadable or lacks inputs or counts.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable golden-vector file ({error}); run `lavaflow deploy` again") from None
    if _INPUTS not in arrays or _COUNTS not in arrays:
        raise DataError(f"{path}: holds no '{_INPUTS}' or '{_COUNTS}'; run `lavaflow deploy` again")
    records = {key[len(_RECORD):]: value for key, value in arrays.items() if key.startswith(_RECORD)}
    return GoldenVectors(arrays[_INPUTS], output, arrays[_COUNTS], records, arrays.get(_NETX))


# ------------------------------------------------------------------------------------------------ comparison
@dataclass(frozen=True)
class Mismatch:
    """Where a replay first departs from the golden vectors.

    Attributes:
        sample: index of the first sample that differs (0-based, in golden.npz's order).
        layer: the population where it first differs.
        step: the first step t = 1..T at which that layer's trace differs; None when the bundle holds no trace of
            the layer that differs (only its spike counts).
        variable: "spikes", "v", "u" (a trace) or "counts".
        neurons: the neuron indices that differ there.
        expected, got: their golden and replayed values.
    """

    sample: int
    layer: str
    step: int | None
    variable: str
    neurons: tuple[int, ...]
    expected: tuple[int, ...]
    got: tuple[int, ...]

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step is not None else "its spike counts (no trace in the bundle)"
        shown = ", ".join(f"neuron {n}: expected {e}, got {g}"
                          for n, e, g in zip(self.neurons[:5], self.expected[:5], self.got[:5], strict=True))
        more = f" and {len(self.neurons) - 5} more" if len(self.neurons) > 5 else ""
        return f"sample {self.sample}, layer {self.layer!r}, {where}: {self.variable} differ ({shown}{more})"


def first_mismatch(golden: GoldenVectors, counts: np.ndarray, records: dict[str, np.ndarray],
                   order: Sequence[str]) -> Mismatch | None:
    """The first sample whose replay differs, and in it the earliest step of any recorded trace that differs.

    Args:
        counts: (N, n_output) replayed spike counts of ``golden.output``.
        records: replayed traces, "population.variable" → (T, N, n), for (a subset of) ``golden.records``.
        order: the populations in update order: at equal steps the earlier population is named (it ran first).
    """
    if counts.shape != golden.counts.shape:
        raise DataError(f"the replay gave counts of shape {counts.shape}; the golden vectors hold "
                        f"{golden.counts.shape}")
    compared = {name: values for name, values in records.items() if name in golden.records}
    bad = ~np.all(counts == golden.counts, axis=1)
    for name, values in compared.items():
        expected = golden.records[name]
        if values.shape != expected.shape:
            raise DataError(f"the replay gave {name} of shape {values.shape}; the golden vectors hold "
                            f"{expected.shape}")
        bad |= np.any(values != expected, axis=(0, 2))
    if not bad.any():
        return None
    sample = int(np.flatnonzero(bad)[0])
    rank = {name: position for position, name in enumerate(order)}
    best: tuple[int, int, str] | None = None
    for name, values in compared.items():
        differs = np.any(values[:, sample] != golden.records[name][:, sample], axis=1)
        if differs.any():
            step = int(np.flatnonzero(differs)[0])
            key = (step, rank.get(name.rpartition(".")[0], len(rank)), name)
            best = key if best is None or key < best else best
    if best is None:  # only the counts differ, and no trace of the output was recorded
        neurons = np.flatnonzero(counts[sample] != golden.counts[sample])
        return Mismatch(sample, golden.output, None, "counts", tuple(int(n) for n in neurons),
                        tuple(int(v) for v in golden.counts[sample, neurons]),
                        tuple(int(v) for v in counts[sample, neurons]))
    step, _, name = best
    expected, got = golden.records[name][step, sample], compared[name][step, sample]
    neurons = np.flatnonzero(expected != got)
    layer, _, variable = name.rpartition(".")
    return Mismatch(sample, layer, step + 1, variable, tuple(int(n) for n in neurons),
                    tuple(int(v) for v in expected[neurons]), tuple(int(v) for v in got[neurons]))


# ------------------------------------------------------------------------------------------------ writing
def versions() -> dict[str, str | None]:
    """Installed versions of the packages a replay depends on (None where one is absent), and Python's."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_netx_file(spec: FixedNetSpec, path: Path) -> str | None:
    """Write the netx file of ``spec`` at ``path``; None on success, else the reason it cannot be written.

    netx (lava-dl's format, what Intel's Loihi flow reads) expresses feed-forward chains of CUBA neurons; the
    writer (lavaflow.deploy.netx) raises NetSpecError naming what it cannot express, and the bundle then goes
    without the file, saying why in its manifest.
    """
    try:
        from lavaflow.deploy.netx import write_netx
    except ImportError as error:
        return f"the netx writer (lavaflow.deploy.netx) cannot be imported here: {error}"
    try:
        write_netx(spec, path)
    except NetSpecError as error:
        path.unlink(missing_ok=True)
        return f"not netx-expressible: {error}"
    return None


def write_bundle(out: str | os.PathLike, spec: FixedNetSpec, golden: GoldenVectors, *,
                 manifest: dict[str, Any], resources: dict[str, Any], overwrite: bool = False) -> Path:
    """Write a bundle directory at ``out``: the spec, netx where expressible, golden vectors, resources and a
    manifest holding ``manifest``'s entries plus the format, versions, netx status and every file's sha256.

    The files are written into a temporary directory beside ``out`` and moved into place at the end, so an
    interrupted write leaves no half bundle.

    Raises:
        LavaflowError: ``out`` exists and is not empty, unless ``overwrite`` and it holds a bundle (a manifest).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite or not (out / MANIFEST).is_file():
            what = "a bundle; pass --overwrite to replace it" if (out / MANIFEST).is_file() else \
                "files that are not a bundle"
            raise LavaflowError(f"{out} is not empty (it holds {what}); choose another --out directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    temporary.mkdir()
    try:
        spec.save(temporary / SPEC)
        reason = write_netx_file(spec, temporary / NETX)
        if reason is None and golden.netx_counts is None:
            golden = dataclasses.replace(golden, netx_counts=netx_window(spec, golden.inputs))
        elif reason is not None:
            golden = dataclasses.replace(golden, netx_counts=None)
        atomic_write_bytes(temporary / GOLDEN, save_golden(golden))
        atomic_write_text(temporary / RESOURCES, json.dumps(resources, indent=2, sort_keys=True) + "\n")
        files = sorted(entry.name for entry in temporary.iterdir())
        full = {
            "format": BUNDLE_FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            **manifest,
            "netx": {"file": NETX if reason is None else None, "reason": reason,
                     "window_steps": None if reason is not None else spec.time_steps + len(spec.populations),
                     "golden": None if reason is not None else f"{GOLDEN}:{_NETX} (see deploy.bundle.netx_window)"},
            "golden": {"file": GOLDEN, "samples": golden.samples, "time_steps": int(golden.inputs.shape[0]),
                       "output": golden.output, "records": sorted(golden.records),
                       "simulator": "lavaflow.models.reference, integer mode (bit-accurate Loihi arithmetic)"},
            "files": {name: sha256_file(temporary / name) for name in files},
        }
        atomic_write_text(temporary / MANIFEST, json.dumps(full, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(temporary, out)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return out


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True, eq=False)
class Bundle:
    """A bundle read back and checked: its manifest, spec and golden vectors."""

    path: Path
    manifest: dict[str, Any]
    spec: FixedNetSpec
    golden: GoldenVectors

    @property
    def netx(self) -> Path | None:
        name = self.manifest.get("netx", {}).get("file")
        return self.path / name if name else None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the bundle at ``path``.

    Raises:
        DataError: no bundle there, an unreadable manifest, or one of another format or version.
    """
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise DataError(f"{path} is not a lavaflow bundle (no {MANIFEST}); write one with `lavaflow deploy RUN "
                        "--target loihi2 --out BUNDLE`")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{file} is corrupt ({error}); run `lavaflow deploy` again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise DataError(f"{file} is not a {BUNDLE_FORMAT} manifest; run `lavaflow deploy` again")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{file} has format version {manifest.get('format_version')!r}; this lavaflow reads "
                        f"version {FORMAT_VERSION}: run `lavaflow deploy` again with it")
    if not isinstance(manifest.get("files"), dict):
        raise DataError(f"{file} lists no files and their sha256; run `lavaflow deploy` again")
    return manifest


def check_files(path: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Raise DataError naming the first file that is missing or whose sha256 differs from the manifest's."""
    path = Path(path)
    for name, expected in sorted(manifest["files"].items()):
        file = path / name
        if Path(name).name != name or name == MANIFEST:
            raise DataError(f"{path / MANIFEST} lists {name!r}, not a file of the bundle; run `lavaflow deploy` again")
        if not file.is_file():
            raise DataError(f"{file} is missing from the bundle (the manifest lists it); copy the whole bundle "
                            "directory, or run `lavaflow deploy` again")
        actual = sha256_file(file)
        if actual != expected:
            raise DataError(f"{file}: sha256 mismatch, the file changed after the bundle was written (manifest "
                            f"{expected[:12]}…, file {actual[:12]}…); restore the original file or run "
                            "`lavaflow deploy` again")


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Read the bundle at ``path`` after checking every file against its sha256.

    Raises:
        DataError: not a bundle, a missing or changed file (named), unreadable golden vectors.
        NetSpecError: a spec file that does not load (after its hash matched: written by another version).
    """
    path = Path(path)
    manifest = read_manifest(path)
    check_files(path, manifest)
    spec = FixedNetSpec.load(path / SPEC)
    golden = load_golden(path / GOLDEN, spec.readout.source)
    if golden.inputs.shape[0] != spec.time_steps or golden.counts.shape[1:] != (spec.populations[golden.output].size,):
        raise DataError(f"{path / GOLDEN} does not match {SPEC} (inputs {golden.inputs.shape}, counts "
                        f"{golden.counts.shape}); run `lavaflow deploy` again")
    return Bundle(path, manifest, spec, golden)
