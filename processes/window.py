"""The per-sample window: how a Lava graph presents N samples one after another in a single run.

A graph built for samples of T steps runs each sample for a window of ``window_steps = T + 1`` Lava steps, so N
samples take one ``RunSteps(N·(T + 1))`` with no host round trip between them. Lava counts ``time_step`` from 1;
window w (from 0) covers time steps w·(T+1) + 1 … (w+1)·(T+1), and within it the window step k runs 1 … T+1.

    source      sends x[k] at window step k ≤ T (nothing, i.e. zeros, at k = T + 1)
    Dense       delivers at step k + 1 what it received at step k (Lava's Dense sends last step's buffer)
    neurons     k = 1: zero the state, DISCARD a_in, send no spikes;  k ≥ 2: dynamics step t = k − 1
    sink        counts what arrives at window steps ≥ ``first_step`` (2 for our graphs)

Why discard a_in at k = 1: it is W·x sent at the previous window's last step, the residue Dense still buffers
from the previous sample. Dropping it and starting the dynamics at k = 2 gives exactly the NetSpec time
semantics: dynamics step t (window step t + 1) receives W·x[t] from the input connection without delay, and
W·s_q[t − 1] from a population q (q fired at window step t; its Dense delivers one step later), which is the
one-step delay between populations; at t = 1 the populations' spikes from window step 1 are zero, so
s_q[0] = 0. Every state starts at zero per sample because it is zeroed at k = 1. The extra step per sample is
the price of the delay line: with T steps per window the next sample's first input would collide with the
residue.

Phases (lavaflow.pipeline.lava.live): a session that stays up runs phases of different lengths, some of which keep
the neurons' state. Each windowed process therefore reads its windows from a ``schedule`` Var, which the host sets
between runs (one small Var.set per process and phase), instead of from time_step alone:

    schedule = [first_step, window_steps, reset, inputs, learn]

first_step is the Lava time_step at which the phase's first window begins; windows of ``window_steps`` follow one
another from there. ``reset`` 0 keeps the neurons' state at the phase's first window step 1 (later windows, each a
new sample, always reset); a_in is dropped and no spikes are sent at every window step 1 all the same, so a phase
always starts with s_q[0] = 0 and without the residue, state kept or not. ``inputs`` 0 tells a source to send
zeros for the whole phase. ``learn`` 1 lets plastic processes update their weights in this phase (none reads it
yet: SPIDE's plasticity will). The initial schedule, [1, T + 1, 1, 1, 0], is the fixed windows above, so a graph
that nobody schedules (run_lava) behaves as before.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from lavaflow.processes.dynamics import NeuronArithmetic, State

FIRST_WINDOW_STEP = 1  # the step at which neurons restart (Lava's time_step starts at 1)
FIRST_DYNAMICS_STEP = 2  # the window step of dynamics step t = 1


def window_position(time_step: int, window_steps: int) -> tuple[int, int]:
    """(window index from 0, window step from 1) of Lava's ``time_step`` (from 1)."""
    window, offset = divmod(int(time_step) - 1, int(window_steps))
    return window, offset + 1


SCHEDULE_SIZE = 5  # [first_step, window_steps, reset, inputs, learn]
FIRST_STEP, WINDOW_STEPS, RESET, INPUTS, LEARN = range(SCHEDULE_SIZE)


def initial_schedule(window_steps: int) -> np.ndarray:
    """The schedule of a graph run in fixed windows from time_step 1: every window resets, inputs are sent, no
    learning."""
    return np.array([1, check_window_steps(window_steps), 1, 1, 0], dtype=np.int64)


def phase_schedule(first_step: int, window_steps: int, *, reset: bool, inputs: bool, learn: bool) -> np.ndarray:
    """The schedule of a phase whose first window begins at Lava time_step ``first_step``."""
    if first_step < 1:
        raise ValueError(f"a phase begins at a Lava time_step ≥ 1, got {first_step}")
    flags = (int(reset), int(inputs), int(learn))
    return np.array([first_step, check_window_steps(window_steps), *flags], dtype=np.int64)


def scheduled_position(time_step: int, schedule: np.ndarray) -> tuple[int, int]:
    """(window index from 0 within the phase, window step from 1) of Lava's ``time_step`` under ``schedule``."""
    return window_position(int(time_step) - int(schedule[FIRST_STEP]) + 1, int(schedule[WINDOW_STEPS]))


def restarts_state(window: int, schedule: np.ndarray) -> bool:
    """Whether window step 1 of ``window`` zeroes the state: always but in a phase's first window kept by reset=0."""
    return window > 0 or bool(schedule[RESET])


def check_window_steps(window_steps: int) -> int:
    """Return ``window_steps`` if it is an int ≥ 2 (one restart step plus at least one dynamics step)."""
    if isinstance(window_steps, bool) or not isinstance(window_steps, (int, np.integer)) or window_steps < 2:
        raise ValueError(f"window_steps must be an integer ≥ 2 (time_steps + 1), got {window_steps!r}")
    return int(window_steps)


