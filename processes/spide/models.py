"""SPIDENetwork and SPIDEHost models: the fused, batched CPU models of SPIDE's training graph.

One abstract model fixes the order of a window (lavaflow.processes.spide.process says which message arrives at
which window step); each edge applies its map (lavaflow.processes.spide_maps: dense, conv, transposed conv,
average pooling) forward, its adjoint backward and its weight gradient in the update; ``floating_pt`` computes in
float64. The ``fixed_pt`` model keeps the same order with integer
state: weights and biases are integers in units of 2^−q (q = ``fraction_bits``), forward voltages integers in the
same unit (vth·2^q, D·2^q), backward voltages integers in units of 2^−q/D (so (1/D)·Wᵀs is the integer Wᵀs, vth_b
and D_b become vth_b·D·2^q and D_b·D·2^q, and g is rounded onto that grid). Spike counts are exact integers, so
what it carries:

- rates a: the forward spike count, an integer 0 … T_f (⌈log2(T_f + 1)⌉ bits; 5 bits at T_f = 30), a = count/T_f;
- β: the signed ternary spike count, −T_b … T_b (1 + ⌈log2(T_b + 1)⌉ bits; 8 bits at T_b = 100), β = count/T_b;
- ΔW: the exact integer Σ_batch (m·count_b)·count_a (|·| ≤ B·T_f·T_b: 20 bits at B = 128, T_f = 30, T_b = 100,
  held in int64), which is (D·T_f·T_b)·ΔW; for the input edge x̄ is the 8-bit payload, so it carries 8 more bits;
  a convolution's kernel gradient also sums over the H'·W' positions that share the kernel (+⌈log2(H'·W')⌉ bits:
  10 for 28 × 28), far below float64's 53 exact bits; average pooling by 2^n keeps every value dyadic;
- the applied step: the optimiser runs on these exact gradients and rounds the new weight to the nearest 2^−q
  (half to even), so a weight differs from the float model's by at most half an LSB per step.

The counts are exact, so the fixed model's rates, β and ΔW equal the float model's run on the same (quantised)
weights and g: the only rounding is the injected g (to 2^−q/D) and the weight step (to 2^−q).
"""

from __future__ import annotations

import re
from abc import ABCMeta

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaflow.processes.spide.process import (
    EVALUATE,
    EXPORT,
    HEADER,
    KEY_FIELD,
    LEARN,
    NORM_PARAMETERS,
    NORM_STATISTICS,
    RESULT_HEADER,
    SPIDEHost,
    SPIDENetwork,
    bias_name,
    weights_name,
    window_steps,
)
from lavaflow.processes.spide_maps import EdgeOperator

_PARAMETER_VAR = re.compile(r"(velocity_|gradient_)?((weights|bias)_[0-9]+"
                            r"|norm_(weight|bias|mean|var))")


class _ParameterVarTypes(ABCMeta):
    """Answers the LavaPyType of the per-edge Vars (``weights_<e>``, ``bias_<e>`` and their ``velocity_`` and
    ``gradient_`` twins) and of the input BatchNorm's (``norm_*``), whose number is each network's own: Lava's
    builder looks a Var's type up as a class attribute of the model, one per Var name. Another missing name raises
    AttributeError as usual."""

    def __getattr__(cls, name: str) -> LavaPyType:
        if _PARAMETER_VAR.fullmatch(name) is None:
            raise AttributeError(name)
        return LavaPyType(np.ndarray, np.float64)


def frobenius_factor(weight: np.ndarray, bound: float) -> float:
    """min(1, c/‖W‖_F): the factor that caps W's Frobenius norm at c (a constant for the update)."""
    norm = float(np.sqrt(np.sum(np.square(weight, dtype=np.float64))))
    return min(1.0, bound / max(norm, np.finfo(np.float64).tiny))


def rate_normaliser(time_steps: int, leak: float) -> float:
    """Σ_{k<T} λ^k: divides the λ-weighted count r ← λ·r + s into an average rate (models.neurons has the same)."""
    return float(time_steps) if leak == 1.0 else (1.0 - leak**time_steps) / (1.0 - leak)


def input_on_8_bits(inputs: np.ndarray) -> np.ndarray:
    """x̄ as its 8-bit payload / 256 (a dyadic value, so F·x̄ stays exact in units of 2^−(q+8))."""
    return np.clip(np.rint(inputs * 256.0), 0, 255) / 256.0


