"""SpikingNetwork models: the fused, batched leaf models and the sub-process graph that targets Loihi."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.dense.process import Dense
from lava.utils.weightutils import SignMode

from lavaflow.processes.cuba.process import CubaLIF
from lavaflow.processes.dynamics import (
    CubaFixed,
    CubaFloat,
    NeuronArithmetic,
    SoftResetFixed,
    SoftResetFloat,
    effective_bias,
)
from lavaflow.processes.network.process import SpikingNetwork
from lavaflow.processes.soft_reset.process import SoftResetLIF
from lavaflow.processes.topology import INPUT, CubaPopulation, Population, Projection, SoftResetPopulation
from lavaflow.processes.window import FIRST_WINDOW_STEP, window_position


class AbstractPyNetworkModel(PyLoihiProcessModel):
    """Steps every population of B samples in one OS process, with the timing of the Dense graph.

    Each Lava step: receive the input x; at window step 1 zero every state and send no spikes (the graph's
    neurons discard the residue there); otherwise each population receives Σ_c W_c · (what its source sent at
    the previous Lava step): the buffered input x and the populations' spikes of the previous step, which is
    Dense's one-step delay. Then each population integrates, fires and resets (lavaflow.processes.dynamics).
    Subclasses supply the precision: the synapse arithmetic, the neuron arithmetic and the payload types.
    """

    state_dtype: type = np.float64
    spike_dtype: type = np.float64

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.batch_size = int(proc_params["batch_size"])
        self.window_steps = int(proc_params["window_steps"])
        self.input_size = int(proc_params["input_size"])
        self.output = int(proc_params["output"])
        populations: tuple[Population, ...] = proc_params["populations"]
        projections: tuple[Projection, ...] = proc_params["projections"]
        self.arithmetic = [self.neuron_arithmetic(population) for population in populations]
        self.sizes = [int(population.size) for population in populations]
        shapes = [(self.batch_size, size) for size in self.sizes]
        self.states = [
            {name: np.zeros(shape, dtype=self.state_dtype) for name in arithmetic.state_names}
            for arithmetic, shape in zip(self.arithmetic, shapes, strict=True)
        ]
        # Per target population, in projection order (the order in which Lava's InPort sums its Dense outputs),
        # each with its weights transposed once: (B, n_source) @ (n_source, n_target).
        self.incoming = [
            [(p, np.ascontiguousarray(np.asarray(p.weights, dtype=np.float64).T)) for p in projections if p.target == i]
            for i in range(len(populations))
        ]
        self.previous_input = np.zeros((self.batch_size, self.input_size))
        self.previous_spikes = [np.zeros(shape) for shape in shapes]  # float64 0/1, ready for the matmuls

    def neuron_arithmetic(self, population: Population) -> NeuronArithmetic:
        raise NotImplementedError("neuron_arithmetic() is supplied by a concrete network model")

    def synaptic_input(self, projection: Projection, weights_t: np.ndarray, source: np.ndarray) -> np.ndarray:
        """One projection's contribution to a_in, (B, n_target), from its source's previous payload (B, n_source)."""
        raise NotImplementedError("synaptic_input() is supplied by a concrete network model")

    def encode_spikes(self, spikes: np.ndarray) -> np.ndarray:
        """Spikes as the payload type of ``s_out``: float64 (floating_pt) or int32 (fixed_pt)."""
        return spikes.astype(self.spike_dtype)

    def _source(self, projection: Projection) -> np.ndarray:
        """What the projection's Dense received at the previous step, as float64 (B, n_source)."""
        if projection.source != INPUT:
            return self.previous_spikes[projection.source]  # already 0.0 / 1.0
        if projection.num_message_bits == 0:  # Lava's Dense casts binary payloads to bool (−1 counts as +1)
            return (self.previous_input != 0).astype(np.float64)
        return self.previous_input

    def run_spk(self) -> None:
        payload = self.s_in.recv().reshape(self.batch_size, self.input_size).astype(np.float64)
        _, step = window_position(self.time_step, self.window_steps)
        if step == FIRST_WINDOW_STEP:
            for state, spikes in zip(self.states, self.previous_spikes, strict=True):
                for values in state.values():
                    values[...] = 0
                spikes[...] = 0.0
            self.previous_input = payload
            self.s_out.send(self.encode_spikes(self.previous_spikes[self.output]).reshape(-1))
            return
        a_in = []
        for incoming, size in zip(self.incoming, self.sizes, strict=True):
            total = None  # the first projection's array, then the others added in order (0 + a would be a too)
            for projection, weights_t in incoming:
                contribution = self.synaptic_input(projection, weights_t, self._source(projection))
                total = contribution if total is None else np.add(total, contribution, out=total)
            a_in.append(np.zeros((self.batch_size, size), dtype=self.state_dtype) if total is None else total)
        spikes = []
        for arithmetic, state, current in zip(self.arithmetic, self.states, a_in, strict=True):
            arithmetic.integrate(state, current)
            fired = arithmetic.fire(state)
            arithmetic.reset(state, fired)
            spikes.append(fired.astype(np.float64))
        self.previous_spikes = spikes
        self.previous_input = payload
        self.s_out.send(self.encode_spikes(spikes[self.output]).reshape(-1))


