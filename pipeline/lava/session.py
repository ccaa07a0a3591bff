"""Run a Lava graph so that no OS process outlives the run, whatever happens.

Lava 0.10 (archived, so worked around here rather than patched) starts one OS process per process model plus a
runtime service and a shared-memory manager. Its failure modes would leave them behind:

- An exception in a process model ends that OS process, but its neighbours stay blocked on their channels, the
  runtime service waits for their replies and a blocking ``run()`` never returns (lava#178).
- ``stop()`` joins every OS process without a timeout, so it hangs on a process that is blocked, and it is only
  reached if the caller's ``finally`` gets control at all (a hang, or Ctrl-C inside ``run()``).
- Lava's own error handling (in ``wait()``) joins and *closes* the process objects, so any cleanup running beside
  it finds objects that raise ``ValueError: process object is closed`` (or worse, are half closed).
- A parent killed with SIGKILL runs no cleanup at all: the children would keep running, orphaned.

So ``LavaRuntime`` (a compiled graph whose OS processes stay up between runs) starts each run non-blocking, lets
Lava wait for it in a daemon thread, and watches the OS processes from the calling thread; a Var get or set runs
in a daemon thread the same way. A process that dies before the call is done, a timeout, or a KeyboardInterrupt
terminates all of them (SIGTERM, then SIGKILL) and shuts down the shared memory, then raises. Every cleanup step
tolerates a process object that Lava's thread has joined or closed meanwhile (joined means dead and reaped).
``close()`` (or leaving the ``with`` block normally) stops the runtime gracefully, with the same fallback; leaving
it with an exception kills it. Only the OS processes this runtime started are touched: the runtime's own list of
actors and its memory manager. Children forked while the runtime starts ask Linux to kill them when the forking
thread dies: PR_SET_PDEATHSIG, so even kill -9 of the caller leaves none behind (the thread that starts a
LavaRuntime must therefore outlive it: the caller's own, as in ``run_and_read``, which compiles, runs once, reads
while paused and stops, on a LavaRuntime).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import RunConfig
from threadpoolctl import threadpool_limits

from lavaflow.models.errors import BackendError

Result = TypeVar("Result")
POLL_SECONDS = 0.02  # how often the watcher checks the OS processes
STOP_SECONDS = 30.0  # a graceful stop that takes longer is abandoned and the processes are killed
TERMINATE_SECONDS = 2.0  # grace between SIGTERM and SIGKILL
KILL_SECONDS = 10.0  # how long to wait for killed processes to be reaped before giving up on them
REPORT_SECONDS = 10.0  # after a process died: how long Lava may take to end the others and report the traceback
WAITER_SECONDS = 5.0  # after the kill: how long a failed run waits for Lava's error handling to collect the reports
# What a multiprocessing.Process method raises when another thread has joined and closed the object meanwhile
# (ValueError: closed; AttributeError / AssertionError: half closed, _popen already None; OSError: its pipe).
_CLOSED = (ValueError, AttributeError, AssertionError, OSError)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
        LavaRunError: a process model raised or died, or the run timed out; every OS process of the run is gone.
    """
    with LavaRuntime(process, run_cfg, timeout_s=timeout_s) as runtime:
        setup_seconds = runtime.start()
        run_seconds = runtime.run(num_steps)
        result = read()
    return Timed(result, setup_seconds, run_seconds)


