"""``lavaflow simulate --input``: drive a run's network with your own input and record its traces.

One sample of T steps, (T, n_in) spikes, event counts or currents (T need not be the spec's), runs on each backend
with per-step records of "population.variable" traces, written as ``records/<backend>.npz`` ((T, n) per trace; v
and u in float, or in 24-bit integer LSBs for lava-fixed) with a picture, ``records/raster_<backend>.png``. Lava
backends are checked against the reference simulator in the same precision on the same input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavaflow.models.atomic import atomic_write_bytes
from lavaflow.models.errors import ConfigError, DataError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.reference import simulate
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.simulate import Spec, choose_backends, simulated_spec, with_input
from lavaflow.pipeline.spike_plots import plot_traces


@dataclass(frozen=True)
class Recorded:
    """One backend's run of ``record_input``.

    Attributes:
        backend: the backend.
        records: "population.variable" → (T, n) per-step values (spikes uint8; v, u float64, or int64 24-bit LSBs
            in fixed point), as saved in ``path``.
        path: RUN/records/<backend>.npz.
        plot: RUN/records/raster_<backend>.png.
        reference_equal: Lava backends: whether every trace equals the reference simulator's in the same precision
            on the same input (spikes exactly; v and u exactly in fixed point, to 1e-9 relative in float). None
            for torch, which is the reference.
    """

    backend: str
    records: dict[str, np.ndarray]
    path: Path
    plot: Path
    reference_equal: bool | None


def load_input(path: str | os.PathLike, spec: Spec) -> np.ndarray:
    """A .npy of one sample, (T, n_in) or (T, *input_shape), as the simulators' (T, 1, *input_shape) float64.

    Raises:
        DataError: a missing or unreadable file, an array that is not real numbers, of another shape (the message
            names the one expected), empty, or holding NaN or inf.
    """
    path = Path(path)
    shape, size = tuple(spec.input.shape), spec.input.size
    expected = f"(T, {size})" + (f" or (T, {', '.join(map(str, shape))})" if len(shape) > 1 else "")
    try:
        values = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"no input file {path}; save one sample's input as a {expected} array with numpy.save "
                        "(T time steps of spikes, event counts or currents)") from None
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path} is not a readable .npy array ({error}); save a {expected} array with numpy.save "
                        "(not an .npz, not pickled objects)") from None
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "buif":
        raise DataError(f"{path} holds {getattr(values, 'dtype', type(values).__name__)} values; the network takes "
                        f"real numbers of shape {expected}")
    if values.ndim == 2 and values.shape[1] == size:
        values = values.reshape(values.shape[0], *shape)
    elif values.shape[1:] != shape or values.ndim < 2:
        raise DataError(f"{path} holds an array of shape {values.shape}; the network takes one sample of shape "
                        f"{expected}: T time steps (any T ≥ 1) of its {size} inputs")
    if values.shape[0] == 0:
        raise DataError(f"{path} holds no time steps (shape {values.shape}); the network takes {expected}, T ≥ 1")
    if not np.all(np.isfinite(values)):
        where = np.argwhere(~np.isfinite(values.reshape(values.shape[0], -1)))[0]
        raise DataError(f"{path} holds NaN or inf (first at step {where[0]}, input {where[1]}); the network takes "
                        f"finite values of shape {expected}")
    return np.ascontiguousarray(values[:, None], dtype=np.float64)


def record_input(run_dir: RunDir, backends: Sequence[str] | None, input_path: str | os.PathLike, *,
                 record: Sequence[str] = (), encoder: str | None = None, plain_graph: bool = False) -> list[Recorded]:
    """Drive the run's network with one sample of your own and record traces on each backend.

    Args:
        backends: as ``simulate_backends`` (None: the defaults this network can take).
        input_path: a .npy of (T, n_in) spikes, event counts or currents (``load_input``); T sets the run length.
        record: "population.variable" names ("spikes", "v", and "u" for CUBA kinds); default: every population's
            spikes.
        encoder: how the values are read (default: the spec's input encoding): rate takes 0/1 spikes, events
            integer counts, current any real values (in fixed point mapped to 8-bit payloads by the spec's input
            scale).

    Returns:
        One ``Recorded`` per backend, in order; records/<backend>.npz and records/raster_<backend>.png written.

    Raises:
        DataError: a bad input file, or values the encoding cannot take. ConfigError: an unknown record name (the
            message lists them) or encoder. BackendError: as ``simulate_backends``.
    """
    if isinstance(record, str):
        raise ConfigError(f"record must be a sequence of names, got the string {record!r}")
    with run_dir.lock():
        own = run_dir.load_spec()
        inputs = load_input(input_path, own)
        spec = with_input(own, encoding=encoder, time_steps=inputs.shape[0],
                          input_range=max(1.0, float(np.max(inputs, initial=0.0))))
        try:
            spec.input.check_values(inputs)
        except DataError as error:
            raise DataError(f"{input_path}: {error}; the network reads its input as {spec.input.encoding} (pass "
                            "--encoder current to feed real values as input currents)") from None
        chosen = choose_backends(spec, backends)
        names = list(dict.fromkeys(record)) or [f"{name}.spikes" for name in spec.populations]
        return [_record_one(run_dir, spec, backend, inputs, names, plain_graph=plain_graph) for backend in chosen]


def _record_one(run_dir: RunDir, spec: Spec, backend: str, inputs: np.ndarray, names: list[str], *,
                plain_graph: bool) -> Recorded:
    simulated = simulated_spec(run_dir, spec, backend, inputs)
    oracle = {name: values[:, 0] for name, values in simulate(simulated, inputs, record=names).records.items()}
    equal: bool | None = None
    if backend == "torch":
        records = oracle
    else:
        from lavaflow.pipeline.lava.run import run_lava

        result = run_lava(simulated, inputs, backend=backend, fused=not plain_graph, batch_size=1, record=names)
        records = {name: np.ascontiguousarray(result.records[name][0]) for name in names}
        equal = all(_same(records[name], oracle[name], exact=isinstance(simulated, FixedNetSpec) or
                          name.endswith(".spikes")) for name in names)
    directory = run_dir.file(RunDir.RECORDS)
    path, plot = directory / f"{backend}.npz", directory / f"raster_{backend}.png"
    buffer = io.BytesIO()
    np.savez(buffer, **records)
    atomic_write_bytes(path, buffer.getvalue())
    arithmetic = "Lava fixed-point integers" if isinstance(simulated, FixedNetSpec) else "float"
    plot_traces(records, plot, title=f"{backend} ({arithmetic}), your input: T = {inputs.shape[0]} steps")
    return Recorded(backend, records, path, plot, equal)


def _same(values: np.ndarray, expected: np.ndarray, *, exact: bool) -> bool:
    if values.shape != expected.shape:
        return False
    if exact:
        return bool(np.array_equal(values, expected))
    return bool(np.allclose(values, expected, rtol=1e-9, atol=1e-12))


def format_records(recorded: Sequence[Recorded]) -> str:
    """What each backend recorded: the files, each trace's shape and spike count, and agreement with the reference."""
    lines = []
    for item in recorded:
        check = {None: "", True: "; equal to the reference simulator's", False: "; DIFFERENT from the reference "
                 "simulator's in the same precision (please report this)"}[item.reference_equal]
        lines.append(f"{item.backend}: {item.path} ({len(item.records)} traces{check}), raster {item.plot}")
        for name, values in item.records.items():
            detail = f"{int(values.sum())} spikes" if name.endswith(".spikes") else \
                f"range [{values.min():.6g}, {values.max():.6g}]"
            lines.append(f"  {name:<24} {values.shape!s:<12} {detail}")
    lines.append("load with numpy.load(PATH): one (T, n) array per \"population.variable\"")
    return "\n".join(lines)
