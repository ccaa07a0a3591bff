"""Run a Lava graph so that no OS process outlives the run, whatever happens.

Lava 0.10 (archived, so worked around here rather than patched) starts one OS process per process model plus a
runtime service and a shared-memory manager. Two of its failure modes leave them behind:

- An exception in a process model ends that OS process, but its neighbours stay blocked on their channels, the
  runtime service waits for their replies and a blocking ``run()`` never returns (lava#178).
- ``stop()`` joins every OS process without a timeout, so it hangs on a process that is blocked, and it is only
  reached if the caller's ``finally`` gets control at all (a hang, or Ctrl-C inside ``run()``).

So ``run_and_read`` starts the run non-blocking, lets Lava wait for it in a daemon thread, and watches the OS
processes from the calling thread: one that dies or reports an exception before the run is done, a timeout, or a
KeyboardInterrupt terminates all of them (SIGTERM, then SIGKILL) and shuts down the shared memory, then raises.
The normal path reads the results while the runtime is paused and stops it gracefully, with the same fallback.
Only the OS processes this run started are touched: the runtime's own list of actors.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import RunConfig
from threadpoolctl import threadpool_limits

from lavaflow.models.errors import BackendError

Result = TypeVar("Result")
POLL_SECONDS = 0.02  # how often the watcher checks the OS processes
STOP_SECONDS = 30.0  # a graceful stop that takes longer is abandoned and the processes are killed
TERMINATE_SECONDS = 2.0  # grace between SIGTERM and SIGKILL


class LavaRunError(BackendError):
    """A Lava run failed or hung; the message carries the failing process model's traceback."""


@dataclass(frozen=True)
class Timed(Generic[Result]):
    """What ``read`` returned, and the seconds of compile + start (``setup_seconds``) and of the steps."""

    value: Result
    setup_seconds: float
    run_seconds: float


def run_and_read(
    process: AbstractProcess,
    num_steps: int,
    run_cfg: RunConfig,
    read: Callable[[], Result],
    *,
    timeout_s: float | None = None,
) -> Timed[Result]:
    """Compile and run ``process``'s graph for ``num_steps``, call ``read()`` while paused, always stop.

    The OS processes are forked with one BLAS/OpenMP thread each (and OMP_NUM_THREADS=1 for anything they
    spawn): several processes per step, each with a thread pool, oversubscribe a small machine badly.

    Args:
        process: any process of the graph.
        num_steps: Lava steps to run.
        run_cfg: the run configuration (deploy.run_config).
        read: reads the results (e.g. a sink's Var) after the last step, before the runtime stops.
        timeout_s: raise (and kill the graph) if the run has not finished after this many seconds.

    Returns:
        What ``read`` returned, with the wall times of setup (compile, fork, start) and of the steps.

    Raises:
        LavaRunError: a process model raised or died, or the run timed out.
    """
    started = time.perf_counter()
    try:
        with _single_threaded():  # Lava forks its processes here, so each inherits the limits
            process.run(RunSteps(num_steps=num_steps, blocking=False), run_cfg)
        running = time.perf_counter()
        _wait(process, timeout_s)
        finished = time.perf_counter()
        result = read()
    except BaseException:
        _kill(process)
        raise
    _stop(process)
    return Timed(result, running - started, finished - running)


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """One BLAS/OpenMP thread and OMP_NUM_THREADS=1 while Lava forks; the caller's settings come back after."""
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if previous is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def _actors(process: AbstractProcess) -> list[multiprocessing.Process]:
    """The OS processes of ``process``'s runtime (process models and runtime services), if any were started."""
    runtime = process.runtime
    infrastructure = getattr(runtime, "_messaging_infrastructure", None) if runtime is not None else None
    return list(infrastructure.actors) if infrastructure is not None else []


def _wait(process: AbstractProcess, timeout_s: float | None) -> None:
    """Block until the run ends; raise LavaRunError as soon as an OS process fails or the time is up."""
    failure: list[BaseException] = []

    def wait_for_lava() -> None:
        try:
            process.wait()
        except BaseException as error:  # reported to the watching thread
            failure.append(error)

    waiter = threading.Thread(target=wait_for_lava, name="lava-wait", daemon=True)
    waiter.start()
    started = time.monotonic()
    while True:
        waiter.join(POLL_SECONDS)
        if not waiter.is_alive():
            if failure:
                raise LavaRunError(_failure_report(process, failure[0]))
            return
        dead = [actor for actor in _actors(process) if not _alive(actor) or _exception(actor)]
        if dead:
            raise LavaRunError(_failure_report(process, None))
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise LavaRunError(f"the Lava run did not finish within {timeout_s:g} s; its processes were killed")


def _alive(actor: multiprocessing.Process) -> bool:
    """is_alive() that also answers for a process object Lava has already closed (closed means joined)."""
    try:
        return actor.is_alive()
    except ValueError:
        return False


def _exception(actor: multiprocessing.Process) -> tuple[BaseException, str] | None:
    """The (exception, traceback) a Lava actor reported, or None (SystemProcess sends it through a pipe)."""
    try:
        return getattr(actor, "exception", None)
    except (OSError, EOFError, ValueError):  # the pipe of a process that is gone
        return None


def _failure_report(process: AbstractProcess, error: BaseException | None) -> str:
    tracebacks = [report[1] for report in map(_exception, _actors(process)) if report]
    if tracebacks:
        return "a Lava process model failed, so the run was stopped:\n" + "\n".join(tracebacks)
    if error is not None:
        return f"the Lava run failed: {error}"
    return "a Lava process ended before the run was done (killed or crashed); the run was stopped"


def _stop(process: AbstractProcess) -> None:
    """Stop gracefully; kill the OS processes if that does not finish in STOP_SECONDS."""
    stopper = threading.Thread(target=process.stop, name="lava-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_SECONDS)
    if stopper.is_alive() or any(_alive(actor) for actor in _actors(process)):
        _kill(process)


def _kill(process: AbstractProcess) -> None:
    """Terminate every OS process of the runtime, release its shared memory, and disarm Runtime.__del__."""
    runtime = process.runtime
    if runtime is None:
        return
    actors = [actor for actor in _actors(process) if _alive(actor)]
    for actor in actors:
        actor.terminate()
    deadline = time.monotonic() + TERMINATE_SECONDS
    for actor in actors:
        multiprocessing.Process.join(actor, max(0.0, deadline - time.monotonic()))
        if actor.is_alive():
            actor.kill()
            multiprocessing.Process.join(actor)
    for release in (getattr(runtime, "_messaging_infrastructure", None), getattr(runtime, "_watchdog_manager", None)):
        if release is None:
            continue
        try:  # the infrastructure joins the (now dead) actors and shuts the shared-memory manager down
            release.stop()
        except Exception:  # a cleanup path: whatever a half-built Lava runtime raises, keep releasing
            pass
    # Runtime.__del__ calls stop() while _is_started, which would block on the dead processes' channels.
    runtime._is_started = False
    runtime._is_running = False
