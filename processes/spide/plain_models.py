"""The plain (Loihi-shaped) graph of SPIDENetwork: its SubProcessModel and the models of its three processes.

    SPIDEHost ─ctl─► every child          (mode, lr, mini-batch size, x: the window's schedule)
    input ─► Plastic_F ─► Fwd_0 ─s─► Plastic_1 ─► Fwd_1 … ─► Fwd_{N−1} ─rate─► SPIDEHost
              ▲   │                   ▲    │                   │
         error    │ (no Wᵀ)  error    Wᵀ/D                  └─s─► Plastic_fb ─► Fwd_0
              │                       │    ▼
           Tern_0 ◄─ Wᵀ/D ─ … ◄───── Tern_1 … Tern_{N−1} ◄─ g ─ SPIDEHost

(Plastic_e: edge e's PlasticConnection.) One sample per window (B = 1); a mini-batch is a run of windows whose
gradients PlasticConnection accumulates and steps in the LEARN window. Every process computes what SPIDENetwork's
fused model computes, split where the neurons and synapses of Loihi 2 split it; the fused model is the fast path, a
test holds the two to the same update. Both tags share one arithmetic here (float64 holding exact grid values in
fixed point, as the fused fixed model): ``fraction_bits`` None is float, q is fixed point.
"""

from __future__ import annotations

import math

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.spide.models import frobenius_factor, input_on_8_bits, on_grid, rate_normaliser, sgd_step
from lavaflow.processes.spide.process import (
    EVALUATE,
    EXPORT,
    HEADER,
    LEARN,
    PlasticConnection,
    SPIDEForwardNeurons,
    SPIDENetwork,
    TernaryNeurons,
    bias_name,
    weights_name,
    window_steps,
)
from lavaflow.processes.spide_maps import EdgeOperator


class _Windowed(PyLoihiProcessModel):
    """Counts window steps and reads the window's message at step 1 (mode, learning rate, payload)."""

    ctl_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self.forward_steps = int(proc_params["forward_steps"])
        self.backward_steps = int(proc_params["backward_steps"])
        self.step, self.mode, self.learning_rate, self.length = 0, EVALUATE, 0.0, self.forward_steps
        self.payload = np.zeros(0)

    def advance(self) -> bool:
        """Move to the next window step; False for an EXPORT window (nothing to do: the fused model's checkpoint)."""
        self.step += 1
        if self.step == 1:
            message = self.ctl_in.recv()
            self.mode, self.learning_rate = int(message[0]), float(message[1])
            self.payload = message[HEADER:]
            self.length = window_steps(self.mode, self.forward_steps, self.backward_steps)
        return self.mode != EXPORT

    def end_step(self) -> None:
        if self.step == self.length:
            self.step = 0


