"""The ``lavaflow`` command: each subcommand is a short function over library code.

User errors (unknown data set or method, missing files, bad config, unwritable run dir) exit with status 2 and a
one-paragraph message, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from lavaflow.models.errors import ConfigError, LavaflowError
from lavaflow.pipeline.choices import BENCHMARKS, DEFAULT_BACKENDS, METHODS, SIMULATE_BACKENDS, positive_int

EXIT_USER_ERROR = 2
ENCODERS = ("current", "rate", "events")  # models.netspec.Input.ENCODINGS, without importing numpy
FORMATS = ("netx", "nir")  # pipeline.interop.FORMATS

EPILOG = """\
examples:
  lavaflow demo                                         # the whole pipeline on the embedded digits data
  lavaflow train --method bptt --data digits --out runs/bptt
  lavaflow train --method ide --data fashion-mnist --epochs 5 --out runs/ide-fmnist
  lavaflow train --method spide --backend lava --out runs/spide-lava   # SPIDE trained inside a Lava graph
  lavaflow simulate runs/bptt                           # reference, Lava float and fixed point side by side
  lavaflow import trained.net --out runs/mine           # a lava-dl netx (or NIR) network trained elsewhere
  lavaflow simulate runs/mine --backend lava-fixed --input spikes.npy --record dense1.v,dense1.spikes
  lavaflow export runs/bptt --format nir --dt 0.001     # our network for other tools
  lavaflow deploy runs/bptt --target loihi2             # cores, chips, energy; RUN/bundle with golden vectors
  lavaflow verify runs/bptt/bundle --backend lava-fixed # replay the bundle, report the first mismatch
  torchrun --nproc_per_node=2 -m lavaflow.pipeline.cli train --method ide --data digits --out runs/ddp
"""


def _train_flags(args: argparse.Namespace) -> dict[str, object]:
    """Only the options the user gave: they override the preset and the config file."""
    return {
        "method": args.method,
        "data": args.data,
        "epochs": args.epochs,
        "time_steps": args.time_steps,
        "seed": args.seed,
        "device": args.device,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "data_dir": args.data_dir,
        "limit": args.limit,
        "encoding": args.encoding,
        "threads": args.threads,
    }


def train_command(args: argparse.Namespace) -> int:
    import os

    from lavaflow.pipeline.config import resolve_config
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.training import train

    try:
        config, model_config, method = resolve_config(args.method, args.data, args.config, _train_flags(args))
        run_dir = RunDir.create(args.out)
        if args.backend == "torch":
            metrics = train(config, model_config, method, run_dir, resume=args.resume, overwrite=args.overwrite)
        else:
            from lavaflow.pipeline.spide_lava import train_spide_lava

            metrics = train_spide_lava(
                config, model_config, run_dir, backend=args.backend, overwrite=args.overwrite, resume=args.resume
            )
    except LavaflowError:
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun every worker fails alike: rank 0 says it once
            return EXIT_USER_ERROR
        raise
    if metrics:
        print(
            f"{config.method} on {config.data}: test accuracy {metrics['test_accuracy']:.2%} after "
            f"{metrics['epochs']} epochs ({metrics['train_seconds']:.0f} s); run dir {run_dir.path}"
        )
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.demo import run_demo

    run_demo(Path(args.out))
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.recording import format_records, record_input
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.simulate import format_table, simulate_backends

    run_dir = RunDir.open(args.run_dir)
    chosen = list(dict.fromkeys(args.backend)) if args.backend else None  # each once, in the order given
    record = [name.strip() for item in args.record or () for name in item.split(",") if name.strip()]
    if args.input is None:
        if record:
            raise ConfigError("--record records the traces of one input you give: pass --input SPIKES.npy, a (T, "
                              "n_in) array, with it")
        metrics, backends, samples = simulate_backends(run_dir, chosen, limit=args.limit, data=args.data,
                                                       data_dir=args.data_dir, plain_graph=args.plain_graph,
                                                       encoder=args.encoder, steps=args.steps)
        print(format_table(metrics, backends, samples, quantised=run_dir.file(RunDir.NETSPEC).is_file()))
        return 0
    given = [flag for flag, value in (("--data", args.data), ("--limit", args.limit), ("--steps", args.steps),
                                      ("--data-dir", args.data_dir)) if value is not None]
    if given:
        raise ConfigError(f"--input drives the network with your file, whose first axis sets T; leave out "
                          f"{', '.join(given)} (they select data set samples, the other way to simulate)")
    recorded = record_input(run_dir, chosen, args.input, record=record, encoder=args.encoder,
                            plain_graph=args.plain_graph)
    print(format_records(recorded))
    return 0


def import_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.interop import import_network

    result = import_network(args.file, args.out, format_name=args.format, dt=args.dt, time_steps=args.steps,
                            overwrite=args.overwrite)
    network, spec = result.network, result.network.spec
    if args.dt is not None and network.dt is None:
        print(f"lavaflow: notice: {network.format} files are already in time steps; --dt was not used",
              file=sys.stderr)
    kind = "Loihi integers (FixedNetSpec)" if result.source["spec"] != "netspec.npz" else "float (NetSpec)"
    sizes = " → ".join([str(spec.input.size), *(str(p.size) for p in spec.populations.values())])
    dt = f", dt {network.dt:g} s" if network.dt is not None else ""
    print(f"imported {network.format} network {sizes} ({network.neuron_model}, {network.reset_mode} reset{dt}, "
          f"T = {spec.time_steps}) in {kind}\n"
          f"run dir {result.run_dir.path}: {result.source['spec']}, source.json\n"
          f"next: lavaflow simulate {result.run_dir.path} --input SPIKES.npy  (a (T, {spec.input.size}) array)")
    return 0


def export_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.interop import export_network
    from lavaflow.pipeline.rundir import RunDir

    path = export_network(RunDir.open(args.run_dir), args.format, out=args.out, dt=args.dt,
                          approximate=args.approximate)
    print(f"wrote {path} ({args.format})")
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.benchmarks import run_benchmark

    print(run_benchmark(args.name, quick=args.quick))
    return 0


def _positive_seconds(text: str) -> float:
    """argparse type: a time step in seconds, positive and finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, e.g. 0.001, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, got {text}")
    return value


