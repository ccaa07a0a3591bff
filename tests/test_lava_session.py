"""The Lava run guarantees of pipeline/lava/session.py: a failed run always raises LavaRunError and leaves no OS
process (nor the shared-memory manager) behind, and a caller killed with SIGKILL takes its Lava processes along."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import multiprocessing
import multiprocessing.resource_tracker
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lavaflow.deploy.quantize import quantize
from lavaflow.models.netspec import Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.pipeline.lava.run import run_lava
from lavaflow.pipeline.lava.session import LavaRunError
from lavaflow.processes.sink import models as sink_models

GENEROUS_SECONDS = 120.0  # catches a hang; never a measure of speed


def _tiny_spec() -> NetSpec:
    rng = np.random.default_rng(0)
    populations = {"h": SoftResetNeurons(np.zeros(5), 1.0), "o": SoftResetNeurons(np.zeros(3), 1.0)}
    connections = (
        Connection("input", "h", Dense(rng.normal(0.0, 1.0, (5, 4))), 0),
        Connection("h", "o", Dense(rng.normal(0.0, 1.0, (3, 5))), 1),
    )
    return NetSpec(Input((4,), "current"), populations, connections, Readout("o", np.eye(3), np.zeros(3)), 5)


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process from /proc, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _children(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] == parent:
                found.add(int(entry))
    return found


def _descendants(root: int) -> dict[int, int]:
    """pid → start time of every process below ``root`` (the start time tells a reused pid apart)."""
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        for child in _children(frontier.pop()):
            stat = _stat(child)
            if stat is not None and child not in found:
                found[child] = stat[2]
                frontier.append(child)
    return found


def _running(processes: dict[int, int]) -> dict[int, int]:
    """Those of ``processes`` that still run (a zombie has died; its reaper is init, not us)."""
    alive = {}
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == started and stat[1] not in "ZX":
            alive[pid] = started
    return alive


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GENEROUS_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {GENEROUS_SECONDS:g} s: {what}"
        time.sleep(0.05)


@pytest.mark.timeout(600)
def test_a_failing_process_model_always_raises_lava_run_error_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sink raises at step 7 while Lava's waiting thread joins and closes the process objects: the cleanup
    used to trip over them (ValueError: process object is closed) in most runs and keep the memory manager."""
    original = sink_models.PySpikeCounterModel.run_spk

    def failing(self: sink_models.PySpikeCounterModel) -> None:  # runs in the forked sink (fork copies the patch)
        if self.time_step == 7:
            raise RuntimeError("injected failure in the sink")
        original(self)

    monkeypatch.setattr(sink_models.PySpikeCounterModel, "run_spk", failing)
    multiprocessing.resource_tracker.ensure_running()  # Python's tracker lives as long as we do: not a leftover
    before = _children(os.getpid())
    fixed, _ = quantize(_tiny_spec())
    inputs = np.random.default_rng(1).random((5, 3, 4))
    for attempt in range(12):
        with pytest.raises(LavaRunError, match="injected failure in the sink"):
            run_lava(fixed, inputs, backend="lava-fixed", fused=False)
        _wait_for(lambda: _children(os.getpid()) <= before, f"Lava processes of run {attempt} to end")
        managers = [p for p in multiprocessing.active_children() if "SharedMemoryManager" in p.name]
        assert managers == [], f"run {attempt} left its shared-memory manager running"


VICTIM = """
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lavaflow.models.netspec import Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.pipeline.lava.run import run_lava
from lavaflow.processes.sink import models

marker = Path(sys.argv[1])
original = models.PySpikeCounterModel.run_spk


def slow(self):
    if self.time_step == 2:
        marker.write_text("running")
    time.sleep(0.05)  # 20,000 steps: the run outlasts any test
    original(self)


models.PySpikeCounterModel.run_spk = slow
populations = {"h": SoftResetNeurons(np.zeros(3), 1.0), "o": SoftResetNeurons(np.zeros(2), 1.0)}
connections = (
    Connection("input", "h", Dense(np.ones((3, 2))), 0),
    Connection("h", "o", Dense(np.ones((2, 3))), 1),
)
spec = NetSpec(Input((2,), "current"), populations, connections, Readout("o", np.eye(2), np.zeros(2)), 4)
run_lava(spec, np.zeros((4, 4000, 2)), backend="lava-float", fused=False)
"""


@pytest.mark.timeout(600)
def test_kill_9_of_the_caller_takes_every_lava_process_along(tmp_path: Path) -> None:
    script, marker, log = tmp_path / "victim.py", tmp_path / "running", tmp_path / "victim.log"
    script.write_text(textwrap.dedent(VICTIM))
    with log.open("w") as output:
        victim = subprocess.Popen([sys.executable, str(script), str(marker)], stdout=output, stderr=output)
    lava: dict[int, int] = {}
    try:
        _wait_for(lambda: marker.exists() or victim.poll() is not None, "the victim's Lava run to start")
        assert victim.poll() is None, f"the victim ended early:\n{log.read_text()}"
        lava = _descendants(victim.pid)
        assert len(lava) >= 4, f"expected the Lava processes below the victim, found {lava}"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        _wait_for(lambda: not _running(lava), f"the orphaned Lava processes {sorted(_running(lava))} to die")
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        for pid in _running(lava):  # a failed test must not leave orphans running for the rest of the suite
            os.kill(pid, signal.SIGKILL)