def check_payload_windows(payloads: np.ndarray, size: int, batch_size: int, window_steps: int) -> None:
    """Raise ValueError unless ``payloads`` is (N, T, size) with N whole windows of ``batch_size`` samples and
    ``window_steps`` ≥ T + 1 (the window's restart step)."""
    if not isinstance(payloads, np.ndarray) or payloads.ndim != 3 or payloads.shape[2] != size:
        raise ValueError(
            f"payloads must be a (samples, time_steps, {size}) array, got {getattr(payloads, 'shape', payloads)}"
        )
    num_samples, time_steps, _ = payloads.shape
    if batch_size < 1 or num_samples % batch_size:
        raise ValueError(f"{num_samples} samples do not fill whole windows of batch_size={batch_size}; pad them")
    if check_window_steps(window_steps) < time_steps + 1:
        raise ValueError(f"window_steps={window_steps} cannot hold T={time_steps} steps plus the restart step")



def window_payload(payloads: np.ndarray, batch_size: int, window: int, step: int) -> np.ndarray | None:
    """What a source sends at window step ``step`` of window ``window``: the window's B samples' payloads
    x[step − 1], (B, n), for step ≤ T; None (send zeros) at the restart step T + 1 and after the last window."""
    first = window * batch_size
    if step <= payloads.shape[1] and first < payloads.shape[0]:
        return payloads[first : first + batch_size, step - 1]
    return None

class AbstractWindowedNeurons(AbstractProcess):
    """The ports and Vars every windowed neuron process declares; a concrete process adds its own state and
    constants (CUBA: u, du; soft reset: v_reset) and passes the rest here as ``**neuron``.

    Args:
        shape: neurons, e.g. (n,).
        vth: threshold.
        window_steps: Lava steps per sample, T + 1.
        dv: fraction of the voltage lost per step.
        bias_mant: per-neuron (or scalar) bias mantissa.
        bias_exp: fixed point only: bias = bias_mant << bias_exp.
        name: process name.
        log_config: Lava's logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        vth: float,
        window_steps: int,
        dv: float = 0.0,
        bias_mant: float | np.ndarray = 0.0,
        bias_exp: int | np.ndarray = 0,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(shape=shape, window_steps=window_steps, name=name, log_config=log_config)
        check_window_steps(window_steps)  # after super(): Lava's __del__ needs an initialised process
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        # Recording taps: the state after each step's reset, sent every step (zeros at window step 1) so that a
        # recorder can stream traces out of the graph; left unconnected, they cost one buffer copy per step.
        self.v_out = OutPort(shape=shape)
        self.u_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.vth = Var(shape=(1,), init=vth)
        self.dv = Var(shape=(1,), init=dv)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=shape, init=bias_exp)
        self.schedule = Var(shape=(SCHEDULE_SIZE,), init=initial_schedule(window_steps))  # set per phase


class AbstractWindowedNeuronModel(PyLoihiProcessModel):
    """The order of a neuron step, shared by every neuron kind and precision (as Lava's LIF models share theirs).

    receive a_in → (window step 1: zero the state unless the phase keeps it, drop a_in, send zeros) → sub-threshold
    update → spike → reset → send. Subclasses declare the Lava types of their Vars and ports and supply
    ``arithmetic()``; the arithmetic itself lives in ``lavaflow.processes.dynamics`` so that the fused network model
    computes the same numbers.
    """

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.window_steps = check_window_steps(proc_params["window_steps"])

    def arithmetic(self) -> NeuronArithmetic:
        """The neuron's arithmetic built from the current Var values (so a Var set between runs takes effect)."""
        raise NotImplementedError("arithmetic() is supplied by a concrete neuron model")

    spike_dtype: type = np.float64  # the payload type of s_out: float64 (floating_pt) or int32 (fixed_pt)
    schedule: np.ndarray = LavaPyType(np.ndarray, np.int64)  # the phase's windows (see the module docstring)
    # Recording taps, float64 in both precisions: integer states (24 bits) are exact in float64.
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def send_state(self, state: State) -> None:
        """Send v and u (zeros for a kind without a current) on the recording taps."""
        v = np.asarray(state["v"], dtype=np.float64)  # every kind has a voltage
        self.v_out.send(v)
        self.u_out.send(np.asarray(state["u"], dtype=np.float64) if "u" in state else np.zeros_like(v))

    def encode_spikes(self, spikes: np.ndarray) -> np.ndarray:
        """Boolean spikes as the payload type of ``s_out``."""
        return spikes.astype(self.spike_dtype)

    def state(self, names: tuple[str, ...]) -> State:
        return {name: getattr(self, name) for name in names}

    def run_spk(self) -> None:
        a_in = self.a_in.recv()  # always receive: every channel must be drained every step
        arithmetic = self.arithmetic()
        state = self.state(arithmetic.state_names)
        window, step = scheduled_position(self.time_step, self.schedule)
        if step == FIRST_WINDOW_STEP:
            if restarts_state(window, self.schedule):
                for values in state.values():
                    values[...] = 0
            self.s_out.send(self.encode_spikes(np.zeros(a_in.shape, dtype=bool)))
            self.send_state(state)
            return
        arithmetic.integrate(state, a_in)
        spikes = arithmetic.fire(state)
        arithmetic.reset(state, spikes)
        self.s_out.send(self.encode_spikes(spikes))
        self.send_state(state)