SIMULATE_EPILOG = """\
samples and metrics.json keys:
  By default simulate uses the run's own evaluation set (its test split with the run's --limit), the samples
  behind training's test_accuracy, and writes per backend:
    test_accuracy_<backend>, spike_agreement_<backend>, samples_per_second_<backend>,
    simulate_seconds_<backend>, simulate_samples_<backend> (how many samples), output_spikes_per_sample_<backend>,
    and spikes_per_sample (torch).
  --limit N selecting another subset writes the same keys with _first<n> appended (n = samples simulated), e.g.
  test_accuracy_torch_first5, so a quick look never overwrites the evaluation set's figures; --data NAME other
  than the run's appends _NAME; --encoder or --steps other than the run's append _<encoder> or _T<steps>.
  An imported run (lavaflow import) has no evaluation set: give --data NAME (and --encoder/--steps if its input
  is read otherwise than its spec says); its figures go under the plain keys, beside simulate_data_<backend>,
  simulate_encoding_<backend> and simulate_steps_<backend>. A netx import holds Loihi integers: it runs on
  lava-fixed and torch (the reference in the same integers), not lava-float.

your own input (--input):
  SPIKES.npy is one sample, a (T, n_in) array (or (T, *input_shape)) of spikes (0/1), event counts or currents;
  T may differ from the run's. --encoder says how the values are read (default: the network's own encoding):
  rate = 0/1 spikes, events = integer counts, current = any real values (in fixed point mapped to 8-bit payloads
  by the network's input scale). Each backend writes
    RUN/records/<backend>.npz        one (T, n) array per --record trace (default: every population's spikes);
                                     spikes 0/1, v and u in float, or in 24-bit integer LSBs on lava-fixed
    RUN/records/raster_<backend>.png spikes as rasters, v and u as heat maps
  and the Lava backends are checked against the reference simulator on the same input.

files:
  RUN/plots/raster_<backend>.png        spike rasters of the first test samples, every population
  RUN/plots/firing_rates_<backend>.png  firing rate per population and its spread over neurons
  RUN/quantization.txt                  lava-fixed: per tensor the largest error, what clipped, what rounded to
                                        zero, the scales and the input payload mapping

examples:
  lavaflow simulate runs/ide                         # torch, lava-float and lava-fixed, as a table
  lavaflow simulate runs/ide --backend lava-fixed --limit 50
  lavaflow simulate runs/mine --backend lava-fixed --input spikes.npy --record dense1.v,dense1.spikes
  lavaflow simulate runs/mnist-netx --data mnist5k --encoder rate --steps 32 --limit 1000 --backend lava-fixed
"""


