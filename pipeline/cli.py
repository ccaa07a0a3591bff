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

from lavaflow.models.errors import LavaflowError
from lavaflow.pipeline.choices import BENCHMARKS, DEFAULT_BACKENDS, SIMULATE_BACKENDS

EXIT_USER_ERROR = 2

EPILOG = """\
examples:
  lavaflow demo                                         # the whole pipeline on the embedded digits data
  lavaflow train --method bptt --data digits --out runs/bptt
  lavaflow train --method ide --data fashion-mnist --epochs 5 --out runs/ide-fmnist
  lavaflow simulate runs/bptt                           # reference, Lava float and fixed point side by side
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
        metrics = train(config, model_config, method, run_dir, resume=args.resume, overwrite=args.overwrite)
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
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.simulate import format_table, simulate_backends

    run_dir = RunDir.open(args.run_dir)
    chosen = list(dict.fromkeys(args.backend)) if args.backend else None  # each once, in the order given
    metrics, backends, samples = simulate_backends(run_dir, chosen, limit=args.limit, data=args.data,
                                                   data_dir=args.data_dir, plain_graph=args.plain_graph)
    print(format_table(metrics, backends, samples))
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.benchmarks import run_benchmark

    print(run_benchmark(args.name, quick=args.quick))
    return 0


def _positive_int(text: str) -> int:
    """argparse type: a count of at least 1 (0 or a negative count is a mistake, not "all")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
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
  than the run's appends _NAME.

files:
  RUN/plots/raster_<backend>.png        spike rasters of the first test samples, every population
  RUN/plots/firing_rates_<backend>.png  firing rate per population and its spread over neurons
  RUN/quantization.txt                  lava-fixed: per tensor the largest error, what clipped, what rounded to
                                        zero, the scales and the input payload mapping

examples:
  lavaflow simulate runs/ide                         # torch, lava-float and lava-fixed, as a table
  lavaflow simulate runs/ide --backend lava-fixed --limit 50
"""


def _add_simulate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run a trained network on backends (reference, Lava float, Lava fixed point) and compare them",
        description=textwrap.fill(
            "Simulate the run dir's NetSpec on its test samples, print a table of accuracy, spike agreement and "
            "speed per backend, and merge the figures into metrics.json. Backends: torch (the reference "
            "simulator, float64), lava-float and lava-fixed (Lava's CPU simulator; fixed point is quantised to "
            "Loihi 2's bit widths and bit-accurate), loihi2 (needs Intel's lava-loihi). Spike agreement is the "
            "fraction of samples whose output spike counts equal the reference simulator's in the same precision.",
            width=100,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SIMULATE_EPILOG,
    )
    parser.add_argument("run_dir", help="a run dir written by `lavaflow train`")
    parser.add_argument("--backend", action="append", choices=SIMULATE_BACKENDS, default=None,
                        help=f"backend to run; repeat for several (default: {' '.join(DEFAULT_BACKENDS)}, or torch "
                             "alone when the Lava export cannot take the network)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="simulate only the first N test samples, classes taken in turn (default: the run's "
                             "evaluation set); figures of another subset go under keys ending in _first<n>")
    parser.add_argument("--data", default=None, help="data set (default: the one the run was trained on)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory (default: the run's data_dir, else $LAVAFLOW_DATA_DIR, else "
                             "~/.cache/lavaflow/data)")
    parser.add_argument("--plain-graph", action="store_true",
                        help="run the graph of Dense + neuron processes that targets Loihi (slow) instead of the "
                             "fused, batched CPU model")
    parser.set_defaults(handler=simulate_command)


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
            """\
            methods:  bptt (surrogate-gradient BPTT, lava-dl slayer CUBA), ide (implicit differentiation on the
                      equilibrium of a feedback SNN)
            data:     digits (embedded), mnist5k, fashion-mnist, fsdd, nmnist, nmnist-synth
            """
        ),
    )
    parser.add_argument("--method", default=None,
                        help="training method: bptt or ide (may come from --config instead: a run's config.yaml "
                             "names it, so `--config RUN/config.yaml --out NEW` repeats a run)")
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
                             "torchrun workers of this machine). With 1 a run's numbers are the same on every "
                             "machine (IDE's float sums change with the thread count) and a busy machine is never "
                             "oversubscribed (torch's default of a thread per core ran 5-9x slower beside other "
                             "CPU-heavy processes; on an idle 2-core CPU 2 threads train IDE on digits in 8 s "
                             "instead of 11 s); raise it on an idle machine, or use 0")
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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train, _add_simulate, _add_bench, _add_demo]


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
