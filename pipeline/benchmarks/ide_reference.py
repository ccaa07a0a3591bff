"""IDE on Fashion-MNIST side by side with the paper's own code: epoch-1 test accuracy and seconds per epoch.

The reference is pkuxmq/IDE-FSNN's ``fashionmnist_fc.py`` (F400, T = 5, batch 128, SGD 0.05 / 0.9 / 5e-4,
dropout 0.2, Broyden 30), run unmodified except that ``.cuda()`` is made a no-op on a machine without CUDA. It is
not part of this repository; get it with

    git clone https://github.com/pkuxmq/IDE-FSNN /path/to/IDE-FSNN

and point ``--reference`` or ``$LAVAFLOW_IDE_REFERENCE`` at the clone. It imports ``termcolor`` and ``progress``
(progress bars and coloured debug text only): where they are not installed, silent stand-ins are supplied. Its
data set comes from the same Debian files lavaflow reads (``/usr/share/datasets/fashion-mnist``, or the lavaflow
data directory), unpacked into the layout torchvision expects; nothing is downloaded.

Both run in subprocesses with the same torch thread count, one after the other (never at once: on a shared CPU
that would distort both timings). s/epoch is the training loop alone for both (the reference's ``train``
function is timed from inside its process; lavaflow's history records the same span).

    python -m lavaflow.pipeline.benchmarks.ide_reference --reference /path/to/IDE-FSNN [--epochs 1] [--leak 1]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from lavaflow.models.errors import ConfigError, DataError

REFERENCE_ENV = "LAVAFLOW_IDE_REFERENCE"
HOW_TO_GET = ("the reference code is not in this repository: `git clone https://github.com/pkuxmq/IDE-FSNN "
              "/path/to/IDE-FSNN`, then pass --reference /path/to/IDE-FSNN or set $LAVAFLOW_IDE_REFERENCE "
              "(nothing in it needs editing: this script makes .cuda() a no-op)")
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")

# Runs inside the reference's process: stand-ins for missing imports, .cuda() as a no-op, one timed train().
_BOOTSTRAP = textwrap.dedent("""
    import importlib.util, json, runpy, sys, time, types
    import torch
    threads, timings_path = int(sys.argv[1]), sys.argv[2]
    sys.argv = sys.argv[3:]
    torch.set_num_threads(threads)
    if importlib.util.find_spec("termcolor") is None:
        sys.modules["termcolor"] = types.SimpleNamespace(colored=lambda text, *args, **kwargs: text)
    if importlib.util.find_spec("progress") is None:
        class _Bar:
            def __init__(self, *args, **kwargs):
                self.suffix, self.elapsed_td, self.eta_td = "", "", ""
            def next(self):
                pass
            def finish(self):
                pass
        progress, bar = types.ModuleType("progress"), types.ModuleType("progress.bar")
        bar.Bar = _Bar
        progress.bar = bar
        sys.modules.update({"progress": progress, "progress.bar": bar})
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    namespace = runpy.run_path(sys.argv[0], run_name="ide_reference")
    script = namespace["main"].__globals__
    timings, train = [], script["train"]
    def timed_train(*args, **kwargs):
        started = time.perf_counter()
        result = train(*args, **kwargs)
        timings.append(time.perf_counter() - started)
        with open(timings_path, "w") as handle:
            json.dump(timings, handle)
        return result
    script["train"] = timed_train
    script["main"]()
""")


def reference_path(explicit: str | None) -> Path:
    """The reference checkout (flag, else $LAVAFLOW_IDE_REFERENCE); ConfigError says how to get it otherwise."""
    chosen = explicit or os.environ.get(REFERENCE_ENV)
    if not chosen:
        raise ConfigError(f"no reference code given: {HOW_TO_GET}")
    path = Path(chosen).expanduser()
    if not (path / "fashionmnist_fc.py").is_file():
        raise ConfigError(f"{path} holds no fashionmnist_fc.py, so it is not an IDE-FSNN checkout: {HOW_TO_GET}")
    return path


def fashion_mnist_root(data_dir: str | None) -> Path:
    """The folder holding Fashion-MNIST's four .gz files (lavaflow's data dir first, then the Debian package)."""
    from lavaflow.pipeline.data.datasets import FASHION_MNIST_SYSTEM_DIR
    from lavaflow.pipeline.data.datasets import data_dir as resolve_data_dir

    for folder in (resolve_data_dir(data_dir) / "fashion-mnist", FASHION_MNIST_SYSTEM_DIR):
        if all((folder / name).is_file() for name in FILES):
            return folder
    raise DataError("Fashion-MNIST's files were not found: `apt-get install dataset-fashion-mnist`, or copy "
                    f"{', '.join(FILES)} into <data dir>/fashion-mnist")


def torchvision_layout(source: Path, root: Path) -> Path:
    """Unpack the .gz files where torchvision's FashionMNIST looks (root/FashionMNIST/raw, uncompressed: that is
    what it checks before it would download), so it never downloads."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = raw / name.removesuffix(".gz")
        if not target.exists():
            with gzip.open(source / name, "rb") as packed:
                target.write_bytes(packed.read())
    return root


