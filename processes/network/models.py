"""SpikingNetwork models: the fused, batched leaf models and the sub-process graph that targets Loihi; the
ExponentShift adaptor's models."""

from __future__ import annotations

import dataclasses
import re
from abc import ABCMeta
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.process.ports.ports import AbstractPort, InPort
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import SignMode

from lavaflow.processes.delay.process import DelayGate
from lavaflow.processes.dynamics import NeuronArithmetic
from lavaflow.processes.kinds import neuron_process, process_kind
from lavaflow.processes.network.process import (
    ExponentShift,
    SpikingNetwork,
    TraceJoin,
    bias_var_name,
    weights_var_name,
)
from lavaflow.processes.source.process import PAYLOAD_DTYPE, PayloadSource
from lavaflow.processes.synapses import LinearMap, exact_dtype, lava_conv_arguments, linear_map, shift
from lavaflow.processes.topology import INPUT_SOURCE, Population, Projection
from lavaflow.processes.window import (
    FIRST_STEP,
    FIRST_WINDOW_STEP,
    restarts_state,
    scheduled_position,
    window_payload,
)

# Lava's fixed-point Conv wraps Σ w·x into [−2^23, 2^23) (lava.proc.conv.utils.signed_clamp, bits=24).
CONV_ACCUMULATOR_LIMIT = 1 << 23


_PARAMETER_VAR = re.compile(r"(weights|bias)_[0-9]+|(payloads)")


class _ParameterVarTypes(ABCMeta):
    """Answers the LavaPyType of the ``weights_<i>`` / ``bias_<j>`` Vars, whose number is each network's own, and
    of the ``payloads`` Var, which only a network built with payloads has.

    Lava's builder looks a Var's type up as a class attribute of the model (getattr), one per Var name, but a
    SpikingNetwork has one weights Var per projection and one bias Var per population; the model class declares
    ``parameter_types`` once (a dict, so that Lava's check for LavaPyTypes without a Var does not see them) and
    this metaclass hands them out for any such name. Another missing name raises AttributeError as usual.
    """

    def __getattr__(cls, name: str) -> LavaPyType:
        match = _PARAMETER_VAR.fullmatch(name)
        if match is None:
            raise AttributeError(name)
        return cls.parameter_types[match.group(1) or match.group(2)]