@implements(proc=SPIDEForwardNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PySPIDEForwardNeuronsModel(_Windowed):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    rate_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    mask_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, np.float64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.vth, self.leak = float(p["vth"]), float(p["leak"])
        self.subtraction = self.vth - float(p["v_reset"])
        self.trace = np.zeros(int(p["size"]))
        self.count = np.zeros(int(p["size"]))

    def run_spk(self) -> None:
        if self.advance() and self.step <= self.forward_steps:
            if self.step == 1:
                self.v[:] = 0.0
                self.trace[:] = 0.0
                self.count[:] = 0.0
            voltage = self.leak * self.v + self.a_in.recv()
            spikes = (voltage >= self.vth).astype(np.float64)
            self.v[:] = voltage - self.subtraction * spikes
            self.trace = self.leak * self.trace + spikes
            self.count += spikes
            self.s_out.send(spikes)
            if self.step == self.forward_steps:
                self.rate_out.send(self.trace / rate_normaliser(self.forward_steps, self.leak))
                if self.mode != EVALUATE:
                    self.mask_out.send(((self.count > 0) & (self.count < self.forward_steps)).astype(np.float64))
        self.end_step()


@implements(proc=TernaryNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyTernaryNeuronsModel(_Windowed):
    mask_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    g_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    error_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, np.float64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.vth, self.subtraction, self.leak = (float(p["vth_backward"]), float(p["backward_subtraction"]),
                                                 float(p["leak"]))
        self.injected = bool(p["injected"])
        bits = p["fraction_bits"]
        self.g_grid = None if bits is None else float(p["subtraction"]) * 2.0 ** int(bits)
        size = int(p["size"])
        self.mask, self.injection = np.zeros(size), np.zeros(size)
        self.trace = np.zeros(size)

    def run_spk(self) -> None:
        if self.advance() and self.mode != EVALUATE:
            if self.step == self.forward_steps:
                self.mask = self.mask_in.recv()
            elif self.step > self.forward_steps:
                if self.step == self.forward_steps + 1:
                    self.v[:] = 0.0
                    self.trace[:] = 0.0
                    if self.injected:
                        g = self.g_in.recv()
                        self.injection = g if self.g_grid is None else on_grid(g, self.g_grid)
                current = self.a_in.recv() + (self.injection if self.injected else 0.0)
                voltage = self.leak * self.v + current
                spikes = self.subtraction * ((voltage >= self.vth).astype(np.float64) - (voltage <= -self.vth))
                self.v[:] = voltage - spikes
                self.trace = self.leak * self.trace + spikes
                self.s_out.send(self.mask * spikes)
                if self.step == self.length:
                    self.error_out.send(self.mask * self.trace / rate_normaliser(self.backward_steps, self.leak))
        self.end_step()


@implements(proc=PlasticConnection, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyPlasticConnectionModel(_Windowed):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    pre_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    b_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    error_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, np.float64)
    bias: np.ndarray = LavaPyType(np.ndarray, np.float64)
    velocity_weights: np.ndarray = LavaPyType(np.ndarray, np.float64)
    velocity_bias: np.ndarray = LavaPyType(np.ndarray, np.float64)
    gradient_weights: np.ndarray = LavaPyType(np.ndarray, np.float64)
    gradient_bias: np.ndarray = LavaPyType(np.ndarray, np.float64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.operator: EdgeOperator = p["operator"]
        self.learns = self.operator.weight_shape is not None  # pooling only relays
        self.is_input, self.has_bias = bool(p["is_input"]), bool(p["has_bias"])
        self.norm_bound: float | None = p["norm_bound"]
        self.subtraction = float(p["subtraction"])
        self.loss_scale, self.momentum, self.weight_decay = (float(p["loss_scale"]), float(p["momentum"]),
                                                             float(p["weight_decay"]))
        bits = p["fraction_bits"]
        self.unit = None if bits is None else 2.0 ** int(bits)
        self.restart_gradients = True
        self.effective: np.ndarray | None = None
        self.forward_buffer = self.backward_buffer = self.pre = np.zeros(0)
        self.factor = 1.0

    def run_spk(self) -> None:
        if self.advance():
            if self.step == 1:
                self.begin()
            if self.step <= self.forward_steps:
                self.a_out.send(self.forward_buffer)
                if not self.is_input:
                    self.forward_buffer = self.forward(self.s_in.recv())
                    if self.step == self.forward_steps:
                        self.pre = self.pre_in.recv()
            elif not self.is_input or self.step == self.length:
                if self.step == self.forward_steps + 1:
                    self.backward_buffer = np.zeros(math.prod(self.operator.input_shape))
                if not self.is_input:
                    self.b_out.send(self.backward_buffer)
                    self.backward_buffer = self.operator.adjoint(self.b_in.recv()[None], self.effective)[0] / (
                        self.subtraction)
                if self.step == self.length:
                    error = self.error_in.recv()
                    if self.learns:
                        self.update(error)
        self.end_step()

    def begin(self) -> None:
        """Window step 1: the effective weight (a capped edge's) and the first forward message (b, or W·x̄ + b)."""
        weight, self.factor = (self.weights if self.learns else None), 1.0
        if self.norm_bound is not None:
            self.factor = frobenius_factor(weight, self.norm_bound)
            weight = weight * self.factor
            if self.unit is not None:
                weight = on_grid(weight, self.unit)
        self.effective = weight
        if self.is_input:
            self.pre = self.payload if self.unit is None else input_on_8_bits(self.payload)
            self.forward_buffer = self.forward(self.pre)
        else:
            self.forward_buffer = self.forward(np.zeros(math.prod(self.operator.input_shape)))

    def forward(self, source: np.ndarray) -> np.ndarray:
        """W·source + b (pooling: the pooled source)."""
        return self.operator.current(source[None], self.effective, self.bias if self.learns else None)[0]

    def update(self, error: np.ndarray) -> None:
        """ΔW = (1/D)·error·preᵀ ÷ loss scale (× the cap factor), accumulated; momentum SGD in a LEARN window."""
        scale = self.subtraction * self.loss_scale
        gradient = self.operator.weight_gradient(self.pre[None], error[None]) / scale * self.factor
        bias_gradient = self.operator.bias_gradient(error[None]) / scale
        if not self.has_bias:
            bias_gradient = np.zeros_like(bias_gradient)
        if self.restart_gradients:
            self.gradient_weights[:] = 0.0
            self.gradient_bias[:] = 0.0
        self.gradient_weights += gradient
        self.gradient_bias += bias_gradient
        self.restart_gradients = self.mode == LEARN
        if self.mode == LEARN:
            sgd_step(self.weights, self.velocity_weights, self.gradient_weights, self.learning_rate, self.momentum,
                     self.weight_decay)
            if self.has_bias:
                sgd_step(self.bias, self.velocity_bias, self.gradient_bias, self.learning_rate, self.momentum,
                         self.weight_decay)
            if self.unit is not None:
                self.weights[:] = on_grid(self.weights, self.unit)
                self.bias[:] = on_grid(self.bias, self.unit)


@implements(proc=SPIDENetwork, protocol=LoihiProtocol)
class SubSPIDENetworkModel(AbstractSubProcessModel):
    """SPIDENetwork as the plain graph (module docstring): per population an SPIDEForwardNeurons and a
    TernaryNeurons process, per edge a PlasticConnection; the network's Vars alias the PlasticConnection ones, so a
    session reads the same names in both graphs. Dropout is the fused model's alone (a ValueError here)."""

    def __init__(self, proc: SPIDENetwork) -> None:
        p = proc.proc_params
        if int(p["batch_size"]) != 1:
            raise ValueError("the plain SPIDE graph runs one sample per window; build it with batch_size=1")
        if float(p["dropout"]) > 0:
            raise ValueError("the plain SPIDE graph has no dropout; use the fused model (or dropout 0)")
        if p.get("input_norm") is not None:
            raise ValueError("the plain SPIDE graph has no input BatchNorm: it streams one sample per window, so a "
                             "batch's statistics are not there before its forward phase; use the fused model")
        sizes, edges, input_size = tuple(p["layer_sizes"]), tuple(p["edges"]), int(p["input_size"])
        timing = {"forward_steps": int(p["forward_steps"]), "backward_steps": int(p["backward_steps"])}
        subtraction = float(p["vth"]) - float(p["v_reset"])
        last = len(sizes) - 1
        forward, backward = [], []
        for index, size in enumerate(sizes):
            neurons = SPIDEForwardNeurons(size=size, input_size=input_size, vth=p["vth"], v_reset=p["v_reset"],
                                          leak=p["leak"], name=f"{proc.name}_forward_{index}", **timing)
            ternary = TernaryNeurons(size=size, input_size=input_size, vth_backward=p["vth_backward"],
                                     backward_subtraction=p["backward_subtraction"], leak=p["leak"],
                                     subtraction=subtraction, injected=index == last,
                                     fraction_bits=p["fraction_bits"], name=f"{proc.name}_ternary_{index}", **timing)
            setattr(self, f"forward_{index}", neurons)  # find_sub_procs scans attributes, not lists
            setattr(self, f"ternary_{index}", ternary)
            neurons.mask_out.connect(ternary.mask_in)
            forward.append(neurons)
            backward.append(ternary)
        controlled = [*forward, *backward]
        for number, ((source, target), operator) in enumerate(zip(edges, p["operators"], strict=True)):
            learns = operator.weight_shape is not None
            weights = getattr(proc, weights_name(number)).init if learns else None
            bias = getattr(proc, bias_name(number)).init if p["has_bias"][number] else None
            synapse = PlasticConnection(
                operator=operator, message_size=input_size,
                weights=None if weights is None else np.asarray(weights, dtype=np.float64),
                bias=None if bias is None else np.asarray(bias, dtype=np.float64), is_input=source < 0,
                norm_bound=p["norm_bounds"][number], subtraction=subtraction,
                loss_scale=p["loss_scale"], momentum=p["momentum"], weight_decay=p["weight_decay"],
                fraction_bits=p["fraction_bits"],
                velocity_weights=getattr(proc, f"velocity_{weights_name(number)}").init if learns else None,
                velocity_bias=getattr(proc, f"velocity_{bias_name(number)}").init if learns else None,
                name=f"{proc.name}_plastic_{number}", **timing)
            setattr(self, f"plastic_{number}", synapse)
            controlled.append(synapse)
            synapse.a_out.connect(forward[target].a_in)
            if source >= 0:
                forward[source].s_out.connect(synapse.s_in)
                forward[source].rate_out.connect(synapse.pre_in)
                backward[target].s_out.connect(synapse.b_in)
                synapse.b_out.connect(backward[source].a_in)
            backward[target].error_out.connect(synapse.error_in)
            if not learns:
                continue
            for name, var in ((weights_name(number), synapse.weights), (bias_name(number), synapse.bias)):
                getattr(proc, name).alias(var)
                getattr(proc, f"velocity_{name}").alias(getattr(synapse, f"velocity_{var.name}"))
                getattr(proc, f"gradient_{name}").alias(getattr(synapse, f"gradient_{var.name}"))
        proc.in_ports.x_in.connect([process.ctl_in for process in controlled])
        proc.in_ports.g_in.connect(backward[last].g_in)
        forward[last].rate_out.connect(proc.out_ports.a_out)
