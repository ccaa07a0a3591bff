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


def check_window_steps(window_steps: int) -> int:
    """Return ``window_steps`` if it is an int ≥ 2 (one restart step plus at least one dynamics step)."""
    if isinstance(window_steps, bool) or not isinstance(window_steps, (int, np.integer)) or window_steps < 2:
        raise ValueError(f"window_steps must be an integer ≥ 2 (time_steps + 1), got {window_steps!r}")
    return int(window_steps)


class AbstractWindowedNeurons(AbstractProcess):
    """The ports and Vars every windowed neuron process declares; a concrete process adds its own state and
    constants (CUBA: u, du; soft reset: v_reset)."""

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        vth: float,
        window_steps: int,
        dv: float,
        bias_mant: float | np.ndarray,
        bias_exp: int | np.ndarray,
        name: str | None,
        log_config: LogConfig | None,
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


class AbstractWindowedNeuronModel(PyLoihiProcessModel):
    """The order of a neuron step, shared by every neuron kind and precision (as Lava's LIF models share theirs).

    receive a_in → (window step 1: zero the state, drop a_in, send zeros) → sub-threshold update → spike → reset
    → send. Subclasses declare the Lava types of their Vars and ports and supply ``arithmetic()``; the arithmetic
    itself lives in ``lavaflow.processes.dynamics`` so that the fused network model computes the same numbers.
    """

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.window_steps = check_window_steps(proc_params["window_steps"])

    def arithmetic(self) -> NeuronArithmetic:
        """The neuron's arithmetic built from the current Var values (so a Var set between runs takes effect)."""
        raise NotImplementedError("arithmetic() is supplied by a concrete neuron model")

    spike_dtype: type = np.float64  # the payload type of s_out: float64 (floating_pt) or int32 (fixed_pt)
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
        _, step = window_position(self.time_step, self.window_steps)
        if step == FIRST_WINDOW_STEP:
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