class AbstractPyNetworkModel(PyLoihiProcessModel, metaclass=_ParameterVarTypes):
    """Steps every population of B samples in one OS process, with the timing of the Dense graph.

    Each Lava step: receive the input x; at window step 1 zero every state and send no spikes (the graph's
    neurons discard the residue there); otherwise each population receives Σ_c W_c · (what its source sent at
    the previous Lava step): the buffered input x and the populations' spikes of the previous step, which is
    Dense's (and Conv's) one-step delay; a projection of delay d > 1 reads its source's spikes of d steps before,
    from a history that window step 1 clears with the states (the graph's DelayGate drops that residue). W_c is a
    dense matrix or a convolution computed natively (lavaflow.processes.synapses). Then each population
    integrates, fires and resets (lavaflow.processes.dynamics). Subclasses supply the precision: the synapse
    arithmetic, the neuron arithmetic and the payload types.

    Windows follow the ``schedule`` Var (lavaflow.processes.window): a phase may keep the state at its first
    window step 1; the spike histories (the Dense buffers' stand-in) are cleared there in any case, as the Loihi
    graph drops the residue. Weights and biases are the ``weights_<i>`` / ``bias_<j>`` Vars; the synapses and the
    neuron arithmetic are rebuilt from them at the first step of every phase, so a Var.set between phases counts
    from the next phase on. What a population sends is its spike payload (0/1 for our kinds); a projection with
    num_message_bits 0 sees it as bool, as Lava's Dense does (−1 arrives as +1), one with 8 bits as it is.
    """

    state_dtype: type = np.float64
    spike_dtype: type = np.float64
    schedule: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.batch_size = int(proc_params["batch_size"])
        self.window_steps = int(proc_params["window_steps"])
        self.input_size = int(proc_params["input_size"])
        self.output = int(proc_params["output"])
        self.populations: tuple[Population, ...] = tuple(proc_params["populations"])
        self.projections: tuple[Projection, ...] = tuple(proc_params["projections"])
        populations, projections = self.populations, self.projections
        self.arithmetic = [self.neuron_arithmetic(population) for population in populations]
        self.sizes = [int(population.size) for population in populations]
        shapes = [(self.batch_size, size) for size in self.sizes]
        self.states = [
            {name: np.zeros(shape, dtype=self.state_dtype) for name in arithmetic.state_names}
            for arithmetic, shape in zip(self.arithmetic, shapes, strict=True)
        ]
        # Per target population, in projection order (the order in which Lava's InPort sums its synapses' outputs),
        # each with its linear map, (B, n_source) → (B, n_target), built from the Vars per phase (``prepare``).
        self.incoming: list[list[tuple[Projection, LinearMap]]] = []
        self.prepared_for: int | None = None  # the first_step of the phase the synapses were built for
        self.previous_input = np.zeros((self.batch_size, self.input_size))
        # Per source population, its spikes (bool; each map casts them to its dtype) of the last D steps, newest
        # first, D its longest outgoing delay: a projection of delay d reads entry d − 1, s[t − d] (d = 1: Dense's).
        depths = [max((p.delay for p in projections if p.source == i), default=1) for i in range(len(populations))]
        self.spike_history = [
            [np.zeros(shape, dtype=bool) for _ in range(d)] for shape, d in zip(shapes, depths, strict=True)
        ]
        self.record: tuple[tuple[int, str], ...] = tuple(proc_params["record"])
        self.record_size = max(1, sum(self.sizes[index] for index, _ in self.record))
        self.holds_payloads = bool(proc_params["holds_payloads"])
        self.no_input: np.ndarray | None = None  # zeros in the payloads' type, the input between samples

    def receive_input(self) -> np.ndarray:
        """This step's input, (B, n_input): from ``s_in``, or for a network that holds its payloads what a
        PayloadSource would have sent: the window's samples at window step k ≤ T, zeros at the other steps."""
        if not self.holds_payloads:
            return self.s_in.recv().reshape(self.batch_size, self.input_size)
        payload = window_payload(self.payloads, self.batch_size, *scheduled_position(self.time_step, self.schedule))
        if payload is not None:
            return payload
        if self.no_input is None:
            self.no_input = np.zeros((self.batch_size, self.input_size), dtype=self.payloads.dtype)
        return self.no_input

    def send_traces(self, spikes: list[np.ndarray] | None) -> None:
        """Send the recorded traces of this step on ``r_out``, (B, Σ n) flattened; zeros at window step 1."""
        if spikes is None or not self.record:
            self.r_out.send(np.zeros(self.batch_size * self.record_size))
            return
        traces = [
            spikes[index] if variable == "spikes" else self.states[index].get(variable, np.zeros_like(spikes[index]))
            for index, variable in self.record
        ]
        self.r_out.send(np.concatenate(traces, axis=1, dtype=np.float64).reshape(-1))

    def prepare(self) -> None:
        """Rebuild the synapses and the neuron arithmetic from the weights and bias Vars (a phase's first step)."""
        projections = [
            dataclasses.replace(projection, weights=getattr(self, weights_var_name(index)))
            for index, projection in enumerate(self.projections)
        ]
        self.incoming = [
            [(p, linear_map(p, self.map_dtype(p))) for p in projections if p.target == i]
            for i in range(len(self.populations))
        ]
        self.arithmetic = [
            self.neuron_arithmetic(dataclasses.replace(population, bias_mant=getattr(self, bias_var_name(index))))
            for index, population in enumerate(self.populations)
        ]

    def neuron_arithmetic(self, population: Population) -> NeuronArithmetic:
        raise NotImplementedError("neuron_arithmetic() is supplied by a concrete network model")

    def map_dtype(self, projection: Projection) -> type:
        """The dtype in which the projection's products are summed: float64 (the fixed model may pick float32)."""
        return np.float64

    def synaptic_input(self, projection: Projection, accumulated: np.ndarray) -> np.ndarray:
        """One projection's contribution to a_in, (B, n_target), from its summed W·s (float64, before weight_exp)."""
        raise NotImplementedError("synaptic_input() is supplied by a concrete network model")

    def encode_spikes(self, spikes: np.ndarray) -> np.ndarray:
        """Spikes as the payload type of ``s_out``: float64 (floating_pt) or int32 (fixed_pt)."""
        return spikes.astype(self.spike_dtype)

    def _source(self, projection: Projection) -> np.ndarray:
        """What the projection's synapse received at the previous step, (B, n_source) as sent (the map casts it)."""
        if projection.source == INPUT_SOURCE:
            payload = self.previous_input
        else:
            payload = self.spike_history[projection.source][projection.delay - 1]
        if projection.num_message_bits == 0 and payload.dtype != bool:  # Lava's Dense and Conv cast binary
            return payload != 0  # payloads to bool (−1 counts as +1)
        return payload

    def run_spk(self) -> None:
        payload = self.receive_input()
        if self.prepared_for != int(self.schedule[FIRST_STEP]):  # a new phase: Vars may have been set before it
            self.prepare()
            self.prepared_for = int(self.schedule[FIRST_STEP])
        window, step = scheduled_position(self.time_step, self.schedule)
        if step == FIRST_WINDOW_STEP:
            restart = restarts_state(window, self.schedule)
            for state, history in zip(self.states, self.spike_history, strict=True):
                for values in state.values():
                    if restart:
                        values[...] = 0
                for spikes in history:  # the previous window's delayed spikes too: each window starts empty
                    spikes[...] = 0.0
            self.previous_input = payload
            self.s_out.send(self.encode_spikes(self.spike_history[self.output][0]).reshape(-1))
            self.send_traces(None)
            return
        a_in = []
        for incoming, size in zip(self.incoming, self.sizes, strict=True):
            total = None  # the first projection's array, then the others added in order (0 + a would be a too)
            for projection, apply in incoming:
                contribution = self.synaptic_input(projection, apply(self._source(projection)))
                total = contribution if total is None else np.add(total, contribution, out=total)
            a_in.append(np.zeros((self.batch_size, size), dtype=self.state_dtype) if total is None else total)
        spikes = []
        for arithmetic, state, current in zip(self.arithmetic, self.states, a_in, strict=True):
            arithmetic.integrate(state, current)
            fired = arithmetic.fire(state)
            arithmetic.reset(state, fired)
            spikes.append(fired)  # the payload: bool spikes as they are (each map casts to its own dtype)
        for history, fired in zip(self.spike_history, spikes, strict=True):
            history.insert(0, fired)  # a fresh array each step: the oldest one drops out, nothing is copied
            history.pop()
        self.previous_input = payload
        self.s_out.send(self.encode_spikes(spikes[self.output]).reshape(-1))
        self.send_traces(spikes)


