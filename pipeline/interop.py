"""``lavaflow import`` and ``lavaflow export``: networks trained elsewhere in, ours out, as lava-dl netx or NIR files.

Import reads the whole file before it touches the run dir, so a bad file (not HDF5, wrong layout, NaN weights, an
unknown block or node) fails with a user error and leaves the run dir as it was. The run dir then gets:

    netspec.npz or fixed_netspec.npz   the network: a NetSpec (NIR: real values) or a FixedNetSpec (netx: Loihi
                                       integers), whatever the reader returns
    source.json                        file, format, sha256, dt, neuron_model, reset_mode, time_steps
    metrics.json                       netspec_sha256 or fixed_netspec_sha256 (binds the spec file to the run),
                                       time_steps, imported_format

Both formats are HDF5. Without --format the layout decides: a top-level ``layer`` group is lava-dl's netx
(``netx.hdf5.Network`` reads ``layer/0``, ``layer/1``, ...), a top-level ``node`` group is NIR (``nir.write``).

The readers and writers live in lavaflow.deploy.netx and lavaflow.deploy.nir_graph; they are imported only when a
command needs them (``READERS``/``WRITERS`` name them), so the CLI starts fast and a missing writer fails one command.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lavaflow.deploy.imported import ImportedNetwork
from lavaflow.models.errors import ConfigError, DataError, LavaflowError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import NetSpec
from lavaflow.pipeline.rundir import RunDir

FORMATS = ("netx", "nir")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096)  # where HDF5 may place its superblock (a user block before it)
READERS = {"netx": ("lavaflow.deploy.netx", "read_netx"), "nir": ("lavaflow.deploy.nir_graph", "read_nir")}
WRITERS = {"netx": ("lavaflow.deploy.netx", "write_netx"), "nir": ("lavaflow.deploy.nir_graph", "write_nir")}
EXPORT_NAMES = {"netx": "network.net", "nir": "network.nir"}  # lava-dl's trained netx files end in .net
DEFAULT_TIME_STEPS = 32
# What a reader may raise on a damaged file besides our own errors; turned into a DataError naming the file.
_FILE_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, EOFError)


@dataclass(frozen=True)
class ImportResult:
    """What ``import_network`` wrote: the run dir, the network as read, and source.json's contents."""

    run_dir: RunDir
    network: ImportedNetwork
    source: dict[str, Any]


def _function(table: dict[str, tuple[str, str]], format_name: str) -> Callable[..., Any]:
    """The reader or writer of a format, imported now (the modules are heavy: h5py, nir, lava-dl)."""
    module_name, function_name = table[format_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{format_name} files need {module_name}, which cannot be imported here ({error}); "
                          "reinstall lavaflow with its dependencies (pip install -e .)") from None
    return getattr(module, function_name)


def detect_format(path: str | os.PathLike) -> str:
    """"netx" or "nir", from the file's HDF5 layout: a top-level ``layer`` group (netx) or ``node`` group (NIR).

    Raises:
        DataError: a missing or unreadable file, a file that is not HDF5, or HDF5 of neither layout.
    """
    path = Path(path)
    header = _read_head(path)
    if not any(header[offset : offset + 8] == HDF5_SIGNATURE for offset in HDF5_SIGNATURE_OFFSETS):
        raise DataError(
            f"{path} is not an HDF5 file (no HDF5 signature in its first bytes); lavaflow imports lava-dl netx "
            "files (.net, .h5, written by slayer's export_hdf5) and NIR files (.nir, written by nir.write), which "
            "are both HDF5"
        )
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            keys = sorted(handle.keys())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is a damaged HDF5 file ({error}); export it again from the tool that wrote "
                        "it") from None
    if "layer" in keys and "node" not in keys:
        return "netx"
    if "node" in keys and "layer" not in keys:
        return "nir"
    raise DataError(
        f"{path} is HDF5 but neither a netx file (a top-level 'layer' group) nor a NIR file (a top-level 'node' "
        f"group); its top level holds {keys or 'nothing'}. Pass --format netx or --format nir if you know which it "
        "is meant to be"
    )


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read(max(HDF5_SIGNATURE_OFFSETS) + 8)
    except FileNotFoundError:
        raise DataError(f"no file {path}; give the path of a netx (.net/.h5) or NIR (.nir) file") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory; give the path of a netx (.net/.h5) or NIR (.nir) file") from None
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror or error})") from None


