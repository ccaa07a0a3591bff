"""``lavaflow deploy`` and ``lavaflow verify``: from a run dir to a Loihi 2 bundle, and a replay that checks it.

deploy (``deploy_run``): the run's network (trained here, or imported) is quantised with deploy.quantize unless it
already holds Loihi integers, checked and partitioned by the resource report (deploy.resources; a network that
cannot fit fails here, naming the layer and the fix), run through the bit-accurate simulator on a few inputs (the
golden vectors), its energy estimated from those spikes (deploy.energy), and written as a bundle (deploy.bundle).
The inputs are the first test samples of the run's data set, encoded as its evaluation encodes them
(pipeline.simulate.evaluation_inputs); a run that names no data set (an import without --data) gets seeded
synthetic inputs, and the manifest says which. metrics.json gains ``loihi2_cores``, ``loihi2_chips`` and the energy
keys (deploy.energy.EnergyEstimate.metrics).

verify (``verify_bundle``): reads a bundle (every file checked against its sha256 first), replays the golden
inputs on a backend and reports the first sample, layer and step where the replay departs from the golden
vectors. ``lava-fixed`` replays the FixedNetSpec on Lava's CPU simulator (bit-accurate; optionally also the netx
file); ``loihi2`` needs Intel's lava-loihi and the bundle's netx file. Run as the CLI command it is a fresh process
that knows nothing but the bundle.

The CLI pairs (``add_deploy_arguments`` + ``deploy_command``, ``add_verify_arguments`` + ``verify_command``) are
wired into pipeline.cli; ``python -m lavaflow.pipeline.deployment deploy|verify ...`` runs them directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lavaflow.models.errors import BackendError, ConfigError, LavaflowError
from lavaflow.pipeline.choices import positive_int

if TYPE_CHECKING:
    import numpy as np

    from lavaflow.deploy.bundle import Bundle, GoldenVectors, Mismatch
    from lavaflow.deploy.energy import EnergyEstimate
    from lavaflow.deploy.resources import ResourceReport
    from lavaflow.models.fixed import FixedNetSpec
    from lavaflow.models.netspec import NetSpec
    from lavaflow.pipeline.rundir import RunDir

# numpy, torch and Lava are imported inside the functions: the CLI builds its parser from this module (--help fast).
DEFAULT_SAMPLES = 16
BUNDLE_DIR = "bundle"  # the default bundle, inside the run dir
TARGETS = ("loihi2",)
VERIFY_BACKENDS = ("lava-fixed", "loihi2")
SYNTHETIC_RATE = 0.2  # spike probability per step of the synthetic inputs of a run without a data set


@dataclass(frozen=True)
class DeployResult:
    """What ``deploy_run`` wrote and measured."""

    bundle: Path
    report: ResourceReport
    energy: EnergyEstimate
    netx_reason: str | None  # None: the bundle holds a netx file
    inputs: str  # which inputs the golden vectors hold


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify_bundle`` found: ``mismatch`` is None when the replay reproduced every golden vector."""

    backend: str
    samples: int
    compared: tuple[str, ...]  # "counts" and the traces compared
    mismatch: Mismatch | None
    netx_mismatch: Mismatch | None = None  # the netx file's replay (lava-fixed with netx=True), if run
    netx_checked: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mismatch is None and self.netx_mismatch is None

    def __str__(self) -> str:
        what = ", ".join(self.compared)
        if self.ok:
            extra = " and the netx file reproduces the output counts" if self.netx_checked else ""
            return (f"verify: {self.samples} samples on {self.backend} reproduce the golden vectors exactly ({what})"
                    f"{extra}; {self.seconds:.1f} s")
        lines = [f"verify: MISMATCH on {self.backend} ({self.samples} samples; compared {what})"]
        if self.mismatch is not None:
            lines.append(f"  first difference: {self.mismatch}")
        if self.netx_mismatch is not None:
            lines.append(f"  the netx file's replay differs first at: {self.netx_mismatch}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ deploy
def _golden_inputs(spec: NetSpec | FixedNetSpec, config: dict[str, Any], samples: int, data: str | None,
                   data_dir: str | None, seed: int) -> tuple[np.ndarray, str]:
    """(T, N, *input_shape) inputs for the golden vectors and a phrase saying what they are."""
    import numpy as np

    name = data or config.get("data") or spec.metadata.get("data")
    if name:
        from lavaflow.pipeline.simulate import evaluation_inputs

        chosen = evaluation_inputs(spec, name, data_dir=data_dir or config.get("data_dir"), limit=samples,
                                   seed=int(config.get("seed", seed)))
        inputs = np.ascontiguousarray(chosen.inputs[:, :samples])
        return inputs, (f"the first {inputs.shape[1]} test samples of {name} ({spec.input.encoding} encoding, "
                        f"T = {spec.time_steps})")
    rng = np.random.default_rng(seed)
    shape = (spec.time_steps, samples, *spec.input.shape)
    if spec.input.encoding == "rate":
        inputs = (rng.random(shape) < SYNTHETIC_RATE).astype(np.float64)
    elif spec.input.encoding == "events":
        inputs = rng.integers(0, 3, size=shape).astype(np.float64)
    else:  # one intensity per sample, repeated every step, as the current encoder does
        inputs = np.ascontiguousarray(np.broadcast_to(rng.random((1, samples, *spec.input.shape)), shape))
    return inputs, (f"{samples} synthetic {spec.input.encoding} inputs (seed {seed}; the run names no data set: "
                    "pass --data NAME for real samples)")


def _fixed_spec(spec: NetSpec | FixedNetSpec, inputs: np.ndarray) -> tuple[FixedNetSpec, dict[str, Any]]:
    """The FixedNetSpec to deploy and the manifest's quantisation entry."""
    from lavaflow.deploy.quantize import exact_input_range, quantize
    from lavaflow.models.fixed import FixedNetSpec

    if isinstance(spec, FixedNetSpec):
        fixed, entry = spec, {"source": "the run holds Loihi integers already (imported netx): not re-quantised",
                              "report": None}
    else:
        input_range = exact_input_range(inputs[0]) if spec.input.encoding == "current" else 1.0
        fixed, report = quantize(spec, input_range=input_range)
        entry = {"source": "deploy.quantize of the run's NetSpec", "input_range": input_range,
                 "report": report.to_dict()}
    entry.update({
        "input_encoding": fixed.input.encoding,
        "input_scale": fixed.input_scale,
        "scales": {name: population.scale for name, population in fixed.populations.items()},
        "weight_exponents": {f"connection {i} ({c.source} → {c.target})": int(c.weight_exp)
                             for i, c in enumerate(fixed.connections)},
    })
    return fixed, entry


def deploy_run(run_dir: RunDir, *, target: str = "loihi2", out: str | Path | None = None,
               samples: int = DEFAULT_SAMPLES, data: str | None = None, data_dir: str | None = None,
               record: Sequence[str] | None = None, seed: int = 0, overwrite: bool = False) -> DeployResult:
    """Quantise, report resources, make golden vectors, estimate energy and write the bundle of ``run_dir``.

    Args:
        run_dir: a pipeline.rundir.RunDir (trained or imported).
        target: "loihi2".
        out: the bundle directory (default RUN/bundle).
        samples: golden-vector samples.
        data, data_dir: the data set of the golden inputs (default: the run's; synthetic inputs without one).
        record: "population.variable" traces to keep (default: every population's spikes, if small).
        overwrite: replace an existing bundle at ``out``.

    Raises:
        ConfigError: an unknown target or a sample count below 1. DoesNotFitError (a NetSpecError): the network
            cannot be placed on Loihi 2, naming each layer and its fix. DataError, LavaflowError: data or files.
    """
    from lavaflow.deploy.bundle import default_record, golden_from_result, write_bundle
    from lavaflow.deploy.energy import estimate_energy, input_events
    from lavaflow.deploy.resources import resource_report
    from lavaflow.models.fixed import input_payload
    from lavaflow.models.reference import simulate
    from lavaflow.pipeline.config import read_yaml
    from lavaflow.pipeline.rundir import RunDir

    if target not in TARGETS:
        raise ConfigError(f"unknown deploy target {target!r}; choose one of {', '.join(TARGETS)}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"--samples must be a positive number of golden-vector samples, got {samples!r}")
    bundle_path = Path(out) if out is not None else run_dir.file(BUNDLE_DIR)
    with run_dir.lock():
        spec = run_dir.load_spec()
        config = read_yaml(run_dir.file(RunDir.CONFIG)) if run_dir.file(RunDir.CONFIG).is_file() else {}
        inputs, described = _golden_inputs(spec, config, samples, data, data_dir, seed)
        fixed, quantisation = _fixed_spec(spec, inputs)
        report = resource_report(fixed)  # refuses, naming layer and fix, what Loihi 2 cannot hold
        chosen = list(dict.fromkeys(record)) if record else default_record(fixed, inputs.shape[1])
        result = simulate(fixed, inputs, record=chosen)
        golden = golden_from_result(fixed, inputs, result, chosen)
        energy = estimate_energy(fixed, report, result.counts, input_events(fixed, input_payload(fixed, inputs)))
        metrics = run_dir.read_metrics()
        manifest = {
            "target": target,
            "time_steps": fixed.time_steps,
            "run": {"run_dir": str(Path(run_dir.path).resolve()), "config": config, "source": run_dir.read_source(),
                    "netspec_sha256": metrics.get("netspec_sha256"), "method": metrics.get("method"),
                    "data": config.get("data") or data},
            "quantisation": quantisation,
            "golden_inputs": described,
            "resources": {"file": "resources.json", "cores": report.num_cores, "chips": report.num_chips,
                          "cores_per_layer": report.cores_per_layer()},
            "energy": {"joules_per_sample": energy.joules, "synaptic_ops_per_sample": energy.synaptic_ops,
                       "ann_macs_per_sample": energy.ann_macs, "figures": energy.energies.source},
        }
        manifest = json.loads(json.dumps(manifest, default=str))  # yaml dates and paths as text
        path = write_bundle(bundle_path, fixed, golden, manifest=manifest,
                            resources={"resources": report.to_dict(), "energy": energy.to_dict()},
                            overwrite=overwrite)
        run_dir.update_metrics({"loihi2_cores": report.num_cores, "loihi2_chips": report.num_chips,
                                **energy.metrics()})
    written = json.loads((path / "manifest.json").read_text())
    return DeployResult(path, report, energy, written["netx"]["reason"], described)


# ------------------------------------------------------------------------------------------------ verify
def verify_bundle(path: str | Path, backend: str = "lava-fixed", *, plain_graph: bool = False, netx: bool = False,
                  timeout_s: float | None = None) -> VerifyResult:
    """Replay the bundle's golden inputs on ``backend`` and compare with its golden vectors.

    Raises:
        DataError: not a bundle, or a file whose sha256 differs from the manifest's (named).
        BackendError: an unknown backend; loihi2 without lava-loihi, or without a netx file in the bundle.
        LavaRunError: the Lava run failed or timed out.
    """
    import numpy as np

    from lavaflow.deploy.bundle import first_mismatch, read_bundle

    if backend not in VERIFY_BACKENDS:
        raise BackendError(f"unknown verify backend {backend!r}; choose one of {', '.join(VERIFY_BACKENDS)}")
    bundle = read_bundle(path)
    if backend == "loihi2":
        return _verify_hardware(bundle, timeout_s)
    if netx and bundle.netx is None:
        raise BackendError(f"--netx: the bundle has no netx file ({bundle.manifest['netx']['reason']})")
    from lavaflow.pipeline.lava.run import run_lava

    golden, spec = bundle.golden, bundle.spec
    started = time.perf_counter()
    result = run_lava(spec, golden.inputs, backend=backend, fused=not plain_graph, batch_size=32,
                      timeout_s=timeout_s, record=list(golden.records))
    records = {name: np.ascontiguousarray(values.transpose(1, 0, 2)) for name, values in result.records.items()}
    mismatch = first_mismatch(golden, result.counts[golden.output], records, list(spec.populations))
    netx_mismatch, checked = None, False
    if netx and bundle.netx is not None:
        counts = _netx_counts(bundle, timeout_s, backend="lava-fixed")
        netx_mismatch, checked = first_mismatch(_netx_golden(bundle), counts, {}, list(spec.populations)), True
    return VerifyResult(backend, golden.samples, ("counts", *sorted(golden.records)), mismatch, netx_mismatch,
                        checked, time.perf_counter() - started)


def _netx_counts(bundle: Bundle, timeout_s: float | None, *, backend: str) -> np.ndarray:
    """Output spike counts of the bundle's netx file on ``backend``, driven by the golden inputs' payloads."""
    from lavaflow.models.fixed import input_payload
    from lavaflow.pipeline.lava.run import run_netx

    payloads = input_payload(bundle.spec, bundle.golden.inputs)
    bits = 0 if bundle.spec.input.encoding == "rate" else 8
    return run_netx(bundle.netx, payloads, input_message_bits=bits, timeout_s=timeout_s, backend=backend).counts


def _netx_golden(bundle: Bundle) -> GoldenVectors:
    """The golden vectors a netx replay is held to: netx counts over its own window (deploy.bundle.netx_window)."""
    import dataclasses

    golden = bundle.golden
    if golden.netx_counts is None:
        raise BackendError(f"{bundle.path} holds no netx golden counts; run `lavaflow deploy` again")
    return dataclasses.replace(golden, counts=golden.netx_counts, records={})


def _verify_hardware(bundle: Bundle, timeout_s: float | None) -> VerifyResult:
    """Loihi 2: the netx file on Loihi2HwCfg (lava-loihi); output counts only, the chip records no traces here."""
    from lavaflow.deploy.bundle import first_mismatch
    from lavaflow.deploy.run_config import HARDWARE, run_config

    run_config(HARDWARE)  # the one clear message when lava-loihi is absent (as simulate --backend loihi2)
    if bundle.netx is None:
        raise BackendError(
            f"Loihi 2 runs netx networks, and this bundle has none: {bundle.manifest['netx']['reason']}. lavaflow's "
            "own neuron processes have no Loihi 2 microcode; verify with --backend lava-fixed (bit-accurate)")
    started = time.perf_counter()
    counts = _netx_counts(bundle, timeout_s, backend=HARDWARE)
    mismatch = first_mismatch(_netx_golden(bundle), counts, {}, list(bundle.spec.populations))
    return VerifyResult(HARDWARE, bundle.golden.samples, ("counts",), mismatch, None, False,
                        time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------ CLI
DEPLOY_EPILOG = """\
the bundle (default RUN/bundle):
  manifest.json      versions of lavaflow, lava-nc, lava-dl; quantisation scales; the run's config; time steps;
                     cores, chips, energy; the sha256 of every file
  fixed_netspec.npz  the network in Loihi 2 integers
  network.net        lava-dl netx HDF5, where netx can express the network (else the manifest says why not)
  golden.npz         inputs, the expected output spike counts and traces, from the bit-accurate simulator
  resources.json     the resource report (per layer and per core) and the energy estimate

metrics.json gains loihi2_cores, loihi2_chips, loihi_energy_per_sample_joules, loihi_synaptic_ops_per_sample,
ann_macs_per_sample, ...

examples:
  lavaflow deploy runs/bptt --target loihi2
  lavaflow deploy runs/mnist-netx --target loihi2 --data mnist5k --samples 32 --out mnist-bundle
  lavaflow verify runs/bptt/bundle --backend lava-fixed
"""


DEPLOY_DESCRIPTION = (
    "Quantise the run's network to Loihi 2 integers (unless it holds them already), check that it fits and partition "
    "it into neurocores (a table of neurons, synapses, fan-in/out, weight bits, synaptic memory and axon routing per "
    "layer; cores and chips), run golden inputs through the bit-accurate simulator, estimate the energy per sample "
    "from their spikes, and write a bundle that `lavaflow verify` replays. A network that cannot fit fails naming "
    "the layer and the fix."
)
VERIFY_DESCRIPTION = (
    "Check every file of a bundle against the sha256 in its manifest, replay its golden inputs on a backend and "
    "compare with its golden vectors; a difference is reported with the sample, layer and step where it first "
    "appears."
)
VERIFY_EPILOG = """\
compared:
  lava-fixed  the output spike counts and every trace the bundle holds (default: every population's spikes);
              --netx also replays the netx file through lava-dl and compares its output counts
  loihi2      the netx file on Loihi 2 (needs Intel's lava-loihi): output spike counts
exit status: 0 equal, 1 a mismatch (printed), 2 a changed or missing bundle file (named) or another user error

examples:
  lavaflow verify runs/bptt/bundle
  lavaflow verify mnist-bundle --backend lava-fixed --netx
"""


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run dir written by `lavaflow train` or `lavaflow import`")
    parser.add_argument("--target", choices=TARGETS, default="loihi2", help="the chip to deploy to (loihi2)")
    parser.add_argument("--out", default=None, metavar="BUNDLE", help="bundle directory (default: RUN/bundle)")
    parser.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES, metavar="N",
                        help=f"golden-vector samples (default {DEFAULT_SAMPLES})")
    parser.add_argument("--data", default=None,
                        help="data set of the golden inputs (default: the run's; an imported run without one gets "
                             "seeded synthetic inputs)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: the run's, else "
                                                         "$LAVAFLOW_DATA_DIR)")
    parser.add_argument("--record", action="append", default=None, metavar="NAME.VAR,...",
                        help="traces to keep in the golden vectors, e.g. layer0.spikes,layer0.v (default: every "
                             "population's spikes, when they are small)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")


def deploy_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.rundir import RunDir

    record = [name.strip() for item in args.record or () for name in item.split(",") if name.strip()]
    result = deploy_run(RunDir.open(args.run_dir), target=args.target, out=args.out, samples=args.samples,
                        data=args.data, data_dir=args.data_dir, record=record or None, overwrite=args.overwrite)
    netx = "network.net (netx)" if result.netx_reason is None else f"no netx file: {result.netx_reason}"
    print(f"{result.report}\n\n{result.energy}\n\nbundle {result.bundle}: manifest.json, fixed_netspec.npz, "
          f"golden.npz ({result.inputs}), resources.json; {netx}\n"
          f"next: lavaflow verify {result.bundle} --backend lava-fixed")
    return 0


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle directory written by `lavaflow deploy`")
    parser.add_argument("--backend", choices=VERIFY_BACKENDS, default="lava-fixed",
                        help="lava-fixed (Lava's bit-accurate CPU simulator) or loihi2 (needs Intel's lava-loihi)")
    parser.add_argument("--plain-graph", action="store_true",
                        help="lava-fixed: replay on the Dense + neuron graph that targets Loihi (slow) instead of "
                             "the fused CPU model")
    parser.add_argument("--netx", action="store_true",
                        help="lava-fixed: also replay the bundle's netx file through lava-dl's netx loader")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop a replay that takes longer")


def verify_command(args: argparse.Namespace) -> int:
    result = verify_bundle(args.bundle, args.backend, plain_graph=args.plain_graph, netx=args.netx,
                           timeout_s=args.timeout)
    print(result, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lavaflow.pipeline.deployment deploy|verify ...``: the two commands without the full CLI."""
    parser = argparse.ArgumentParser(prog="python -m lavaflow.pipeline.deployment")
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    deploy = commands.add_parser("deploy", description=textwrap.fill(DEPLOY_DESCRIPTION, 100), epilog=DEPLOY_EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_deploy_arguments(deploy)
    deploy.set_defaults(handler=deploy_command)
    verify = commands.add_parser("verify", description=textwrap.fill(VERIFY_DESCRIPTION, 100), epilog=VERIFY_EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verify_arguments(verify)
    verify.set_defaults(handler=verify_command)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except LavaflowError as error:
        message = textwrap.fill(str(error), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"lavaflow: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