class LavaRuntime:
    """A compiled Lava graph whose OS processes stay up between runs, guarded on every call (module docstring).

    Use it as a context manager: leaving the block normally stops the runtime gracefully, leaving it with an
    exception (a KeyboardInterrupt too) kills and reaps every OS process of the graph. Any failed call does the
    same before it raises, after which every further call raises LavaRunError.

    Args:
        process: any process of the graph.
        run_cfg: the run configuration (deploy.run_config).
        timeout_s: kill the graph and raise if one call (a run, a Var get or set) takes longer than this.
    """

    def __init__(self, process: AbstractProcess, run_cfg: RunConfig, *, timeout_s: float | None = None) -> None:
        self.process = process
        self.run_cfg = run_cfg
        self.timeout_s = timeout_s
        self.steps_run = 0  # Lava steps run so far: the next run's first time_step is steps_run + 1
        self._started = False
        self._ended: str | None = None  # why the runtime is gone (closed, or a failure), once it is

    def __enter__(self) -> LavaRuntime:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort("the block using the Lava runtime raised")

    def start(self) -> float:
        """Compile the graph and fork its OS processes (once); returns the seconds it took (0 if started before)."""
        self._check_usable()
        if self._started:
            return 0.0
        started = time.perf_counter()
        try:
            with _single_threaded(), _children_die_with_this_thread():  # Lava forks here: the children inherit both
                self.process.create_runtime(run_cfg=self.run_cfg)
            self._started = True
            # Lava serves Var get/set only once Runtime.start() ran, which also starts a run; its runtime services
            # take commands from initialisation on, so the flag alone lets the host read and set Vars before the
            # first run (and makes stop() tell them to end).
            self.process.runtime._is_started = True
        except BaseException:
            self.abort("compiling or starting the graph failed")
            raise
        return time.perf_counter() - started

    def run(self, num_steps: int) -> float:
        """Run ``num_steps`` Lava steps and return the seconds they took; the runtime is paused afterwards."""
        self.start()
        started = time.perf_counter()
        self._guarded(lambda: self.process.run(RunSteps(num_steps=num_steps, blocking=True)), "run")
        self.steps_run += int(num_steps)
        return time.perf_counter() - started

    def get(self, var: Var) -> np.ndarray:
        """The value of ``var`` while paused; moves ~20k elements/s (research/lava.md §1.6), so read small Vars."""
        self._check_var(var)
        value: list[np.ndarray] = []
        self._guarded(lambda: value.append(np.asarray(var.get())), f"get of Var {var.name!r}")
        return value[0]

    def set(self, var: Var, values: np.ndarray) -> None:
        """Write ``values`` (``var``'s shape) into ``var`` while paused; it counts from the next run on."""
        self._check_var(var)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != tuple(var.shape):
            raise ValueError(f"Var {var.name!r} has shape {tuple(var.shape)}, the values {values.shape}")
        self._guarded(lambda: var.set(values), f"set of Var {var.name!r}")

    def close(self) -> None:
        """Stop the runtime gracefully (kill it if that fails); idempotent."""
        if self._ended is not None:
            return
        self._ended = "the Lava runtime was closed"
        if self._started:
            _stop(self.process)

    def abort(self, why: str) -> None:
        """Kill and reap every OS process of the graph now and release its shared memory; idempotent."""
        if self._ended is None:
            self._ended = f"the Lava runtime was killed: {why}"
        _kill(self.process)

    def leaf_processes(self) -> list[AbstractProcess]:
        """Every process that runs as its own OS process (sub-process graphs expanded); compiles if needed."""
        self.start()
        return list(self.process.runtime._executable.process_list)

    @property
    def alive(self) -> bool:
        """Whether calls can still be made (started or not, but neither closed nor killed)."""
        return self._ended is None

    def _check_var(self, var: Var) -> None:
        """Refuse a Var no process model holds (e.g. a parent's Var a sub-process graph does not alias) before
        Lava sees it: Lava would stop the whole runtime and raise."""
        self.start()
        held = var
        while held.aliased_var is not None:
            held = held.aliased_var
        if held.id not in self.process.runtime._executable.node_configs[0].var_models:
            raise ValueError(
                f"Var {var.name!r} of {var.process.name!r} is held by no process model of the compiled graph (a Var of "
                f"a process that a sub-process model replaces, and does not alias); read its children's Vars"
            )

    def _check_usable(self) -> None:
        if self._ended is not None:
            raise LavaRunError(f"{self._ended}; build a new one")

    def _guarded(self, call: Callable[[], object], what: str) -> None:
        """Run ``call`` (which talks to the runtime) in a daemon thread while this thread watches the OS processes."""
        self._check_usable()
        worker: threading.Thread | None = None
        try:
            if not all(_alive(actor) for actor in _actors(self.process)):
                failure: str | None = f"a Lava process had ended (killed or crashed) before the {what}"
            else:
                worker, error = _start_worker(call, what)
                failure = _watch(self.process, worker, error, self.timeout_s, what)
        except BaseException:  # KeyboardInterrupt while watching, or a bug here: leave nothing behind
            self.abort(f"interrupted during the {what}")
            raise
        if failure is not None:
            signalled = any(_killed_by_signal(actor) for actor in _actors(self.process))  # before the kill
            self.abort(failure)
            if worker is not None and not signalled:  # Lava's error path ends once every process is dead; then
                worker.join(WAITER_SECONDS)  # its reports are in (a process killed from outside sends none)
            raise LavaRunError(_failure_report(self.process, failure))


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