@implements(proc=SpikingNetwork, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikingNetworkModelFloat(AbstractPyNetworkModel):
    """The fused network in float64: a_in = Σ_c W_c · x_c (weight_exp ignored, as by Lava's float Dense)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    r_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    # The types of every weights_<i> and bias_<j> Var (see _ParameterVarTypes).
    parameter_types: ClassVar[Mapping[str, LavaPyType]] = MappingProxyType(
        {
            "weights": LavaPyType(np.ndarray, float),
            "bias": LavaPyType(np.ndarray, float),
            "payloads": LavaPyType(np.ndarray, float),
        }
    )

    def neuron_arithmetic(self, population: Population) -> NeuronArithmetic:
        return process_kind(population).float_arithmetic(population)

    def synaptic_input(self, projection: Projection, accumulated: np.ndarray) -> np.ndarray:
        return accumulated


@implements(proc=SpikingNetwork, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySpikingNetworkModelFixed(AbstractPyNetworkModel):
    """The fused network in Lava's integers: a_in = Σ_c shift(W_c · x_c, weight_exp_c), then the neuron dynamics.

    The products are summed by BLAS in floating point, which is exact here and much faster than numpy's int64
    matmul: every partial sum is an integer, below 2^53 always (|W| ≤ 256, payloads ≤ 255), so float64 is exact in
    any order, dense matmul and native convolution alike; float32, twice as fast, where the projection's bound keeps
    them below 2^24 (lavaflow.processes.synapses.exact_dtype). The sums are then int64, and each projection is
    shifted before the sum, as each Lava Dense shifts its own output before the neuron's InPort adds them. The
    shift is Lava's: << e, or arithmetic >> −e (floor).
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    r_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)  # integer states ≤ 24 bits: exact in float64
    parameter_types: ClassVar[Mapping[str, LavaPyType]] = MappingProxyType(
        {  # weights: even integers in [−256, 254], as Dense's; bias: bias_mant, as the neurons'
            "weights": LavaPyType(np.ndarray, np.int32, precision=9),
            "bias": LavaPyType(np.ndarray, np.int32, precision=13),
            "payloads": LavaPyType(np.ndarray, PAYLOAD_DTYPE, precision=8),  # as PayloadSource's
        }
    )
    state_dtype = np.int64
    spike_dtype = np.int32

    def neuron_arithmetic(self, population: Population) -> NeuronArithmetic:
        return process_kind(population).fixed_arithmetic(population)

    def map_dtype(self, projection: Projection) -> type:
        return exact_dtype(projection)

    def synaptic_input(self, projection: Projection, accumulated: np.ndarray) -> np.ndarray:
        return shift(np.rint(accumulated).astype(np.int64), int(projection.weight_exp))


