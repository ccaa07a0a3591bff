"""``lavaflow simulate``: run a run dir's NetSpec on backends and record accuracy, spike agreement and speed.

Backends: ``torch`` is the reference simulator (models.reference, float64, the NetSpec time semantics that every
trainer uses); ``lava-float`` and ``lava-fixed`` are Lava's CPU simulator with our process models (fixed point:
quantised by deploy.quantize, bit-accurate Loihi arithmetic); ``loihi2`` needs Intel's lava-loihi. Without a
choice, simulate runs torch, lava-float and lava-fixed (torch alone, with a note, when the Lava export cannot take
the network). What Lava cannot run is found before any simulation starts; long runs show a progress bar on a
terminal (Lava runs go in chunks of samples for it).

Spike agreement is the fraction of samples whose output spike counts (the readout's source population) equal the
reference simulator's in the same precision: float for lava-float, the quantised network for lava-fixed. A readout
that reads a potential (stdb's) has no output spikes to compare: there agreement is the fraction of samples whose
readout potentials (the logits) equal the reference's, to 1e-9 relative (float summation order) — they equal it
only if every spike before them did.

Which samples, and which metrics.json keys:

- By default the run's own evaluation set: its test split with the run's ``limit`` (config.yaml), encoded as the
  trainer's evaluation encodes it (same seed, same batches), i.e. the samples behind training's ``test_accuracy``.
  Figures go under ``test_accuracy_<backend>``, ``spike_agreement_<backend>``, ``samples_per_second_<backend>``,
  ``simulate_seconds_<backend>``, ``simulate_samples_<backend>`` (how many samples they measured),
  ``output_spikes_per_sample_<backend>`` and, for torch, ``spikes_per_sample``.
- ``limit`` (--limit N) that selects another subset writes the same figures with ``_first<n>`` appended to each
  key, n being the number of samples simulated (the first n of the stratified order --limit uses), so a quick
  look never overwrites the evaluation set's figures. Another data set than the run's (--data) appends
  ``_<data>`` as well.

Files: ``plots/raster_<backend>.png`` and ``plots/firing_rates_<backend>.png`` (the first samples, see
pipeline.spike_plots) and, for lava-fixed, ``quantization.txt`` (what quantisation changed, tensor by tensor).

One code path for trained and imported runs (``lavaflow import``, pipeline.interop): the run's spec is a NetSpec
(trained, or imported from NIR) or a FixedNetSpec (imported from netx, already in Loihi integers: lava-fixed runs
it as it is, torch runs the reference in its integers, lava-float cannot take it). ``encoder`` and ``steps``
replace the spec's input encoding and T. An imported run has no training config and so no evaluation set: it needs
``data``, its figures go under the plain keys (``test_accuracy_<backend>`` ...) and ``simulate_data_<backend>``,
``simulate_encoding_<backend>``, ``simulate_steps_<backend>`` say what they measured. On a trained run an encoder or
T other than the run's own appends ``_<encoder>`` or ``_T<steps>`` to the keys.

Driving a network with your own input (``simulate --input``) lives in pipeline.recording.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from lavaflow.deploy.quantize import exact_input_range, quantize
from lavaflow.models.atomic import atomic_write_text
from lavaflow.models.errors import BackendError, ConfigError, DataError, NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import Input, NetSpec, check_integer
from lavaflow.models.reference import SimulationResult, simulate
from lavaflow.pipeline.choices import DEFAULT_BACKENDS, SIMULATE_BACKENDS
from lavaflow.pipeline.config import read_yaml
from lavaflow.pipeline.data import encode, load_data
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.spike_plots import plot_firing_rates, plot_raster
from lavaflow.pipeline.training import EVALUATION_STREAM, epoch_generator

QUANTIZATION_REPORT = "quantization.txt"
REFERENCE_NEURON_STEPS = 1 << 24  # neuron updates per reference-simulator call: bounds memory, moves progress
LAVA_CHUNK = {True: 4096, False: 512}  # samples per Lava run (fused, plain): progress at ~10 % extra compile time
PLOT_SAMPLES = 16  # samples recorded step by step for the plots
FLOAT_ONLY = "lava-float"  # the backend that cannot take a FixedNetSpec
Spec = NetSpec | FixedNetSpec


@dataclass(frozen=True)
class EvaluationInputs:
    """Encoded test samples, time first (T, N, *input_shape), and their labels (N,)."""

    inputs: np.ndarray
    targets: np.ndarray


@dataclass(frozen=True)
class Samples:
    """What simulate measures on: the inputs, the metrics-key suffix ("" for the run's evaluation set), a phrase."""

    data: EvaluationInputs
    suffix: str
    description: str


def evaluation_inputs(
    spec: NetSpec, data: str, *, data_dir: str | None = None, limit: int | None = None, seed: int = 0,
    batch_size: int = 256,
) -> EvaluationInputs:
    """Encode the test split exactly as the trainer's evaluation does (same encoder, seeded generator, batches).

    A network with a flat input (n,) (a network imported from netx or NIR often has one) takes images of n pixels
    flattened in (C, H, W) row-major order, as torch's flatten writes them. A network trained on another pixel
    order (netx files store shapes as (W, H, C)) needs its samples in that order: give them with --input.

    Raises:
        DataError: the data set's samples do not fit the network's input (shape or encoding).
    """
    _, test_set, info = load_data(data, time_steps=spec.time_steps, data_dir=data_dir, limit=limit, seed=seed)
    shape = tuple(info.input_shape)
    flatten = len(spec.input.shape) == 1 and shape != spec.input.shape and int(np.prod(shape)) == spec.input.size
    if (shape != tuple(spec.input.shape) and not flatten) or spec.input.encoding not in info.encodings:
        raise DataError(
            f"the network takes {spec.input.encoding}-encoded input of shape {spec.input.shape}, but {data} gives "
            f"{info.kind.value} samples of shape {info.input_shape} (encodings {', '.join(info.encodings)}); "
            "simulate it on the data set it was trained on (leave out --data), or choose an encoding the data set "
            "offers with --encoder"
        )
    generator = epoch_generator(seed, -1, EVALUATION_STREAM)
    batches, labels = [], []
    for batch, targets in DataLoader(test_set, batch_size=batch_size):
        encoded = encode(batch, spec.input.encoding, spec.time_steps, generator).numpy()
        batches.append(encoded.reshape(*encoded.shape[:2], -1) if flatten else encoded)
        labels.append(targets.numpy())
    return EvaluationInputs(np.ascontiguousarray(np.concatenate(batches, axis=1)), np.concatenate(labels))


def with_input(
    spec: Spec, *, encoding: str | None = None, time_steps: int | None = None, input_range: float = 1.0
) -> Spec:
    """``spec`` driven another way: its input read as ``encoding`` and run for ``time_steps`` (None keeps each).

    The weights are untouched; only what the simulators check and how long they run changes. An imported file does
    not say how its input was encoded, so simulate lets the user say it (--encoder), and any T may be run. A netx
    network driven by currents gets a finer input unit (deploy.netx.current_input: a netx payload unit is a whole
    spike), fitted to inputs up to ``input_range``.

    Raises:
        ConfigError: an unknown encoding or a T below 1.
    """
    changes: dict[str, Any] = {}
    if encoding is not None and encoding != spec.input.encoding:
        if encoding not in Input.ENCODINGS:
            raise ConfigError(f"unknown encoder {encoding!r}; choose one of {', '.join(Input.ENCODINGS)}")
        changes["input"] = Input(spec.input.shape, encoding)
    if time_steps is not None and time_steps != spec.time_steps:
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ConfigError(f"--steps must be a positive number of time steps, got {time_steps!r}")
        changes["time_steps"] = time_steps
    result = dataclasses.replace(spec, **changes) if changes else spec
    if (changes and isinstance(result, FixedNetSpec) and result.metadata.get("format") == "netx"
            and result.input.encoding == "current"):
        from lavaflow.deploy.netx import current_input

        result = current_input(result, input_range)
    return result


@contextmanager
def progress(total: int, description: str) -> Iterator[Any]:
    """A tqdm bar on stderr when it is a terminal and the work is more than a moment."""
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="sample", file=sys.stderr, leave=False,
              disable=total < 100 or not sys.stderr.isatty()) as bar:
        yield bar