def _add_simulate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a trained or imported network on backends (reference, Lava float, Lava fixed point) and "
             "compare them, or drive it with your own input and record traces",
        description=textwrap.fill(
            "Simulate the run dir's network on its test samples, print a table of accuracy, spike agreement and "
            "speed per backend, and merge the figures into metrics.json. Backends: torch (the reference "
            "simulator, float64), lava-float and lava-fixed (Lava's CPU simulator; fixed point is quantised to "
            "Loihi 2's bit widths and bit-accurate), loihi2 (needs Intel's lava-loihi). Spike agreement is the "
            "fraction of samples whose output spike counts equal the reference simulator's in the same precision.",
            width=100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SIMULATE_EPILOG,
    )
    parser.add_argument("run_dir", help="a run dir written by `lavaflow train` or `lavaflow import`")
    parser.add_argument("--backend", action="append", choices=SIMULATE_BACKENDS, default=None,
                        help=f"backend to run; repeat for several (default: {' '.join(DEFAULT_BACKENDS)}, or torch "
                             "alone when the Lava export cannot take the network)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="simulate only the first N test samples, classes taken in turn (default: the run's "
                             "evaluation set); figures of another subset go under keys ending in _first<n>")
    parser.add_argument("--data", default=None, help="data set (default: the one the run was trained on)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory (default: the run's data_dir, else $LAVAFLOW_DATA_DIR, else "
                             "~/.cache/lavaflow/data)")
    parser.add_argument("--encoder", choices=ENCODERS, default=None,
                        help="how input values are read: current, rate (0/1 spikes) or events (counts); default: "
                             "the network's own encoding")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="T",
                        help="time steps per data set sample (default: the network's own T)")
    parser.add_argument("--input", default=None, metavar="SPIKES.npy",
                        help="drive the network with one sample of your own, a (T, n_in) .npy array, instead of "
                             "data set samples; writes RUN/records/<backend>.npz and a raster")
    parser.add_argument("--record", action="append", default=None, metavar="NAME.VAR,...",
                        help="with --input: the traces to record, comma-separated population.variable names "
                             "(spikes, v, and u for CUBA neurons), e.g. layer0.v,layer0.spikes (default: every "
                             "population's spikes)")
    parser.add_argument("--plain-graph", action="store_true",
                        help="run the graph of Dense + neuron processes that targets Loihi (slow) instead of the "
                             "fused, batched CPU model")
    parser.set_defaults(handler=simulate_command)


IMPORT_EPILOG = """\
formats (detected when --format is left out; both are HDF5, told apart by their top level):
  netx  lava-dl's network file (slayer's export_hdf5, netx.hdf5.Network's input): a top-level 'layer' group.
        Read into Loihi integers (fixed_netspec.npz), as netx configures Lava's fixed-point processes.
  nir   a NIR graph (nir.write; snnTorch, Norse, sinabs, Rockpool, Spyx export it): a top-level 'node' group.
        Read into a float NetSpec (netspec.npz); its continuous-time parameters (tau, r, v_leak, ...) become
        per-step decays for --dt, which NIR needs.

the run dir gets:
  netspec.npz or fixed_netspec.npz   the network
  source.json                        file, format, sha256, dt, neuron_model, reset_mode, time_steps
  metrics.json                       the spec file's sha256, time_steps (simulate adds its figures)
The file is read and checked before the run dir is touched: a bad file leaves it as it was.

examples:
  lavaflow import trained.net --out runs/mnist-netx
  lavaflow import graph.nir --out runs/snn --dt 0.001 --steps 50
  lavaflow simulate runs/mnist-netx --backend lava-fixed --input spikes.npy --record dense1.v,dense1.spikes
"""