# ------------------------------------------------------------------------------- children die with their parent
def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded once here: loading a library in a freshly forked child of a threaded process can hang."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_FORKING: tuple[int, int] | None = None  # (parent pid, forking thread id) while run_and_read forks Lava's processes


def _die_with_parent() -> None:
    """In a child forked by the arming thread: SIGKILL when that thread ends, or now if the parent is gone already.

    The check of the parent pid closes the race where the parent died between fork() and prctl(): the signal is
    only sent for a death after the prctl call.
    """
    armed = _FORKING
    if armed is None or _PRCTL is None or armed[1] != threading.get_ident():  # pthread_self survives fork()
        return
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != armed[0]:
        os._exit(1)


if _PRCTL is not None:
    os.register_at_fork(after_in_child=_die_with_parent)


@contextlib.contextmanager
def _children_die_with_this_thread() -> Iterator[None]:
    """Arm ``_die_with_parent`` for the processes this thread forks inside the block (Lava's, nobody else's).

    Linux sends the death signal when the *thread* that forked ends, so the block must run in a thread that
    outlives the children: run_and_read's caller, which stays in run_and_read until they are stopped or killed.
    """
    global _FORKING
    previous = _FORKING
    _FORKING = (os.getpid(), threading.get_ident())
    try:
        yield
    finally:
        _FORKING = previous


# ------------------------------------------------------------------------------------------------ watching
def _actors(process: AbstractProcess) -> list[multiprocessing.Process]:
    """The OS processes of ``process``'s runtime (process models and runtime services), if any were started."""
    runtime = process.runtime
    infrastructure = getattr(runtime, "_messaging_infrastructure", None) if runtime is not None else None
    return list(getattr(infrastructure, "actors", None) or [])


def _start_worker(call: Callable[[], object], what: str) -> tuple[threading.Thread, list[BaseException]]:
    """A daemon thread running ``call`` (a blocking Lava call that may block forever on a hang), and its error."""
    error: list[BaseException] = []

    def work() -> None:
        try:
            call()
        except BaseException as raised:  # reported to the watching thread
            error.append(raised)

    worker = threading.Thread(target=work, name=f"lava-{what.split()[0]}", daemon=True)
    worker.start()
    return worker, error


def _watch(
    process: AbstractProcess,
    worker: threading.Thread,
    lava_error: list[BaseException],
    timeout_s: float | None,
    what: str = "run",
) -> str | None:
    """Block until the call ends: None when it finished, else what went wrong (the processes are still there)."""
    started = time.monotonic()
    while True:
        worker.join(POLL_SECONDS)
        if not worker.is_alive():
            return f"the Lava {what} failed: {lava_error[0]}" if lava_error else None
        if not all(_alive(actor) for actor in _actors(process)):
            _let_lava_report(process, worker)
            return f"a Lava process ended before the {what} was done (killed or crashed); the graph was stopped"
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            return f"the Lava {what} did not finish within {timeout_s:g} s; its processes were killed"


def _let_lava_report(process: AbstractProcess, waiter: threading.Thread) -> None:
    """Give Lava's own error path REPORT_SECONDS to end the other processes and collect their tracebacks.

    On an exception, a process model first tells the runtime service, which ends and stops the others, and only
    then sends its traceback: killing everything at the first death would often lose it. A process killed by a
    signal reports nothing, so then there is nothing to wait for.
    """
    if any(_killed_by_signal(actor) for actor in _actors(process)):
        return
    deadline = time.monotonic() + REPORT_SECONDS
    while waiter.is_alive() and any(_alive(actor) for actor in _actors(process)) and time.monotonic() < deadline:
        waiter.join(POLL_SECONDS)


def _killed_by_signal(actor: multiprocessing.Process) -> bool:
    """Whether ``actor`` ended by a signal (a negative exit code), e.g. SIGKILL from outside."""
    try:
        code = actor.exitcode
    except _CLOSED:
        return False
    return code is not None and code < 0


def _alive(actor: multiprocessing.Process) -> bool:
    """is_alive() that also answers for a process object Lava has closed, or is closing (closed means joined)."""
    try:
        return actor.is_alive()
    except _CLOSED:
        return False


