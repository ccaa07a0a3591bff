"""The ``lavaflow`` command: each subcommand is a short function over library code.

User errors (unknown data set or method, missing files, bad config, unwritable run dir) exit with status 2 and a
one-paragraph message, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from lavaflow.models.errors import LavaflowError

EXIT_USER_ERROR = 2

EPILOG = """\
examples:
  lavaflow demo                                         # the whole pipeline on the embedded digits data
  lavaflow train --method bptt --data digits --out runs/bptt
  lavaflow train --method ide --data fashion-mnist --epochs 5 --out runs/ide-fmnist
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
    }


def train_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.config import resolve_config
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.training import train

    config, model_config, method = resolve_config(args.method, args.data, args.config, _train_flags(args))
    run_dir = RunDir.create(args.out)
    metrics = train(config, model_config, method, run_dir, resume=args.resume)
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
    from lavaflow.pipeline.simulate import format_row, simulate_run

    run_dir = RunDir.open(args.run_dir)
    for backend in args.backend:
        metrics = simulate_run(run_dir, backend, limit=args.limit, data=args.data, data_dir=args.data_dir,
                               plain_graph=args.plain_graph)
        print(format_row(backend, metrics))
    return 0


def bench_command(args: argparse.Namespace) -> int:
    from lavaflow.pipeline.benchmarks import run_benchmark

    print(run_benchmark(args.name, quick=args.quick))
    return 0


def _add_simulate(subparsers: argparse._SubParsersAction) -> None:
    from lavaflow.pipeline.simulate import SIMULATE_BACKENDS

    parser = subparsers.add_parser(
        "simulate",
        help="run a trained network on a backend (reference, Lava float, Lava fixed point)",
        description=(
            "Simulate the run dir's NetSpec on its test set and merge test_accuracy_<backend>, "
            "spike_agreement_<backend> (samples whose output spike counts equal the reference simulator's in the "
            "same precision) and samples_per_second_<backend> into metrics.json. Backends: torch (the reference "
            "simulator, float64), lava-float and lava-fixed (Lava's CPU simulator; fixed point is quantised to "
            "Loihi 2's bit widths and bit-accurate), loihi2 (needs Intel's lava-loihi). lava-fixed prints the "
            "quantisation report on stderr: per tensor the largest error, what clipped, what rounded to zero, the "
            "scales, and the input payload range (exact 8-bit payloads where the data's intensities lie on a 1/n "
            "grid, e.g. digits' sixteenths)."
        ),
    )
    parser.add_argument("run_dir", help="a run dir written by `lavaflow train`")
    parser.add_argument("--backend", action="append", choices=SIMULATE_BACKENDS, required=True,
                        help="backend to run (repeat the flag for several)")
    parser.add_argument("--limit", type=int, default=None, help="simulate only the first N test samples")
    parser.add_argument("--data", default=None, help="data set (default: the one the run was trained on)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: the run's, or $LAVAFLOW_DATA_DIR)")
    parser.add_argument("--plain-graph", action="store_true",
                        help="run the graph of Dense + neuron processes that targets Loihi (slow) instead of the "
                             "fused, batched CPU model")
    parser.set_defaults(handler=simulate_command)


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    from lavaflow.pipeline.benchmarks import BENCHMARKS

    lines = "\n".join(f"  {name:<16} {entry.description}" for name, entry in BENCHMARKS.items())
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
            "resolved), checkpoint.pt (each epoch, atomically), netspec.npz (the trained network), metrics.json "
            "and plots/. Options are resolved as: method defaults < the method's preset for the data set "
            "(pipeline/configs/<method>-<data>.yaml) < --config FILE < flags."
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
    parser.add_argument("--method", required=True, help="training method: bptt or ide")
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
    parser.add_argument("--resume", action="store_true", help="continue from the run dir's last checkpoint")
    parser.add_argument("--out", required=True, help="run dir to write")
    parser.set_defaults(handler=train_command)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the embedded digits data",
        description="Train on the embedded digits data set and print a table of results (a few minutes on a CPU).",
    )
    parser.add_argument("--out", default="runs/demo", help="directory for the demo's run dirs (default: runs/demo)")
    parser.set_defaults(handler=demo_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lavaflow",
        description=(
            "Train spiking neural networks off-chip, export them to Lava process graphs, simulate them on Lava's "
            "CPU simulator in float and bit-accurate fixed point, and target Loihi 2."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train, _add_simulate, _add_bench, _add_demo]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except LavaflowError as error:
        message = textwrap.fill(str(error), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"lavaflow: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lavaflow: interrupted; the last completed epoch's checkpoint is kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