def _add_import(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="bring in a network trained elsewhere (lava-dl netx or NIR file) as a run dir",
        description=textwrap.fill(
            "Read a lava-dl netx or NIR file and write a run dir that simulate and export take like a trained run "
            "(the spec and where it came from). Refuses a non-empty run dir unless --overwrite.",
            width=100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=IMPORT_EPILOG,
    )
    parser.add_argument("file", help="the netx (.net, .h5) or NIR (.nir) file")
    parser.add_argument("--out", required=True, help="run dir to write (locked while writing)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="the file's format (default: detected)")
    parser.add_argument("--dt", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="NIR: the time step the exporting tool simulated with, e.g. 0.001 (required for NIR; "
                             "netx is already in steps)")
    parser.add_argument("--steps", type=positive_int, default=32, metavar="T",
                        help="time steps per sample the run's spec holds (default 32; simulate --steps or the "
                             "length of --input may differ)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in a non-empty --out (its spec, metrics, source, plots and records "
                             "are deleted first)")
    parser.set_defaults(handler=import_command)


EXPORT_EPILOG = """\
where a format has no exact counterpart of a neuron (netx has no reset by subtraction; NIR has no neuron firing at
v >= threshold, and holds real values, not Loihi integers), export refuses and names the population; --approximate
writes the nearest the format can express instead (netx: zero-reset CUBA; nir: the integers scaled back to floats),
and the spikes may then differ.

examples:
  lavaflow export runs/bptt --format netx                    # RUN/export/network.net, for lava-dl and Loihi
  lavaflow export runs/ide --format nir --dt 0.001 --out ide.nir
"""


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a run's network as a lava-dl netx or NIR file",
        description=textwrap.fill(
            "Write the run dir's network (trained or imported) as a netx file (lava-dl, Intel's Loihi flow) or a "
            "NIR graph (snnTorch, Norse, sinabs, Rockpool, Spyx and others read it).",
            width=100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXPORT_EPILOG,
    )
    parser.add_argument("run_dir", help="a run dir written by `lavaflow train` or `lavaflow import`")
    parser.add_argument("--format", choices=FORMATS, required=True, help="netx or nir")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="file to write (default: RUN/export/network.net or RUN/export/network.nir)")
    parser.add_argument("--dt", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="NIR: seconds per step for its continuous-time parameters (default: the dt the run "
                             "was imported with; otherwise required)")
    parser.add_argument("--approximate", action="store_true",
                        help="write the nearest the format can express instead of refusing: netx: soft-reset "
                             "neurons as netx's zero-reset CUBA; nir: a network in Loihi integers (an imported "
                             "netx file) scaled back to floats")
    parser.set_defaults(handler=export_command)


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    lines = "\n".join(f"  {name:<16} {description}" for name, description in BENCHMARKS.items())
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark and print its figures side by side",
        description="Run a benchmark and print its table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"benchmarks:\n{lines}",
    )
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="benchmark name")
    parser.add_argument("--quick", action="store_true", help="a smaller, faster variant (for a first look)")
    parser.set_defaults(handler=bench_command)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a spiking network and write a run dir",
        description=(
            "Train a spiking network with one of the methods and write a run dir holding config.yaml (fully "
            "resolved), checkpoint.pt (each epoch, atomically), history.csv (each epoch), netspec.npz (the "
            "trained network), metrics.json and plots/. Options are resolved as: method defaults < the method's "
            "preset for the data set (pipeline/configs/<method>-<data>.yaml) < --config FILE < flags. A diverging "
            "run (non-finite loss) stops at once, keeping the last epoch's checkpoint."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            "methods:\n"
            + "".join(f"  {name:<8} {description}\n" for name, description in METHODS.items())
            + "data:     digits (embedded), mnist5k, fashion-mnist, fsdd, nmnist, nmnist-synth\n"
        ),
    )
    parser.add_argument("--method", default=None,
                        help=f"training method: {', '.join(METHODS)} (may come from --config instead: a run's "
                             "config.yaml names it, so `--config RUN/config.yaml --out NEW` repeats a run)")
    parser.add_argument("--data", default=None, help="data set name (default: digits)")
    parser.add_argument("--config", default=None, help="YAML file with config keys (see a run's config.yaml)")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs")
    parser.add_argument("--time-steps", type=int, default=None, help="simulation steps per sample (T)")
    parser.add_argument("--batch-size", type=int, default=None, help="global mini-batch size")
    parser.add_argument("--lr", dest="learning_rate", type=float, default=None, help="learning rate")
    parser.add_argument("--encoding", default=None, help="input encoding: current, rate or events")
    parser.add_argument("--seed", type=int, default=None, help="random seed (same seed, same metrics)")
    parser.add_argument("--device", default=None, help="cpu or cuda")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $LAVAFLOW_DATA_DIR)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N samples of each split")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per worker (default 1; 0: the available cores shared among the "
                             "torchrun workers of this machine). With 1 a run's numbers do not depend on the "
                             "number of cores (IDE's float sums change with the thread count; another CPU model's "
                             "math kernels may still round differently) and a busy machine is never "
                             "oversubscribed (torch's default of a thread per core ran 5-9x slower beside other "
                             "CPU-heavy processes; on an idle 2-core CPU 2 threads train IDE on digits in 8 s "
                             "instead of 11 s); raise it on an idle machine, or use 0")
    parser.add_argument("--backend", default="torch", choices=("torch", "lava", "lava-float", "lava-fixed"),
                        help="where training runs: torch (default, every method) or, for spide, entirely inside a "
                             "Lava graph on the CPU simulator: forward, ternary backward and local update (lava = "
                             "lava-float; lava-fixed: the fixed-point graph, weights on a 2^-12 grid)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (refused if the checkpoint is of "
                             "another method, data set or model; without a checkpoint it says so and starts from "
                             "scratch); with the same settings the result is identical to an uninterrupted run")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in a non-empty --out: its config, checkpoint, NetSpec, metrics, "
                             "history, network.h5, plots and records are deleted first (without this flag, or "
                             "--resume, a non-empty run dir is refused)")
    parser.add_argument("--out", required=True, help="run dir to write (locked while training)")
    parser.set_defaults(handler=train_command)