def _exception(actor: multiprocessing.Process) -> tuple[BaseException, str] | None:
    """The (exception, traceback) a Lava actor reported, or None (SystemProcess sends it through a pipe)."""
    try:
        report = getattr(actor, "exception", None)
    except Exception:  # the pipe of a process that is gone, or closed by Lava's thread while we read it
        return None
    return report if isinstance(report, tuple) and len(report) == 2 else None


def _failure_report(process: AbstractProcess, failure: str) -> str:
    """The tracebacks the process models sent, else ``failure``; read once every process is dead."""
    tracebacks = [str(report[1]) for report in map(_exception, _actors(process)) if report]
    if tracebacks:
        return "a Lava process model failed, so the run was stopped:\n" + "\n".join(tracebacks)
    return failure


# ------------------------------------------------------------------------------------------------ teardown
def _stop(process: AbstractProcess) -> None:
    """Stop gracefully; kill the OS processes if that fails or does not finish in STOP_SECONDS."""
    failed: list[BaseException] = []

    def stop() -> None:
        try:
            process.stop()
        except BaseException as error:  # e.g. a runtime service that answers the stop with an error
            failed.append(error)

    stopper = threading.Thread(target=stop, name="lava-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_SECONDS)
    if failed or stopper.is_alive() or any(_alive(actor) for actor in _actors(process)) or _manager_alive(process):
        _kill(process)


def _kill(process: AbstractProcess) -> None:
    """Kill every OS process of the runtime, reap them, release its shared memory, and disarm Runtime.__del__.

    Never raises: it runs on failure paths, beside a Lava thread (in wait() or stop()) that may be joining and
    closing the same process objects; one it has closed is dead and reaped already.
    """
    runtime = process.runtime
    if runtime is None:
        return
    actors = _actors(process)
    for actor in actors:
        _quietly(actor.terminate)
    _reap(actors, TERMINATE_SECONDS)
    for actor in actors:
        if _alive(actor):
            _quietly(actor.kill)
    _reap(actors, KILL_SECONDS)
    _release_shared_memory(runtime)
    watchdog = getattr(runtime, "_watchdog_manager", None)
    if watchdog is not None:
        _quietly(watchdog.stop)
    # Runtime.__del__ calls stop() while _is_started, which would block on the dead processes' channels.
    runtime._is_started = False
    runtime._is_running = False


def _reap(actors: list[multiprocessing.Process], seconds: float) -> None:
    """Join each actor, all within ``seconds`` (Process.join itself: SystemProcess.join has no timeout)."""
    deadline = time.monotonic() + seconds
    for actor in actors:
        _quietly(multiprocessing.Process.join, actor, max(0.0, deadline - time.monotonic()))


def _shared_memory_manager(runtime: Any) -> Any:
    """multiprocessing's SharedMemoryManager inside Lava's wrapper, or None once it is shut down."""
    wrapper = getattr(getattr(runtime, "_messaging_infrastructure", None), "smm", None)
    return getattr(wrapper, "_manager", None)


def _manager_alive(process: AbstractProcess) -> bool:
    """Whether the run's shared-memory manager process is still up (a stop that failed half way)."""
    manager = _shared_memory_manager(process.runtime) if process.runtime is not None else None
    server = getattr(manager, "_process", None)
    return server is not None and _alive(server)


def _release_shared_memory(runtime: Any) -> None:
    """Shut down the shared-memory manager and its server process.

    Lava's wrapper first closes its segment handles, which raises BufferError while numpy views on them still
    exist, and then never reaches the manager; so the manager is shut down directly when the wrapper fails.
    """
    wrapper = getattr(getattr(runtime, "_messaging_infrastructure", None), "smm", None)
    if wrapper is None:
        return
    try:
        wrapper.shutdown()
    except Exception:  # a cleanup path: keep releasing whatever Lava's wrapper raised
        pass
    manager = getattr(wrapper, "_manager", None)
    if manager is not None:
        _quietly(manager.shutdown)  # multiprocessing's own: asks, then terminates, then kills the server
        wrapper._manager = None


def _quietly(action: Callable[..., object], *args: object) -> None:
    """One cleanup step on a process object that another thread may have closed meanwhile."""
    try:
        action(*args)
    except _CLOSED:
        pass