@implements(proc=SpikingNetwork, protocol=LoihiProtocol)
class SubSpikingNetworkModel(AbstractSubProcessModel):
    """The Loihi graph: one Lava Dense, Sparse or Conv per projection and one neuron process per population (its
    kind's).

    The children's models are picked by the run configuration's tag, so the same graph runs in floating_pt and
    fixed_pt. Fixed-point Dense gets ``sign_mode=MIXED`` and 8 weight bits explicitly: left to itself, Dense infers
    the sign mode from the values and clips −256 to −255 in a matrix without positive weights.

    A dense projection with a delay of d ≥ 2 steps becomes Lava's DelayDense followed by a DelayGate
    (``_connect_delayed`` says why); a conv projection must have d = 1, as Lava has no delayed Conv (refused with a
    ValueError; the fused model takes any delay). A conv projection becomes Lava's own Conv (lava.proc.conv), never
    an unrolled matrix. What Lava's Conv models
    (lava-nc 0.10, PyConvModelFloat / PyConvModelFixed, read in lava/proc/conv/{models,utils}.py) do, and what
    that takes here:

    - Timing: like Dense, ``run_spk`` sends ``a_buf`` (computed from the previous step's input, Var init 0) before
      it receives, so a Conv delays by exactly one step, as Dense does. No delay adaptor is needed.
    - Layout: WHC ports (x = width first) and a (C_out, kW, kH, C_in/groups) kernel applied as a true convolution
      (scipy's convolve2d flips it); our populations are C·H·W-flattened torch cross-correlations. Virtual ports
      do the layout (reshape to (C, H, W), transpose to (W, H, C) on the way in, back and flattened on the way
      out; Lava applies them in the receiving port, no extra process) and the kernel is flipped and transposed
      once (lavaflow.processes.synapses.lava_conv_arguments).
    - num_message_bits: as Dense: 0 casts the payload to bool (−1 arrives as +1), > 0 passes graded values.
    - weight_exp: a Var that neither model ever reads (nor ``num_weight_bits``; there is no sign mode at all), so
      Lava's simulated Conv always computes Σ w·x with exponent 0 and untruncated weights. Our fixed-point weights
      are even integers in [−256, 254], which Dense (MIXED, 8 bits) keeps too, so both see the same kernel values;
      the exponent is applied by our ExponentShift adaptor between Conv and the neurons (zero delay, one extra OS
      process per conv projection with weight_exp ≠ 0), and Conv itself gets weight_exp = 0, so that nothing
      would shift twice if a future Conv model honoured it.
    - Fixed point range: the fixed model wraps its accumulator to 24 bits (``signed_clamp``: modulo, not
      saturation) before any exponent, where Dense keeps the full int32 sum. Exact while |Σ w·x| < 2^23; a kernel
      whose worst case could reach that (only possible with a negative weight_exp, after which a_in still fits 18
      bits) is refused here with a ValueError rather than simulated differently from the fused model: Lava's Conv
      cannot express such a projection in fixed point, lower it as a dense matrix instead.
    - Speed: one scipy convolve2d per (output, input) channel pair per step (the torch path is disabled in Lava),
      ~4,096 calls per step for a 64→64 layer. The Loihi graph is for parity, the fused model for throughput.
    """

    def __init__(self, proc: SpikingNetwork) -> None:
        params = proc.proc_params
        if int(params["batch_size"]) != 1:
            raise ValueError("the sub-process (Loihi) graph runs one sample at a time; build it with batch_size=1")
        window_steps = int(params["window_steps"])
        neurons = []
        for index, population in enumerate(params["populations"]):
            neuron = neuron_process(population, window_steps, f"{proc.name}_population_{index}")
            setattr(self, f"population_{index}", neuron)  # find_sub_procs scans attributes, not lists
            getattr(proc, bias_var_name(index)).alias(neuron.bias_mant)
            neurons.append(neuron)
        network_input = proc.in_ports.s_in
        if params["holds_payloads"]:  # the payloads go into the graph as the PayloadSource that sends them
            self.payload_source = PayloadSource(payloads=proc.payloads.init, batch_size=1, window_steps=window_steps,
                                                name=f"{proc.name}_source")
            proc.payloads.alias(self.payload_source.payloads)
            network_input = self.payload_source.s_out
        for index, projection in enumerate(params["projections"]):
            source = network_input if projection.source == INPUT_SOURCE else neurons[projection.source].s_out
            target = neurons[projection.target].a_in
            if projection.sparse is not None:
                self._connect_sparse(f"{proc.name}_sparse_{index}", index, projection, source, target, window_steps)
            elif projection.conv is None and projection.delay > 1:
                name = f"{proc.name}_delay_dense_{index}"
                self._connect_delayed(proc, name, index, projection, source, target, window_steps)
            elif projection.conv is None:
                self._connect_dense(proc, f"{proc.name}_dense_{index}", index, projection, source, target)
            else:
                self._connect_conv(f"{proc.name}_conv_{index}", index, projection, source, target)
        neurons[int(params["output"])].s_out.connect(proc.out_ports.s_out)
        self._connect_traces(proc, neurons, tuple(params["record"]))

    def _connect_traces(self, proc: SpikingNetwork, neurons: list, record: tuple[tuple[int, str], ...]) -> None:
        """The recorded neurons' s_out / v_out / u_out, joined in ``record`` order by TraceJoin, onto r_out."""
        if not record:
            return  # r_out stays unconnected: nothing sends on it, and nothing may read it
        taps = {"spikes": "s_out", "v": "v_out", "u": "u_out"}
        joined: AbstractPort = getattr(neurons[record[0][0]], taps[record[0][1]])
        size = int(neurons[record[0][0]].v.shape[0])
        for position, (index, variable) in enumerate(record[1:], start=1):
            extra = int(neurons[index].v.shape[0])
            join = TraceJoin(sizes=(size, extra), name=f"{proc.name}_trace_join_{position}")
            setattr(self, f"trace_join_{position}", join)
            joined.connect(join.a_in)
            getattr(neurons[index], taps[variable]).connect(join.b_in)
            joined, size = join.out, size + extra
        joined.connect(proc.out_ports.r_out)

    def _connect_dense(
        self, proc: SpikingNetwork, name: str, index: int, projection: Projection, source: AbstractPort, target: InPort
    ) -> None:
        """source → Lava's Dense → target, its ``weights`` Var aliased by the network's ``weights_<index>``."""
        dense = Dense(
            weights=np.asarray(projection.weights),
            num_message_bits=int(projection.num_message_bits),
            weight_exp=int(projection.weight_exp),
            num_weight_bits=8,
            sign_mode=SignMode.MIXED,
            name=name,
        )
        setattr(self, f"dense_{index}", dense)
        getattr(proc, weights_var_name(index)).alias(dense.weights)
        source.connect(dense.s_in)
        dense.a_out.connect(target)

    def _connect_delayed(
        self,
        proc: SpikingNetwork,
        name: str,
        index: int,
        projection: Projection,
        source: AbstractPort,
        target: InPort,
        window_steps: int,
    ) -> None:
        """source → Lava's DelayDense → DelayGate → target, for a dense projection of delay d ≥ 2 Lava steps.

        DelayDense (lava-nc 0.10, lava/proc/dense/models.py) adds W·s of synapses with ``delays`` k to column k of
        its buffer and sends column 0 before it receives, so k means k + 1 steps in all: it gets k = d − 1. Both
        of its models scale weights exactly as Dense's (the fixed one clips and truncates with the sign_mode and
        num_weight_bits given here, then shifts by weight_exp; the float one ignores them) and cast binary
        payloads to bool. The DelayGate behind it drops what the previous sample left in its buffer.
        """
        weights = np.asarray(projection.weights)
        delayed = DelayDense(
            weights=weights,
            delays=np.full(weights.shape, int(projection.delay) - 1, dtype=np.int64),
            num_message_bits=int(projection.num_message_bits),
            weight_exp=int(projection.weight_exp),
            num_weight_bits=8,
            sign_mode=SignMode.MIXED,
            name=name,
        )
        gate = DelayGate(
            shape=(weights.shape[0],), delay=int(projection.delay), window_steps=window_steps, name=f"{name}_gate"
        )
        setattr(self, f"delay_dense_{index}", delayed)
        setattr(self, f"delay_gate_{index}", gate)
        getattr(proc, weights_var_name(index)).alias(delayed.weights)
        source.connect(delayed.s_in)
        delayed.a_out.connect(gate.a_in)
        gate.a_out.connect(target)

    def _connect_sparse(
        self,
        name: str,
        index: int,
        projection: Projection,
        source: AbstractPort,
        target: InPort,
        window_steps: int,
    ) -> None:
        """source → Lava's Sparse (or DelaySparse → DelayGate for d ≥ 2 steps) → target, the non-zeros in CSR form.

        Lava's Sparse and DelaySparse time, scale and cast exactly as Dense and DelayDense do (lava-nc 0.10,
        lava/proc/sparse/models.py: a_buff sent before receiving; the fixed models clip and truncate with the sign
        mode and bits given, then shift by weight_exp), so the same arguments give the same numbers; DelaySparse
        takes its delays as a CSR matrix on the same non-zeros (d − 1 each, as DelayDense's k). The network's
        ``weights_<index>`` Var holds the (nnz,) values and is not aliased: Lava's Var here is the CSR matrix.
        """
        layout = projection.sparse
        weights = layout.matrix(projection.weights)
        arguments = dict(
            weights=weights,
            num_message_bits=int(projection.num_message_bits),
            weight_exp=int(projection.weight_exp),
            num_weight_bits=8,
            sign_mode=SignMode.MIXED,
        )
        if projection.delay == 1:
            sparse = Sparse(**arguments, name=name)
            setattr(self, f"sparse_{index}", sparse)
            source.connect(sparse.s_in)
            sparse.a_out.connect(target)
            return
        delays = layout.matrix(np.full(weights.nnz, int(projection.delay) - 1, dtype=np.int64))
        delayed = DelaySparse(**arguments, delays=delays, name=f"{name}_delayed")
        gate = DelayGate(
            shape=(weights.shape[0],), delay=int(projection.delay), window_steps=window_steps, name=f"{name}_gate"
        )
        setattr(self, f"delay_sparse_{index}", delayed)
        setattr(self, f"delay_gate_{index}", gate)
        source.connect(delayed.s_in)
        delayed.a_out.connect(gate.a_in)
        gate.a_out.connect(target)

    def _connect_conv(
        self, name: str, index: int, projection: Projection, source: AbstractPort, target: InPort
    ) -> None:
        """source (C·H·W flat) → (W, H, C) → Lava Conv → (C', H', W') flat → [ExponentShift] → target."""
        conv = projection.conv
        if projection.delay != 1:
            raise ValueError(
                f"{name}: a conv projection with a delay of {projection.delay} Lava steps; Lava has no delayed Conv, "
                f"so the Loihi graph takes convolutions with one step only (the fused model takes any delay)"
            )
        _check_conv_accumulator(name, projection)
        arguments = lava_conv_arguments(projection.weights, conv)
        lava_conv = Conv(
            **arguments, weight_exp=0, num_weight_bits=8, num_message_bits=int(projection.num_message_bits), name=name
        )
        setattr(self, f"conv_{index}", lava_conv)
        source.reshape(tuple(conv.input_shape)).transpose((2, 1, 0)).connect(lava_conv.s_in)
        output = lava_conv.a_out.transpose((2, 1, 0)).flatten()
        if int(projection.weight_exp) == 0:
            output.connect(target)
            return
        adaptor = ExponentShift(shape=(output.size,), weight_exp=int(projection.weight_exp), name=f"{name}_exponent")
        setattr(self, f"exponent_{index}", adaptor)
        output.connect(adaptor.a_in)
        adaptor.a_out.connect(target)