def read_network(path: str | os.PathLike, *, format_name: str | None = None, dt: float | None = None,
                 time_steps: int = DEFAULT_TIME_STEPS) -> ImportedNetwork:
    """Read a netx or NIR file into an ImportedNetwork, writing nothing.

    Args:
        format_name: "netx", "nir", or None to detect it (``detect_format``).
        dt: seconds per step, needed by NIR (continuous-time parameters); netx is already in steps.
        time_steps: T of the spec (steps per sample; ``simulate --steps``/``--input`` may run other lengths).

    Raises:
        ConfigError: an unknown format, a NIR file without dt, a bad dt or time_steps.
        DataError: a file that cannot be read as that format; NetSpecError: a network lavaflow cannot express.
    """
    path = Path(path)
    if format_name is not None and format_name not in FORMATS:
        raise ConfigError(f"unknown format {format_name!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ConfigError(f"--steps must be a positive number of time steps, got {time_steps!r}")
    _check_dt(dt)
    detected = detect_format(path)
    chosen = format_name or detected
    if chosen != detected:
        raise DataError(f"{path} has the layout of a {detected} file, not {chosen}; leave out --format or pass "
                        f"--format {detected}")
    if chosen == "nir" and dt is None:
        raise ConfigError(
            f"{path} is a NIR file, whose neuron parameters are continuous-time (tau, r in seconds); pass --dt "
            "SECONDS, the time step the network was simulated with by the tool that exported it"
        )
    reader = _function(READERS, chosen)
    try:
        if chosen == "nir":
            network = reader(path, dt=dt, time_steps=time_steps)
        else:
            network = reader(path, time_steps=time_steps)
    except LavaflowError:
        raise
    except _FILE_ERRORS as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataError(f"{path} is not a readable {chosen} file ({type(error).__name__}"
                        f"{': ' + text if text else ''}); export it again from the tool that wrote it") from None
    if not isinstance(network, ImportedNetwork) or not isinstance(network.spec, (NetSpec, FixedNetSpec)):
        raise TypeError(f"{READERS[chosen][0]} returned {type(network).__name__}, not an ImportedNetwork")
    return network


def _check_dt(dt: float | None) -> None:
    if dt is None:
        return
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0 or dt == float("inf"):
        raise ConfigError(f"--dt must be a positive, finite number of seconds, got {dt!r}")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_network(path: str | os.PathLike, out: str | os.PathLike, *, format_name: str | None = None,
                   dt: float | None = None, time_steps: int = DEFAULT_TIME_STEPS,
                   overwrite: bool = False) -> ImportResult:
    """Read a netx or NIR file and write a run dir that ``simulate`` and ``export`` take like a trained one.

    The file is read and checked first; only then is the run dir created, locked and checked (empty, or
    ``overwrite``), so a bad file or a refused run dir leaves it as it was.

    Raises:
        DataError, ConfigError, NetSpecError: see ``read_network``. LavaflowError: the run dir is not empty
            (without ``overwrite``), is being written by another process, or cannot be written.
    """
    path = Path(path)
    network = read_network(path, format_name=format_name, dt=dt, time_steps=time_steps)
    digest = sha256_of(path)
    if not overwrite and Path(out).is_dir():
        RunDir(out).check_new(overwrite=False, command="import")  # refuse before the lock file is created
    run_dir = RunDir.create(out)
    spec = network.spec
    source = {
        "file": str(path.resolve()),
        "format": network.format,
        "sha256": digest,
        "dt": network.dt,
        "neuron_model": network.neuron_model,
        "reset_mode": network.reset_mode,
        "time_steps": spec.time_steps,
        "spec": RunDir.FIXED_NETSPEC if isinstance(spec, FixedNetSpec) else RunDir.NETSPEC,
    }
    with run_dir.lock():
        run_dir.check_new(overwrite=overwrite, command="import")
        # source.json first: a run dir is readable only once its spec file exists, which comes last.
        run_dir.write_source(source)
        run_dir.update_metrics({"time_steps": spec.time_steps, "imported_format": network.format})
        run_dir.save_netspec(spec)
    return ImportResult(run_dir, network, source)


def export_network(run_dir: RunDir, format_name: str, *, out: str | os.PathLike | None = None,
                   dt: float | None = None, approximate: bool = False) -> Path:
    """Write the run's network as a netx or NIR file; returns its path (default RUN/export/network.net|.nir).

    Args:
        dt: seconds per step for NIR's continuous-time parameters (default: the dt the run was imported with).
        approximate: where the format cannot express the network exactly, write the nearest it can instead of
            refusing: netx writes soft-reset neurons as netx's zero-reset CUBA; NIR, which holds real values,
            takes a network in Loihi integers (an imported netx file) scaled back to floats
            (deploy.quantize.dequantize), whose float dynamics differ from the integer ones by rounding.

    Raises:
        ConfigError: an unknown format, a missing or bad dt, a fixed-point network to NIR without ``approximate``,
            ``approximate`` where nothing needs it. NetSpecError: a network the format cannot express (the writer
            names the population and why).
    """
    if format_name not in FORMATS:
        raise ConfigError(f"unknown format {format_name!r}; choose one of {', '.join(FORMATS)}")
    _check_dt(dt)
    spec: NetSpec | FixedNetSpec = run_dir.load_spec()
    if format_name == "nir":
        if isinstance(spec, FixedNetSpec) and not approximate:
            raise ConfigError(
                f"{run_dir.path} holds its network in Loihi integers (imported from netx), and NIR holds real "
                "values with float dynamics, which round differently; pass --approximate to write the integers "
                "scaled back to floats, or export it with --format netx (exact)"
            )
        if isinstance(spec, NetSpec) and approximate:
            raise ConfigError("NIR takes this float network as it is, or refuses a neuron it cannot express; "
                              "--approximate changes nothing here: leave it out")
        if dt is None:
            dt = run_dir.read_source().get("dt")
        if dt is None:
            raise ConfigError("NIR stores continuous-time parameters; pass --dt SECONDS, the time step a NIR "
                              "simulator should assume (e.g. --dt 0.001 for 1 ms steps)")
        _check_dt(dt)
        if isinstance(spec, FixedNetSpec):
            from lavaflow.deploy.quantize import dequantize

            spec = dequantize(spec)
    target = Path(out) if out is not None else run_dir.file(RunDir.EXPORT) / EXPORT_NAMES[format_name]
    writer = _function(WRITERS, format_name)
    created = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writers write HDF5 in place; a temporary name and a rename keep a crash from leaving half a file.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with run_dir.lock():
        try:
            if format_name == "nir":
                writer(spec, temporary, dt=dt)
            else:
                writer(spec, temporary, approximate=approximate)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
            if created and not target.exists():
                with contextlib.suppress(OSError):
                    target.parent.rmdir()
    return target