def _add_deploy(subparsers: argparse._SubParsersAction) -> None:
    from lavaflow.pipeline.deployment import DEPLOY_DESCRIPTION, DEPLOY_EPILOG, add_deploy_arguments, deploy_command

    parser = subparsers.add_parser(
        "deploy",
        help="quantise a run for Loihi 2: resource report (cores, chips), energy estimate, bundle with golden vectors",
        description=textwrap.fill(DEPLOY_DESCRIPTION, width=100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DEPLOY_EPILOG,
    )
    add_deploy_arguments(parser)
    parser.set_defaults(handler=deploy_command)


def _add_verify(subparsers: argparse._SubParsersAction) -> None:
    from lavaflow.pipeline.deployment import VERIFY_DESCRIPTION, VERIFY_EPILOG, add_verify_arguments, verify_command

    parser = subparsers.add_parser(
        "verify",
        help="replay a deploy bundle's golden vectors (lava-fixed, or loihi2 with lava-loihi); report the first "
        "mismatch",
        description=textwrap.fill(VERIFY_DESCRIPTION, width=100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=VERIFY_EPILOG,
    )
    add_verify_arguments(parser)
    parser.set_defaults(handler=verify_command)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the embedded digits data",
        description=(
            "Train IDE and bptt on the embedded digits data, simulate each on torch, lava-float and lava-fixed, "
            "and print one table of accuracy and spike agreement (about a minute on a 2-core CPU)."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="directory for the demo's run dirs (default: runs/demo)")
    parser.set_defaults(handler=demo_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lavaflow",
        description=textwrap.fill(
            "Train spiking neural networks off-chip, export them to Lava process graphs, simulate them on Lava's "
            "CPU simulator in float and bit-accurate fixed point, and target Loihi 2.",
            width=100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train, _add_import, _add_simulate, _add_export, _add_deploy, _add_verify, _add_bench, _add_demo,
]


def _quiet_libraries() -> None:
    """Keep third-party import chatter that says nothing to a user off the terminal (pipeline.quiet)."""
    from lavaflow.pipeline.quiet import silence_import_noise

    silence_import_noise()
    # pkg_resources (imported by torch.utils.cpp_extension) warns when `python -m lavaflow...` runs from a source
    # checkout, whose folder on sys.path holds a lavaflow-named package it cannot place; harmless.
    warnings.filterwarnings("ignore", message=r"Module lavaflow was already imported from", category=UserWarning)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.handler(args)
    except LavaflowError as error:
        message = textwrap.fill(str(error), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"lavaflow: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        kept = "; the last completed epoch's checkpoint is kept (use --resume)" if args.handler is train_command else ""
        print(f"lavaflow: interrupted{kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