def _check_conv_accumulator(name: str, projection: Projection) -> None:
    """Refuse an integer kernel whose Σ w·x could leave the 24 bits Lava's fixed-point Conv wraps it to."""
    kernel = np.asarray(projection.weights)
    if not np.issubdtype(kernel.dtype, np.integer):
        return  # float records run floating_pt, whose Conv does not wrap
    payload = 1 if projection.num_message_bits == 0 else (1 << int(projection.num_message_bits)) - 1
    reach = int(np.abs(kernel.astype(np.int64)).sum(axis=(1, 2, 3)).max()) * payload
    if reach >= CONV_ACCUMULATOR_LIMIT:
        raise ValueError(
            f"{name}: Σ|w|·x of this kernel can reach {reach} before weight_exp {projection.weight_exp}, beyond the "
            f"±2^23 Lava's fixed-point Conv wraps its accumulator to (lava.proc.conv.utils.signed_clamp), while the "
            f"fused model and Dense keep it: Lava's Conv cannot express this projection; lower it as a dense matrix"
        )


@implements(proc=ExponentShift, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyExponentShiftModelFloat(PyLoihiProcessModel):
    """Passes a_in through: floating_pt ignores weight_exp, as Lava's float Dense does."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        self.a_out.send(self.a_in.recv())


@implements(proc=ExponentShift, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyExponentShiftModelFixed(PyLoihiProcessModel):
    """a_in << weight_exp, or arithmetic >> −weight_exp (floor), as Lava's Dense shifts its accumulated W·s."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        shifted = shift(self.a_in.recv().astype(np.int64), int(self.proc_params["weight_exp"]))
        self.a_out.send(shifted.astype(np.int32))


@implements(proc=TraceJoin, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyTraceJoinModel(PyLoihiProcessModel):
    """out = [a_in, b_in] in float64, in the step they arrive (recorded integer states are exact in float64)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        self.out.send(np.concatenate([self.a_in.recv(), self.b_in.recv()]).astype(np.float64))
