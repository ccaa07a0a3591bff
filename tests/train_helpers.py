"""Helpers for the tests that run `lavaflow train` in subprocesses or press Ctrl-C (not a test module: no test_
prefix)."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Small and single-threaded: the subprocess tests stay quick on a busy 2-core machine.
TINY = ["--data", "digits", "--limit", "60", "--batch-size", "20", "--time-steps", "4", "--threads", "1"]
SAFETY_TIMEOUT = 900  # seconds; only a guard against a hang, never a condition a test waits for

# Runs `lavaflow train` (cli.main) and, after the checkpoint of epoch $PAUSE_AFTER_EPOCH is written, creates
# $PAUSE_MARKER and waits forever: a deterministic "mid-run" moment for a test to kill the process or to find the
# run dir locked, whatever the machine's speed.
PAUSING_CLI = """
import os, sys, time
from lavaflow.pipeline import cli
from lavaflow.pipeline.rundir import RunDir

pause_after, marker = int(os.environ["PAUSE_AFTER_EPOCH"]), os.environ["PAUSE_MARKER"]
save_checkpoint = RunDir.save_checkpoint

def save_then_pause(self, state):
    save_checkpoint(self, state)
    if state["epoch"] == pause_after:
        open(marker, "w").close()
        while True:
            time.sleep(60)

RunDir.save_checkpoint = save_then_pause
sys.exit(cli.main(sys.argv[1:]))
"""


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def lavaflow(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """`python -m lavaflow.pipeline.cli ARGS` to completion."""
    command = [sys.executable, "-m", "lavaflow.pipeline.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=SAFETY_TIMEOUT,
                          cwd=REPO)


def torchrun(*args: str | os.PathLike, workers: int = 2) -> subprocess.CompletedProcess:
    """`lavaflow ARGS` under torchrun with ``workers`` local workers (c10d rendezvous on a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={workers}", "--standalone",
               "-m", "lavaflow.pipeline.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=SAFETY_TIMEOUT,
                          cwd=REPO)


def start_paused_training(tmp: Path, pause_after: int, *args: str | os.PathLike) -> tuple[subprocess.Popen, Path]:
    """Start `lavaflow train ARGS` that pauses (forever) once epoch ``pause_after``'s checkpoint is written."""
    script, marker = tmp / "pausing_cli.py", tmp / f"paused-{time.monotonic_ns()}"
    script.write_text(PAUSING_CLI)
    env = {**environment(), "PAUSE_AFTER_EPOCH": str(pause_after), "PAUSE_MARKER": str(marker)}
    process = subprocess.Popen([sys.executable, str(script), "train", *map(str, args)], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, marker


def wait_for(process: subprocess.Popen, marker: Path) -> None:
    """Wait until ``marker`` exists; fail with the process's output if it exits first."""
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while not marker.exists():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"the training exited ({process.returncode}) before pausing:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            kill(process)
            raise AssertionError("the training never reached its pause")
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL, as a crash or the OOM killer would: no cleanup runs."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate()


def without(text: str, column: str) -> list[list[str]]:
    """A CSV's rows without one column (wall times)."""
    rows = [line.split(",") for line in text.strip().splitlines()]
    index = rows[0].index(column)
    return [row[:index] + row[index + 1:] for row in rows]


class CtrlC:
    """Ctrl-C (``_thread.interrupt_main``) pressed once ``marker`` exists: a file the forked Lava network writes
    while it steps, so that a loaded machine cannot press before Lava has even compiled.

    Wrap the call with ``expect()``, which makes Python handle SIGINT for the block as in a terminal: a suite
    started in the background without job control (``nohup make test &`` from a script) inherits SIGINT ignored,
    and interrupt_main then does nothing (two tests failed that way in such runs, handler 1 = SIG_IGN). Should the
    call return normally, the failure says why: whether the network ever stepped, and which SIGINT handler was in
    force.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.handler: object = "none: the marker was not written before the call returned"
        self._finished = threading.Event()
        self._watcher = threading.Thread(target=self._press_once_marked, daemon=True)

    def _press_once_marked(self) -> None:
        while not self.marker.exists():
            if self._finished.wait(0.01):
                return  # the call ended without stepping: press nothing
        self.handler = signal.getsignal(signal.SIGINT)
        _thread.interrupt_main()

    @contextlib.contextmanager
    def expect(self) -> Iterator[None]:
        """The block must raise KeyboardInterrupt (it is swallowed here); it fails the test otherwise."""
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        self._watcher.start()
        try:
            yield
        except KeyboardInterrupt:
            return
        finally:
            self._finished.set()
            self._watcher.join()
            signal.signal(signal.SIGINT, previous)
        pytest.fail(f"the call returned without KeyboardInterrupt; SIGINT handler when pressed: {self.handler}")