def run_reference(reference: Path, *, epochs: int, leak: float, seed: int, threads: int, data_dir: str | None,
                  work: Path) -> dict[str, float]:
    """Run fashionmnist_fc.py for ``epochs`` epochs; its log.txt gives the accuracies, the bootstrap the times."""
    data = torchvision_layout(fashion_mnist_root(data_dir), work / "data")
    checkpoint, timings = work / "reference-checkpoint", work / "reference-timings.json"
    command = [sys.executable, "-c", _BOOTSTRAP, str(threads), str(timings), "fashionmnist_fc.py",
               "--path", str(data), "--epochs", str(epochs), "--leaky", str(leak), "--manualSeed", str(seed),
               "-j", "0", "-c", str(checkpoint)]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(command, cwd=reference, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the reference code failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    with open(checkpoint / "log.txt") as handle:  # tab-separated: LR, losses, train and test accuracy (%)
        rows = list(csv.reader(handle, delimiter="\t"))
    header = [name.strip() for name in rows[0] if name.strip()]  # rows end with a tab
    last = dict(zip(header, (float(value) for value in rows[-1] if value.strip()), strict=True))
    seconds = json.loads(timings.read_text())
    return {"test_accuracy": last["Valid Acc."] / 100, "train_accuracy": last["Train Acc."] / 100,
            "seconds_per_epoch": sum(seconds) / len(seconds)}


def run_lavaflow(*, epochs: int, leak: float, seed: int, threads: int, data_dir: str | None, config: str | None,
                 work: Path) -> dict[str, float]:
    """``lavaflow train --method ide --data fashion-mnist`` (the preset) for ``epochs`` epochs, in a subprocess."""
    out = work / "lavaflow-run"
    command = [sys.executable, "-m", "lavaflow.pipeline.cli", "train", "--method", "ide", "--data", "fashion-mnist",
               "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads), "--out", str(out)]
    if config:
        command += ["--config", config]
    elif leak != 1.0:
        raise ConfigError(f"--leak {leak} needs the matching lavaflow preset: pass --config "
                          "pipeline/configs/ide-fashion-mnist-lif.yaml")
    if data_dir:
        command += ["--data-dir", data_dir]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"lavaflow train failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    seconds = [float(row["epoch_seconds"]) for row in rows]
    return {"test_accuracy": float(rows[-1]["test_accuracy"]), "train_accuracy": float(rows[-1]["train_accuracy"]),
            "seconds_per_epoch": sum(seconds) / len(seconds)}


def describe(reference: dict[str, float], lavaflow: dict[str, float], *, epochs: int, leak: float,
             threads: int) -> str:
    neuron = "IF" if leak == 1.0 else f"LIF λ = {leak:g}"
    ratio = lavaflow["seconds_per_epoch"] / reference["seconds_per_epoch"]
    return "\n".join([
        f"IDE F400 {neuron} T=5 on Fashion-MNIST after {epochs} epoch(s), {threads} torch thread(s) each",
        f"{'':<28} {'train acc':>9} {'test acc':>9} {'s/epoch':>8}",
        f"{'reference (pkuxmq/IDE-FSNN)':<28} {reference['train_accuracy']:>9.2%} {reference['test_accuracy']:>9.2%} "
        f"{reference['seconds_per_epoch']:>8.1f}",
        f"{'lavaflow':<28} {lavaflow['train_accuracy']:>9.2%} {lavaflow['test_accuracy']:>9.2%} "
        f"{lavaflow['seconds_per_epoch']:>8.1f}",
        f"difference {100 * (lavaflow['test_accuracy'] - reference['test_accuracy']):+.2f} pp; lavaflow's time per "
        f"epoch is {ratio:.2f}× the reference's",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None, help=f"IDE-FSNN checkout (default ${REFERENCE_ENV})")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--leak", type=float, default=1.0, help="λ: 1 = IF (the reference's --leaky 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--config", default=None, help="lavaflow --config over the preset (LIF: the -lif preset)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        reference = reference_path(args.reference)
    except ConfigError as error:
        sys.exit(str(error))
    with tempfile.TemporaryDirectory(prefix="ide-reference-") as folder:
        work = Path(folder)
        options = dict(epochs=args.epochs, leak=args.leak, seed=args.seed, threads=args.threads,
                       data_dir=args.data_dir)
        started = time.perf_counter()
        reference_figures = run_reference(reference, work=work, **options)
        lavaflow_figures = run_lavaflow(config=args.config, work=work, **options)
        print(describe(reference_figures, lavaflow_figures, epochs=args.epochs, leak=args.leak,
                       threads=args.threads))
        print(f"(both runs together: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