def on_grid(values: np.ndarray, lsbs_per_unit: float) -> np.ndarray:
    """``values`` rounded (half to even) to the nearest multiple of 1/lsbs_per_unit."""
    return np.rint(values * lsbs_per_unit) / lsbs_per_unit


def sgd_step(value: np.ndarray, velocity: np.ndarray, gradient: np.ndarray, learning_rate: float, momentum: float,
             weight_decay: float) -> None:
    """torch.optim.SGD's step (dampening 0, no Nesterov), in place: buf ← μ·buf + (grad + wd·W); W ← W − lr·buf.
    torch's first step sets buf = grad + wd·W, which is the same from buf = 0."""
    velocity *= momentum
    velocity += gradient + weight_decay * value
    value -= learning_rate * velocity


class AbstractSPIDENetworkModel(PyLoihiProcessModel, metaclass=_ParameterVarTypes):
    """The order of a window (see SPIDENetwork): receive [mode, lr, x] and restart at window step 1, T_f forward
    steps, send a^N at T_f, receive g at T_f + 1, T_b backward steps, update at the last step. Subclasses supply
    the precision (``quantise_*`` hooks and the Var types)."""

    x_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    g_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    parameters_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    batches: np.ndarray = LavaPyType(np.ndarray, np.float64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.input_size = int(p["input_size"])
        self.sizes: tuple[int, ...] = tuple(p["layer_sizes"])
        self.edges: tuple[tuple[int, int], ...] = tuple(p["edges"])
        self.has_bias: tuple[bool, ...] = tuple(p["has_bias"])
        self.operators: tuple[EdgeOperator, ...] = tuple(p["operators"])
        self.norm_bounds: tuple[float | None, ...] = tuple(p["norm_bounds"])
        self.vth, self.v_reset, self.leak = float(p["vth"]), float(p["v_reset"]), float(p["leak"])
        self.subtraction = self.vth - self.v_reset
        self.vth_backward, self.backward_subtraction = float(p["vth_backward"]), float(p["backward_subtraction"])
        self.forward_steps, self.backward_steps = int(p["forward_steps"]), int(p["backward_steps"])
        self.loss_scale, self.momentum = float(p["loss_scale"]), float(p["momentum"])
        self.weight_decay, self.dropout = float(p["weight_decay"]), float(p["dropout"])
        self.batch_size = int(p["batch_size"])
        self.seed = int(p["seed"])
        self.step = 0  # the window step just run; 0 between windows
        self.mode, self.learning_rate, self.length = EVALUATE, 0.0, self.forward_steps
        self.restart_gradients = True  # the next window's gradient starts a new accumulation (after a step)
        self.input_norm = p.get("input_norm")  # process.InputNorm without γ, β (they are Vars), or None
        self.statistics_stale = True  # F or b moved since norm_mean / norm_var were computed
        self.samples = self.batch_size  # the window's real samples (the rest is padding)

    # ------------------------------------------------------------------------------------------ per edge Vars
    def weight(self, edge: int) -> np.ndarray:
        return getattr(self, weights_name(edge))

    def bias(self, edge: int) -> np.ndarray:
        return getattr(self, bias_name(edge))

    # ------------------------------------------------------------------------------------------ the window
    def run_spk(self) -> None:
        self.step += 1
        if self.step == 1:
            message = self.x_in.recv()
            self.mode, self.learning_rate = int(message[0]), float(message[1])
            self.length = window_steps(self.mode, self.forward_steps, self.backward_steps)
            if self.mode == EXPORT:
                self.export()
                self.step = 0
                return
            self.samples = int(message[2]) or self.batch_size
            self.begin(message[HEADER:].reshape(self.batch_size, self.input_size), int(message[KEY_FIELD]))
        if self.step <= self.forward_steps:
            self.forward_step()
            if self.step == self.forward_steps:
                self.end_forward()
                self.a_out.send(self.rates[-1].reshape(-1))
        else:
            if self.step == self.forward_steps + 1:
                self.begin_backward(self.g_in.recv().reshape(self.batch_size, self.sizes[-1]))
            self.backward_step()
            if self.step == self.length:
                self.update()
        if self.step == self.length:
            self.step = 0

    def export(self) -> None:
        """Send every weight, bias and momentum buffer in parameter_layout's order (a checkpoint)."""
        arrays = [np.zeros(0)]
        for number, operator in enumerate(self.operators):
            if operator.weight_shape is not None:
                for name in (weights_name(number), bias_name(number)):
                    arrays += [getattr(self, name).reshape(-1), getattr(self, f"velocity_{name}").reshape(-1)]
        if self.input_norm is not None:
            self.refresh_statistics()
            for name in NORM_PARAMETERS:
                arrays += [getattr(self, name), getattr(self, f"velocity_{name}")]
            arrays += [getattr(self, name) for name in NORM_STATISTICS]
        self.parameters_out.send(np.concatenate(arrays))

    def begin(self, inputs: np.ndarray, key: int) -> None:
        """Window step 1: this batch's effective weights, dropout masks and constant input current; zero state."""
        batch = self.batch_size
        self.mean_input = self.quantise_input(inputs)
        self.factors = [1.0] * len(self.edges)
        self.effective = []
        for number, bound in enumerate(self.norm_bounds):
            weight = self.weight(number) if self.operators[number].weight_shape is not None else None
            if bound is not None:  # W·min(1, c/‖W‖_F): the Frobenius cap (spec §3.1; in-loop: loop_norm_bound)
                self.factors[number] = frobenius_factor(weight, bound)
                weight = self.quantise_weight(weight * self.factors[number])
            self.effective.append(weight)
        self.effective_bias = [self.bias(number) if operator.weight_shape is not None else None
                               for number, operator in enumerate(self.operators)]
        if self.input_norm is not None:
            self.normalise_input()
        self.masks_dropout = None
        if self.mode != EVALUATE and self.dropout > 0:
            keep = 1.0 - self.dropout
            rng = np.random.default_rng((self.seed, key))  # the window's own stream (process.HEADER)
            self.masks_dropout = [(rng.random((batch, self.sizes[t])) < keep) / keep for _, t in self.edges]
        self.input_current = [None] * len(self.edges)
        for number, (source, _) in enumerate(self.edges):
            if source < 0:
                self.input_current[number] = self.edge_current(number, self.mean_input)
        self.voltages = [self.zeros(size) for size in self.sizes]
        self.spikes = [self.zeros(size) for size in self.sizes]
        self.traces = [self.zeros(size) for size in self.sizes]
        self.counts = [self.zeros(size) for size in self.sizes]

    def normalise_input(self) -> None:
        """Fold the input BatchNorm into edge 0's effective weight and bias: F' = s·F, b' = s·(b − μ) + β,
        s = γ/√(σ² + ε), with this window's batch statistics over its real samples (GRADIENT, LEARN; kept for the
        update as x̂ and s) or the exact training-set ones (EVALUATE), as models.input_norm.fold."""
        weight, bias, eps = self.effective[0], self.bias(0), self.input_norm.eps
        if self.mode == EVALUATE:
            self.refresh_statistics()
            mean, variance = self.norm_mean, self.norm_var
        else:
            drive = self.operators[0].current(self.mean_input[:self.samples], weight, bias)
            mean, variance = drive.mean(0), drive.var(0)
            self.normalised = (drive - mean) / np.sqrt(variance + eps)
        self.norm_scale = self.norm_weight / np.sqrt(variance + eps)
        self.effective[0] = weight * self.norm_scale[:, None]
        self.effective_bias[0] = self.norm_scale * (bias - mean) + self.norm_bias

    def refresh_statistics(self) -> None:
        """norm_mean, norm_var ← the exact mean and unbiased variance of F·x + b over the training set, from its
        input moments (models.input_norm.dense_statistics), when F or b have moved since."""
        if not self.statistics_stale:
            return
        norm, weight = self.input_norm, self.weight(0)
        self.norm_mean[:] = weight @ norm.input_mean + self.bias(0)
        variance = ((weight @ norm.input_covariance) * weight).sum(1)
        self.norm_var[:] = np.maximum(variance, 0.0) * norm.count / (norm.count - 1)
        self.statistics_stale = False

    def normalised_error(self, error: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BatchNorm's backward for the error e at the input edge's current (its real samples): (the error at
        F·x̄ + b, ∂/∂γ = Σ e·x̂, ∂/∂β = Σ e), with dz = s·(e − mean e − x̂·mean(e·x̂)); padding rows get none."""
        samples, normalised = self.samples, self.normalised
        real = error[:samples]
        correlation = (real * normalised).sum(0)
        drive_error = np.zeros_like(error)
        drive_error[:samples] = self.norm_scale * (real - real.mean(0) - normalised * (correlation / samples))
        return drive_error, correlation, real.sum(0)

    def zeros(self, size: int) -> np.ndarray:
        return np.zeros((self.batch_size, size))

    def edge_current(self, number: int, source: np.ndarray) -> np.ndarray:
        """d_e ⊙ (W_e·source + b_e)."""
        current = self.operators[number].current(source, self.effective[number], self.effective_bias[number])
        return current if self.masks_dropout is None else current * self.masks_dropout[number]

    def forward_step(self) -> None:
        currents: list = [0.0 for _ in self.sizes]
        for number, (source, target) in enumerate(self.edges):
            current = self.input_current[number] if source < 0 else self.edge_current(number, self.spikes[source])
            currents[target] = currents[target] + current
        threshold, subtraction = self.forward_constants()
        for index, current in enumerate(currents):
            voltage = self.leak * self.voltages[index] + current
            spikes = (voltage >= threshold).astype(np.float64)
            self.voltages[index] = voltage - subtraction * spikes
            self.spikes[index] = spikes
            self.traces[index] = self.leak * self.traces[index] + spikes
            self.counts[index] = self.counts[index] + spikes

    def end_forward(self) -> None:
        normaliser = rate_normaliser(self.forward_steps, self.leak)
        self.rates = [trace / normaliser for trace in self.traces]
        self.masks = [((count > 0) & (count < self.forward_steps)).astype(np.float64) for count in self.counts]
        self.gates = []
        for number, (_, target) in enumerate(self.edges):
            gate = self.masks[target]
            self.gates.append(gate if self.masks_dropout is None else gate * self.masks_dropout[number])

    def begin_backward(self, injection: np.ndarray) -> None:
        self.injection = self.quantise_injection(injection)
        self.voltages = [self.zeros(size) for size in self.sizes]
        self.spikes = [self.zeros(size) for size in self.sizes]
        self.traces = [self.zeros(size) for size in self.sizes]

    def backward_step(self) -> None:
        last = len(self.sizes) - 1
        currents: list = [self.injection if index == last else 0.0 for index in range(len(self.sizes))]
        for number, (source, target) in enumerate(self.edges):
            if source >= 0:  # the reversed edge target → source; the input has no backward neurons
                currents[source] = currents[source] + self.transposed(number, self.gates[number] * self.spikes[target])
        threshold, subtraction = self.backward_constants()
        for index, current in enumerate(currents):
            voltage = self.leak * self.voltages[index] + current
            spikes = subtraction * ((voltage >= threshold).astype(np.float64) - (voltage <= -threshold))
            self.voltages[index] = voltage - spikes
            self.spikes[index] = spikes
            self.traces[index] = self.leak * self.traces[index] + spikes

    def update(self) -> None:
        """ΔW, Δb of every edge from the two phases' rates; the optimiser step in mode LEARN."""
        betas = self.backward_rates()
        for number, (source, target) in enumerate(self.edges):
            operator = self.operators[number]
            if operator.weight_shape is None:
                continue
            error = self.gates[number] * betas[target]
            if source < 0 and self.input_norm is not None:
                error = self.update_input_norm(error)
            pre = self.mean_input if source < 0 else self.rates[source]
            gradient = self.weight_gradient(number, error, pre) / self.loss_scale
            bias_gradient = operator.bias_gradient(error) / (self.subtraction * self.loss_scale)
            gradient = gradient * self.factors[number]  # through a cap, a constant factor (as in the torch SPIDE)
            if not self.has_bias[number]:
                bias_gradient = np.zeros_like(bias_gradient)
            accumulated = getattr(self, f"gradient_{weights_name(number)}")
            accumulated_bias = getattr(self, f"gradient_{bias_name(number)}")
            if self.restart_gradients:
                accumulated[:] = 0.0
                accumulated_bias[:] = 0.0
            accumulated += gradient
            accumulated_bias += bias_gradient
            if self.mode == LEARN:
                self.step_parameter(self.weight(number), getattr(self, f"velocity_{weights_name(number)}"),
                                    accumulated)
                if self.has_bias[number]:
                    self.step_parameter(self.bias(number), getattr(self, f"velocity_{bias_name(number)}"),
                                        accumulated_bias)
        self.restart_gradients = self.mode == LEARN
        if self.mode == LEARN:
            self.batches[0] += 1
            self.statistics_stale = True

    def update_input_norm(self, error: np.ndarray) -> np.ndarray:
        """γ's and β's gradients (accumulated, and stepped in LEARN) from the error at the input edge's current;
        returns the error at F·x̄ + b, from which F and b get theirs."""
        drive_error, gamma, beta = self.normalised_error(error)
        scale = self.subtraction * self.loss_scale
        for name, gradient in zip(NORM_PARAMETERS, (gamma / scale, beta / scale), strict=True):
            accumulated = getattr(self, f"gradient_{name}")
            if self.restart_gradients:
                accumulated[:] = 0.0
            accumulated += gradient
            if self.mode == LEARN:
                self.step_parameter(getattr(self, name), getattr(self, f"velocity_{name}"), accumulated)
        return drive_error

    # ------------------------------------------------------------------------------------------ precision
    def quantise_input(self, inputs: np.ndarray) -> np.ndarray:
        return inputs

    def quantise_weight(self, weight: np.ndarray) -> np.ndarray:
        return weight

    def quantise_injection(self, injection: np.ndarray) -> np.ndarray:
        return injection

    def forward_constants(self) -> tuple[float, float]:
        return self.vth, self.subtraction

    def backward_constants(self) -> tuple[float, float]:
        return self.vth_backward, self.backward_subtraction

    def transposed(self, number: int, spikes: np.ndarray) -> np.ndarray:
        """(1/D)·W_eᵀ applied to gated backward spikes (B, n_target) → (B, n_source)."""
        return self.operators[number].adjoint(spikes, self.effective[number]) / self.subtraction

    def backward_rates(self) -> list[np.ndarray]:
        normaliser = rate_normaliser(self.backward_steps, self.leak)
        return [trace / normaliser for trace in self.traces]

    def weight_gradient(self, number: int, error: np.ndarray, pre: np.ndarray) -> np.ndarray:
        """(1/D)·Σ_batch error·preᵀ (for a convolution, summed over the positions that share the kernel)."""
        return self.operators[number].weight_gradient(pre, error) / self.subtraction

    def step_parameter(self, value: np.ndarray, velocity: np.ndarray, gradient: np.ndarray) -> None:
        sgd_step(value, velocity, gradient, self.learning_rate, self.momentum, self.weight_decay)


@implements(proc=SPIDENetwork, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySPIDENetworkModelFloat(AbstractSPIDENetworkModel):
    """float64 throughout: the oracle is pipeline.spide's torch SPIDE, which this equals within float rounding."""


@implements(proc=SPIDENetwork, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySPIDENetworkModelFixed(AbstractSPIDENetworkModel):
    """Integer state (module docstring): weights and biases in units of 2^−q, voltages and counts integers.

    The Vars stay float64 arrays holding integer values (their values are exact in float64 far beyond the 24-bit
    voltages and 20-bit accumulators used here); each product is formed in int64.
    """

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        bits = proc_params["fraction_bits"]
        if bits is None:
            raise ValueError("the fixed_pt SPIDENetwork model needs fraction_bits (the weights' 2^−q unit)")
        if self.input_norm is not None:
            raise ValueError("the fixed_pt SPIDENetwork model has no input BatchNorm (input_norm): its per-window "
                             "fold is not on the weights' grid; use the floating_pt model")
        if self.leak != 1.0:
            raise ValueError("the fixed_pt SPIDENetwork model steps IF neurons (leak 1); λ-weighted rates need the "
                             "float model")
        self.unit = float(2 ** int(bits))  # 2^q LSBs per 1.0
        scaled = {"vth": self.vth * self.unit, "D": self.subtraction * self.unit,
                  "vth_b": self.vth_backward * self.subtraction * self.unit,
                  "D_b": self.backward_subtraction * self.subtraction * self.unit}
        for name, value in scaled.items():
            if value != round(value):
                raise ValueError(f"{name} = {value} LSBs is not an integer; choose fraction_bits so that vth, "
                                 "vth − v_reset, vth_b·D and D_b·D are multiples of 2^−q")
        self.integer_constants = scaled

    def quantise_input(self, inputs: np.ndarray) -> np.ndarray:
        return input_on_8_bits(inputs)

    def quantise_weight(self, weight: np.ndarray) -> np.ndarray:
        """A capped weight rounded onto the weights' grid (the cap factor is not dyadic)."""
        return on_grid(weight, self.unit)

    def quantise_injection(self, injection: np.ndarray) -> np.ndarray:
        """g rounded onto the backward voltages' grid, 2^−q/D."""
        return on_grid(injection, self.subtraction * self.unit)

    def step_parameter(self, value: np.ndarray, velocity: np.ndarray, gradient: np.ndarray) -> None:
        """The float step, then the weight rounded to the nearest 2^−q (half to even); the velocity stays exact."""
        sgd_step(value, velocity, gradient, self.learning_rate, self.momentum, self.weight_decay)
        value[...] = on_grid(value, self.unit)


# ---------------------------------------------------------------------------------------------------- host side
class AbstractSPIDEHostModel(PyLoihiProcessModel):
    """Window step 1: take the next batch from the pipe and send [mode, lr, x]; step T_f: receive a^N, compute the
    readout, loss and g, send g (not in EVALUATE), step the readout (LEARN) and send the results to the host."""

    batch_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    results_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    x_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    g_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    readout_weight: np.ndarray = LavaPyType(np.ndarray, np.float64)
    readout_bias: np.ndarray = LavaPyType(np.ndarray, np.float64)
    velocity_readout_weight: np.ndarray = LavaPyType(np.ndarray, np.float64)
    velocity_readout_bias: np.ndarray = LavaPyType(np.ndarray, np.float64)
    batches: np.ndarray = LavaPyType(np.ndarray, np.float64)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.input_size, self.readout_size = int(p["input_size"]), int(p["readout_size"])
        self.forward_steps, self.backward_steps = int(p["forward_steps"]), int(p["backward_steps"])
        self.batch_size = int(p["batch_size"])
        self.loss_scale, self.momentum, self.weight_decay = (float(p["loss_scale"]), float(p["momentum"]),
                                                             float(p["weight_decay"]))
        self.step, self.length = 0, self.forward_steps
        self.mode, self.learning_rate = EVALUATE, 0.0
        self.labels = np.zeros(self.batch_size, dtype=np.int64)
        self.batch_samples = 0
        self.accumulated: tuple[np.ndarray, np.ndarray] | None = None  # the readout's gradient since the last step

    def run_spk(self) -> None:
        self.step += 1
        if self.step == 1:
            message = self.batch_in.recv()
            self.mode, self.learning_rate = int(message[0]), float(message[1])
            self.length = window_steps(self.mode, self.forward_steps, self.backward_steps)
            self.labels = message[HEADER:HEADER + self.batch_size].astype(np.int64)
            self.batch_samples = int(message[2])
            self.x_out.send(np.concatenate([message[:HEADER], message[HEADER + self.batch_size:]]))
        if self.step == self.forward_steps and self.mode != EXPORT:
            self.readout(self.a_in.recv().reshape(self.batch_size, self.readout_size))
        if self.step == self.length:
            self.step = 0

    def readout(self, rates: np.ndarray) -> None:
        valid = self.labels >= 0
        samples = int(valid.sum())
        weight, bias = self.readout_weight, self.readout_bias
        logits = rates @ weight.T + bias
        shifted = logits - logits.max(1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        rows = np.flatnonzero(valid)
        loss_sum = float(-log_probabilities[rows, self.labels[rows]].sum())
        predictions = logits.argmax(1)
        correct = int((predictions[rows] == self.labels[rows]).sum())
        if self.mode != EVALUATE:
            # ∂L/∂o of the mini-batch-mean cross-entropy over the real samples; padding rows get none
            error = np.exp(log_probabilities)
            error[rows, self.labels[rows]] -= 1.0
            error[~valid] = 0.0
            error /= max(1, self.batch_samples or samples)
            self.g_out.send((self.loss_scale * (error @ weight)).reshape(-1))  # g = scale·∂L/∂a^N, W_o before step
            gradients = (error.T @ rates, error.sum(0))
            if self.accumulated is not None:
                gradients = (self.accumulated[0] + gradients[0], self.accumulated[1] + gradients[1])
            self.accumulated = gradients
            if self.mode == LEARN:
                sgd_step(weight, self.velocity_readout_weight, gradients[0], self.learning_rate, self.momentum,
                         self.weight_decay)
                sgd_step(bias, self.velocity_readout_bias, gradients[1], self.learning_rate, self.momentum,
                         self.weight_decay)
                self.batches[0] += 1
                self.accumulated = None
        result = np.full(RESULT_HEADER + self.batch_size, -1.0)
        result[:RESULT_HEADER] = (loss_sum, correct, samples)
        result[RESULT_HEADER:] = predictions
        self.results_out.send(result)


@implements(proc=SPIDEHost, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PySPIDEHostModel(AbstractSPIDEHostModel):
    """The host side computes in float64 under either tag: on Loihi 2 it is the off-chip (host CPU) part."""