@implements(proc=SpikingNetwork, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikingNetworkModelFloat(AbstractPyNetworkModel):
    """The fused network in float64: a_in = Σ_c x_c @ W_cᵀ."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def neuron_arithmetic(self, population: Population) -> NeuronArithmetic:
        bias = np.asarray(population.bias_mant, dtype=np.float64)
        if isinstance(population, SoftResetPopulation):
            return SoftResetFloat(
                vth=float(population.vth), v_reset=float(population.v_reset), dv=float(population.dv), bias=bias
            )
        return CubaFloat(vth=float(population.vth), du=float(population.du), dv=float(population.dv), bias=bias)

    def synaptic_input(self, projection: Projection, weights_t: np.ndarray, source: np.ndarray) -> np.ndarray:
        return source @ weights_t


@implements(proc=SpikingNetwork, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySpikingNetworkModelFixed(AbstractPyNetworkModel):
    """The fused network in Lava's integers: a_in = Σ_c shift(x_c @ W_cᵀ, weight_exp_c), then the neuron dynamics.

    The products are summed in float64 by BLAS, which is exact here (|W| ≤ 256, payloads ≤ 255, sums < 2^53) and
    much faster than numpy's int64 matmul; each projection is shifted before the sum, as each Lava Dense shifts
    its own output before the neuron's InPort adds them. The shift is Lava's: << e, or arithmetic >> −e (floor).
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    state_dtype = np.int64
    spike_dtype = np.int32

    def neuron_arithmetic(self, population: Population) -> NeuronArithmetic:
        bias = effective_bias(population.bias_mant, population.bias_exp)
        if isinstance(population, SoftResetPopulation):
            return SoftResetFixed(
                vth=int(population.vth), v_reset=int(population.v_reset), dv=int(population.dv), bias=bias
            )
        return CubaFixed(vth=int(population.vth), du=int(population.du), dv=int(population.dv), bias=bias)

    def synaptic_input(self, projection: Projection, weights_t: np.ndarray, source: np.ndarray) -> np.ndarray:
        accumulated = np.rint(source @ weights_t).astype(np.int64)
        exponent = int(projection.weight_exp)
        return accumulated << exponent if exponent >= 0 else accumulated >> -exponent


@implements(proc=SpikingNetwork, protocol=LoihiProtocol)
class SubSpikingNetworkModel(AbstractSubProcessModel):
    """The Loihi graph: one Lava Dense per projection and one SoftResetLIF / CubaLIF per population.

    The children's models are picked by the run configuration's tag, so the same graph runs in floating_pt and
    fixed_pt. Fixed-point Dense gets ``sign_mode=MIXED`` and 8 weight bits explicitly: left to itself, Dense infers
    the sign mode from the values and clips −256 to −255 in a matrix without positive weights.
    """

    def __init__(self, proc: SpikingNetwork) -> None:
        params = proc.proc_params
        if int(params["batch_size"]) != 1:
            raise ValueError("the sub-process (Loihi) graph runs one sample at a time; build it with batch_size=1")
        window_steps = int(params["window_steps"])
        neurons = []
        for index, population in enumerate(params["populations"]):
            neuron = _neuron_process(population, window_steps, f"{proc.name}_population_{index}")
            setattr(self, f"population_{index}", neuron)  # find_sub_procs scans attributes, not lists
            neurons.append(neuron)
        for index, projection in enumerate(params["projections"]):
            dense = Dense(
                weights=np.asarray(projection.weights),
                num_message_bits=int(projection.num_message_bits),
                weight_exp=int(projection.weight_exp),
                num_weight_bits=8,
                sign_mode=SignMode.MIXED,
                name=f"{proc.name}_dense_{index}",
            )
            setattr(self, f"dense_{index}", dense)
            if projection.source == INPUT:
                proc.in_ports.s_in.connect(dense.s_in)
            else:
                neurons[projection.source].s_out.connect(dense.s_in)
            dense.a_out.connect(neurons[projection.target].a_in)
        neurons[int(params["output"])].s_out.connect(proc.out_ports.s_out)


def _neuron_process(population: Population, window_steps: int, name: str) -> SoftResetLIF | CubaLIF:
    common = {
        "shape": (population.size,),
        "vth": population.vth,
        "dv": population.dv,
        "bias_mant": population.bias_mant,
        "bias_exp": population.bias_exp,
        "window_steps": window_steps,
        "name": name,
    }
    if isinstance(population, CubaPopulation):
        return CubaLIF(du=population.du, **common)
    return SoftResetLIF(v_reset=population.v_reset, **common)