def reference(spec: NetSpec | FixedNetSpec, inputs: np.ndarray, batch_size: int | None = None,
              description: str = "reference") -> SimulationResult:
    """The reference simulator over all samples, in batches: 32 to 512 samples, fewer for larger networks, so
    that memory stays bounded and a progress bar moves every few seconds even for conv networks."""
    if batch_size is None:
        neurons = sum(population.size for population in spec.populations.values())
        batch_size = min(512, max(32, REFERENCE_NEURON_STEPS // (neurons * spec.time_steps)))
    batch_size = check_integer("batch_size", batch_size, 1, error=ConfigError)
    parts = []
    with progress(inputs.shape[1], description) as bar:
        for start in range(0, inputs.shape[1], batch_size):
            parts.append(simulate(spec, inputs[:, start : start + batch_size]))
            bar.update(parts[-1].predictions.shape[0])
    return SimulationResult(
        counts={name: np.concatenate([p.counts[name] for p in parts]) for name in parts[0].counts},
        rates=np.concatenate([p.rates for p in parts]),
        logits=np.concatenate([p.logits for p in parts]),
        predictions=np.concatenate([p.predictions for p in parts]),
    )


def _lava(spec: NetSpec | FixedNetSpec, inputs: np.ndarray, backend: str, fused: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(readout-source counts, logits, predictions, seconds) of a Lava run, in chunks so that progress can be
    shown."""
    from lavaflow.pipeline.lava.run import run_lava

    chunk = LAVA_CHUNK[fused]
    counts, logits, predictions, seconds = [], [], [], 0.0
    with progress(inputs.shape[1], backend) as bar:
        for start in range(0, inputs.shape[1], chunk):
            result = run_lava(spec, inputs[:, start : start + chunk], backend=backend, fused=fused, batch_size=256)
            counts.append(result.counts[spec.readout.source])
            logits.append(result.logits)
            predictions.append(result.predictions)
            seconds += result.seconds
            bar.update(len(result.predictions))
    return np.concatenate(counts), np.concatenate(logits), np.concatenate(predictions), seconds


def agreement(spec: Spec, counts: np.ndarray, logits: np.ndarray, oracle: SimulationResult) -> np.ndarray:
    """Per sample: the run equals the reference (module docstring): output spike counts, or for a potential readout
    the logits to 1e-9 relative."""
    if spec.readout.quantity == "potential":
        scale = float(np.max(np.abs(oracle.logits), initial=0.0))
        return np.all(np.abs(logits - oracle.logits) <= 1e-9 * max(scale, 1e-12), axis=1)
    return np.all(counts == oracle.counts[spec.readout.source], axis=1)


def _check_backends(spec: Spec, backends: Sequence[str]) -> None:
    """Fail at once, before any slow simulation, on a backend that cannot run here or cannot take the network."""
    unknown = [b for b in backends if b not in SIMULATE_BACKENDS]
    if unknown or not backends:
        raise BackendError(f"unknown backend {', '.join(unknown) or '(none)'}; choose from: "
                           f"{', '.join(SIMULATE_BACKENDS)}")
    if isinstance(spec, FixedNetSpec) and FLOAT_ONLY in backends:
        raise BackendError(f"{FLOAT_ONLY} simulates float networks, but this run holds its network in Loihi "
                           "integers (a FixedNetSpec, imported from a netx file); run it on lava-fixed (bit-accurate) "
                           "or torch (the reference simulator, in the same integers)")
    lava = [b for b in backends if b != "torch"]
    if not lava:
        return
    from lavaflow.deploy.lowering import check_lava_export
    from lavaflow.deploy.run_config import HARDWARE, run_config

    if HARDWARE in lava:
        run_config(HARDWARE)  # raises without lava-loihi
        raise BackendError("lavaflow's soft-reset neurons have no Loihi 2 microcode model, so --backend loihi2 "
                           "cannot run them; --backend lava-fixed computes bit for bit what Loihi 2 would")
    try:
        check_lava_export(spec)
    except NetSpecError as error:
        raise BackendError(f"{' and '.join(lava)} cannot run this network: {error}. The reference simulator runs "
                           "it as it is: --backend torch") from None


def choose_backends(spec: Spec, backends: Sequence[str] | None) -> tuple[str, ...]:
    """The backends asked for, checked; without a choice, the defaults this network can take (with a note)."""
    if backends is None:
        defaults = tuple(b for b in DEFAULT_BACKENDS if not (isinstance(spec, FixedNetSpec) and b == FLOAT_ONLY))
        try:
            _check_backends(spec, defaults)
            return defaults
        except BackendError as error:
            print(f"simulate: running torch only: {error}", file=sys.stderr, flush=True)
            return ("torch",)
    _check_backends(spec, backends)
    return tuple(backends)


def _variant(spec: Spec, encoder: str | None, steps: int | None) -> str:
    """The key suffix of a trained run driven another way than it was trained: _<encoder>, _T<steps>."""
    suffix = f"_{encoder}" if encoder is not None and encoder != spec.input.encoding else ""
    return suffix + (f"_T{steps}" if steps is not None and steps != spec.time_steps else "")


def _samples(run_dir: RunDir, spec: Spec, config: dict[str, Any], metrics: dict[str, Any], *,
             limit: int | None, data: str | None, data_dir: str | None, variant: str = "") -> Samples:
    """The run's evaluation set, or the subset ``limit``/``data`` select, with the key suffix that names it.

    ``spec`` is the network as it will be driven (``with_input``); ``variant`` the suffix its encoder or T adds on
    a trained run. A run without a training config (imported) has no evaluation set: ``data`` names the samples and
    the keys stay plain.
    """
    run_data = config.get("data") or spec.metadata.get("data")
    chosen = data or run_data
    if not chosen:
        raise ConfigError(f"{run_dir.path} names no data set (it was not trained here); pass --data NAME, and "
                          "--encoder and --steps if the network reads its input otherwise than its spec says "
                          f"({spec.input.encoding}, T = {spec.time_steps})")
    run_limit = config.get("limit")
    inputs = evaluation_inputs(spec, chosen, data_dir=data_dir or config.get("data_dir"),
                               limit=run_limit if limit is None else limit, seed=int(config.get("seed", 0)),
                               batch_size=int(config.get("test_batch_size", 256)))
    count = len(inputs.targets)
    if not config:
        return Samples(inputs, "", f"{count} test samples of {chosen} ({spec.input.encoding} encoding, "
                       f"T = {spec.time_steps})")
    run_count = metrics.get("test_samples")  # what training measured test_accuracy on
    same = limit is None or (count == run_count if run_count is not None else limit == run_limit)
    if chosen != run_data:
        return Samples(inputs, f"_{chosen}" + variant + ("" if limit is None else f"_first{count}"),
                       f"{count} test samples of {chosen}")
    if same and not variant:
        return Samples(inputs, "", f"{count} test samples, the run's evaluation set")
    if same:
        return Samples(inputs, variant, f"{count} test samples of the run's evaluation set ({spec.input.encoding} "
                       f"encoding, T = {spec.time_steps})")
    return Samples(inputs, f"{variant}_first{count}", f"{count} test samples (--limit {limit}; the run's evaluation "
                   f"set has {run_count if run_count is not None else run_limit or 'all'})")


def simulate_backends(
    run_dir: RunDir,
    backends: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    plain_graph: bool = False,
    plots: bool = True,
    encoder: str | None = None,
    steps: int | None = None,
) -> tuple[dict[str, Any], tuple[str, ...], Samples]:
    """Simulate on each backend; merge the figures into metrics.json, write plots and the quantisation report.

    Args:
        backends: the backends to run; None runs DEFAULT_BACKENDS, leaving out (with a note on stderr) the Lava
            backends when the Lava export cannot take the network, and lava-float for a FixedNetSpec.
        encoder, steps: drive the network with this input encoding and T (None: the spec's own).

    Returns:
        The merged metrics, the backends run, and the samples they were measured on (whose ``suffix`` ends
        every key written).

    Raises:
        ConfigError: a limit below 1, an unknown encoder, a run without a data set and no ``data``.
        BackendError: a backend that cannot run here or cannot take the network.
        DataError: data that does not fit the network, or missing files.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"--limit must be a positive number of test samples, got {limit!r}")
    with run_dir.lock():  # a training still writing the run dir, or another simulate, would mix the files
        return _simulate_backends(run_dir, backends, limit=limit, data=data, data_dir=data_dir,
                                  plain_graph=plain_graph, plots=plots, encoder=encoder, steps=steps)


def _simulate_backends(run_dir: RunDir, backends: Sequence[str] | None, *, limit: int | None, data: str | None,
                       data_dir: str | None, plain_graph: bool, plots: bool, encoder: str | None = None,
                       steps: int | None = None) -> tuple[dict[str, Any], tuple[str, ...], Samples]:
    own = run_dir.load_spec()
    spec = with_input(own, encoding=encoder, time_steps=steps)
    backends = choose_backends(spec, backends)
    config = read_yaml(run_dir.file(RunDir.CONFIG)) if run_dir.file(RunDir.CONFIG).is_file() else {}
    samples = _samples(run_dir, spec, config, run_dir.read_metrics(), limit=limit, data=data, data_dir=data_dir,
                       variant=_variant(own, encoder, steps))
    metrics: dict[str, Any] = {}
    for backend in backends:
        figures = _simulate_one(run_dir, spec, backend, samples, plain_graph=plain_graph, plots=plots)
        if not config:  # no evaluation set to name them: say what the figures measured
            figures.update({f"simulate_data_{backend}": data, f"simulate_encoding_{backend}": spec.input.encoding,
                            f"simulate_steps_{backend}": spec.time_steps})
        metrics = run_dir.update_metrics(figures)
    return metrics, tuple(backends), samples


def simulate_run(run_dir: RunDir, backend: str, **options: Any) -> dict[str, Any]:
    """One backend (see ``simulate_backends``); returns the merged metrics."""
    return simulate_backends(run_dir, [backend], **options)[0]


def simulated_spec(run_dir: RunDir, spec: Spec, backend: str, inputs: np.ndarray) -> Spec:
    """The network in the backend's arithmetic: quantised for lava-fixed unless it already is (an imported netx)."""
    if backend == "lava-fixed" and isinstance(spec, NetSpec):
        return _quantize(run_dir, spec, inputs)
    return spec


def _simulate_one(run_dir: RunDir, spec: Spec, backend: str, samples: Samples, *, plain_graph: bool,
                  plots: bool) -> dict[str, Any]:
    inputs, targets = samples.data.inputs, samples.data.targets
    print(f"{backend}: simulating {len(targets)} samples", file=sys.stderr, flush=True)
    simulated = simulated_spec(run_dir, spec, backend, inputs)
    started = time.perf_counter()
    oracle = reference(simulated, inputs, description=f"{backend}: reference")
    oracle_seconds = time.perf_counter() - started
    source = spec.readout.source
    if backend == "torch":
        counts, logits, predictions, seconds = oracle.counts[source], oracle.logits, oracle.predictions, oracle_seconds
    else:
        counts, logits, predictions, seconds = _lava(simulated, inputs, backend, fused=not plain_graph)
    if plots:
        _plot(run_dir, simulated, backend, inputs, targets)
    count = len(targets)
    suffix = samples.suffix
    figures = {
        f"test_accuracy_{backend}{suffix}": float(np.mean(predictions == targets)),
        f"spike_agreement_{backend}{suffix}": float(np.mean(agreement(simulated, counts, logits, oracle))),
        f"samples_per_second_{backend}{suffix}": count / seconds,
        f"simulate_seconds_{backend}{suffix}": seconds,
        f"simulate_samples_{backend}{suffix}": count,
        f"output_spikes_per_sample_{backend}{suffix}": float(counts.sum() / count),
    }
    if backend == "torch":
        figures[f"spikes_per_sample{suffix}"] = float(sum(c.sum() for c in oracle.counts.values()) / count)
    return figures


def _quantize(run_dir: RunDir, spec: NetSpec, inputs: np.ndarray) -> FixedNetSpec:
    """Quantise for lava-fixed and save the report beside the run's other files."""
    input_range, lines = 1.0, []
    if spec.input.encoding == "current":  # one intensity repeated every step: the first step holds every value
        input_range = exact_input_range(inputs[0])
        lines.append(f"input: payload = round(x · 255 / {input_range:.6g}), 8 bits (exact where the data's "
                     "intensities lie on a 1/n grid)")
    fixed, report = quantize(spec, input_range=input_range)
    path = run_dir.file(QUANTIZATION_REPORT)
    atomic_write_text(path, "\n".join([*lines, str(report)]) + "\n")
    print(f"lava-fixed: quantisation report in {path}", file=sys.stderr, flush=True)
    return fixed


def _plot(run_dir: RunDir, spec: Spec, backend: str, inputs: np.ndarray,
          targets: np.ndarray) -> None:
    """Raster and firing rates of the first samples, from the reference in the backend's arithmetic."""
    names = list(spec.populations)
    shown = inputs[:, :PLOT_SAMPLES]
    result = simulate(spec, shown, record=[f"{name}.spikes" for name in names])
    spikes = {name: result.records[f"{name}.spikes"] for name in names}
    arithmetic = "Lava fixed-point integers" if isinstance(spec, FixedNetSpec) else "float64"
    where = f"{backend}: reference simulator in {arithmetic}"
    plot_raster(spikes, targets[: shown.shape[1]], result.predictions, run_dir.plots / f"raster_{backend}.png",
                title=f"{where}; label → prediction")
    plot_firing_rates(spikes, run_dir.plots / f"firing_rates_{backend}.png",
                      title=f"{where}, first {shown.shape[1]} test samples")


def format_table(metrics: dict[str, Any], backends: Sequence[str], samples: Samples, *, quantised: bool = True
                 ) -> str:
    """The backends side by side, with training's own test accuracy where it measured the same samples.

    ``quantised``: lava-fixed quantised a float network (and wrote its report); False for a network already in
    Loihi integers.
    """
    suffix = samples.suffix
    network = " on ".join(str(metrics[key]) for key in ("method", "data") if metrics.get(key)) or "network"
    if metrics.get("imported_format"):
        network = f"imported {metrics['imported_format']} network"
    lines = [f"{network}: {samples.description}"]
    if not suffix and metrics.get("test_accuracy") is not None:
        lines[0] += f" (training measured test_accuracy {metrics['test_accuracy']:.2%} on them)"
    header = f"{'backend':<11}{'accuracy':>9}{'agreement':>11}{'samples/s':>11}{'output spikes/sample':>22}"
    lines += [header, "-" * len(header)]
    for backend in backends:
        key = f"{backend}{suffix}"
        lines.append(f"{backend:<11}{metrics[f'test_accuracy_{key}']:>9.2%}{metrics[f'spike_agreement_{key}']:>11.2%}"
                     f"{metrics[f'samples_per_second_{key}']:>11.0f}{metrics[f'output_spikes_per_sample_{key}']:>22.1f}")
    lines.append("agreement: samples whose output spike counts (for a potential readout: logits) equal the reference "
                 "simulator's in the same precision")
    lines.append(f"metrics.json: test_accuracy_<backend>{suffix}, spike_agreement_<backend>{suffix}, "
                 f"samples_per_second_<backend>{suffix}, ...")
    lines.append("plots: plots/raster_<backend>.png, plots/firing_rates_<backend>.png"
                 + (f"; quantisation report: {QUANTIZATION_REPORT}" if "lava-fixed" in backends and quantised else ""))
    return "\n".join(lines)
