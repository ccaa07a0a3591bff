"""SPIDE's training as one Lava process graph, compiled once and kept up (spec ide_spide.md §3, §4).

    SPIDEHost ──[mode, lr, x]──► SPIDENetwork
        ▲  └──────── g ────────►     │   forward populations, ternary backward copies, plastic connections
        └──────────── a^N ───────────┘   (lavaflow.processes.spide)

``SPIDELavaGraph`` builds it from a torch SPIDE model (pipeline.spide.SPIDEModel: its edges — dense, conv,
transposed conv, average pooling —, raw weights, caps, neurons and
readout), runs it on a guarded LavaRuntime (pipeline.lava.session), and streams batches through
SPIDEHost's pipe: one window of T_f + T_b steps per training batch (T_f per evaluation batch), up to ``capacity``
batches per Lava run, with no Var access per batch. The weights are read (Var.get, ~20k values/s) only when the
caller asks: at checkpoints (``state_dict``).

``fused=True`` (the default) is the CPU fast path: the whole spiking side in one OS process with a batch axis (as
SpikingNetwork's fused model), the host side in another. ``fused=False`` builds the plain graph (one process per
population, ternary population and plastic connection; one sample per window), the one shaped for Loihi 2.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from lavaflow.deploy.run_config import SIMULATOR_TAGS, run_config
from lavaflow.models import spide_network
from lavaflow.models.errors import BackendError, ConfigError
from lavaflow.pipeline.lava.session import LavaRuntime
from lavaflow.processes import spide_maps
from lavaflow.processes.spide.process import (
    EVALUATE,
    EXPORT,
    GRADIENT,
    LEARN,
    NORM_PARAMETERS,
    NORM_STATISTICS,
    InputNorm,
    SPIDEHost,
    SPIDENetwork,
    bias_name,
    weights_name,
    window_steps,
)

# SPIDEModel's state_dict keys of the input BatchNorm and SPIDENetwork's Vars that hold them
NORM_KEYS = dict(zip(("network.input_norm.weight", "network.input_norm.bias"), NORM_PARAMETERS, strict=True))
NORM_STATISTIC_KEYS = dict(zip(("network.input_norm.running_mean", "network.input_norm.running_var"),
                               NORM_STATISTICS, strict=True))
DEFAULT_FRACTION_BITS = 12  # lava-fixed: weights in units of 2^−12 (module docstring of processes/spide/models)


@dataclass(frozen=True)
class BatchResult:
    """What SPIDEHost reports for one batch: the loss summed over its samples, the number correct, the predictions."""

    loss_sum: float
    correct: int
    predictions: np.ndarray


@dataclass(frozen=True)
class Batch:
    """One batch for the graph: (S, n_in) constant inputs x̄, (S,) labels, the mode and learning rate; ``key`` names
    its dropout masks (a trainer passes the iteration number, so a resumed run draws the masks it would have drawn;
    None: the graph's next, counting from 0 for each graph)."""

    inputs: np.ndarray
    labels: np.ndarray
    mode: int = LEARN
    learning_rate: float = 0.0
    key: int | None = None


def check_lava_spide(model: Any, backend: str) -> None:
    """Raise ConfigError unless the SPIDE Lava graph can run ``model`` on ``backend`` (IF neurons and pooling by 2^n
    in fixed point)."""
    if backend not in SIMULATOR_TAGS:
        raise ConfigError(f"SPIDE trains on Lava's CPU simulator: backend lava-float or lava-fixed, got {backend!r}")
    network = model.network
    first = network.edges[0].operator
    if network.input_norm is not None and (backend == "lava-fixed" or not isinstance(first, spide_network.Linear)):
        raise ConfigError("model.batch_norm: the SPIDE Lava graph normalises a dense input layer in floating point "
                          f"only (lava-float, fused), not {'lava-fixed' if backend == 'lava-fixed' else 'a conv F'}. "
                          "Train with --backend lava-float or --backend torch (BatchNorm then folds into F for "
                          "simulate, export and deploy, which run the trained network in fixed point as any "
                          "other), or set model.batch_norm: false")
    pools = [edge.operator.kernel for edge in network.edges if isinstance(edge.operator, spide_network.AvgPool)]
    if backend == "lava-fixed" and any(kernel & (kernel - 1) for kernel in pools):
        raise ConfigError(f"lava-fixed SPIDE pools by powers of two only (1/k² must be exact on the fixed-point "
                          f"grid); this network pools by {sorted(set(pools))}. Use lava-float, or 'pool 2'/'pool 4'")
    if backend == "lava-fixed" and model.config.leak != 1.0:
        raise ConfigError(f"lava-fixed SPIDE steps IF neurons (model.leak 1); got leak {model.config.leak}. Use "
                          "lava-float for leaky neurons")


def lava_operator(operator: spide_network.Operator) -> spide_maps.EdgeOperator:
    """The numpy map SPIDENetwork's fused model applies for a torch SPIDE edge operator (same shapes and weight)."""
    if isinstance(operator, spide_network.Linear):
        return spide_maps.Dense(operator.input_shape, operator.output_shape)
    if isinstance(operator, (spide_network.Conv, spide_network.ConvTranspose)):
        return spide_maps.Conv(operator.input_shape, operator.output_shape, operator.kernel, operator.stride,
                                   operator.padding, transposed=isinstance(operator, spide_network.ConvTranspose))
    if isinstance(operator, spide_network.AvgPool):
        return spide_maps.AvgPool(operator.input_shape, operator.output_shape, operator.kernel)
    raise TypeError(f"no Lava SPIDE map for {type(operator).__name__}")


class SPIDELavaGraph:
    """A SPIDE model's training graph on Lava's CPU simulator (module docstring). Use as a context manager.

    Args:
        model: the torch SPIDE model (pipeline.spide.SPIDEModel) whose weights, readout and config start the graph.
        forward_steps: T_f (the training config's time_steps).
        backend: "lava-float" or "lava-fixed" (weights rounded to 2^−fraction_bits when the graph is built).
        batch_size: B, samples per window.
        momentum, weight_decay: the optimiser's (torch SGD's semantics; learning rates come with each batch).
        capacity: batches per Lava run (the pipes hold that many messages of B·n_in values).
        seed: the dropout masks' generator (with each batch's key).
        fused: the fused, batched model (the CPU fast path) or the plain graph (one forward and one ternary
            population process and one PlasticConnection per edge: the Loihi-shaped graph; one sample per window, a
            mini-batch of S samples runs as S windows that step once, at the last).
        fraction_bits: lava-fixed's weight unit 2^−q.
        timeout_s: kill the graph and raise if one run takes longer.
        momentum_buffers: the optimiser's starting momentum buffers keyed like SPIDEModel's state_dict (as
            ``export`` gives them: a checkpoint's, to resume); absent keys start at zero.
    """

    def __init__(self, model: Any, *, forward_steps: int, backend: str = "lava-float", batch_size: int,
                 momentum: float, fused: bool = True,
                 weight_decay: float, capacity: int = 8, seed: int = 0,
                 fraction_bits: int = DEFAULT_FRACTION_BITS, timeout_s: float | None = None,
                 momentum_buffers: Mapping[str, np.ndarray] | None = None) -> None:
        check_lava_spide(model, backend)
        if batch_size < 1 or capacity < 1 or forward_steps < 1:
            raise BackendError(f"forward_steps={forward_steps}, batch_size={batch_size} and capacity={capacity} "
                               "must be positive")
        network, config = model.network, model.config
        input_norm = self._input_norm(model)
        if input_norm is not None and not fused:
            raise ConfigError("model.batch_norm: the plain SPIDE graph streams one sample per window, so a batch's "
                              "statistics are not there before its forward phase; use the fused graph (the "
                              "default) or set model.batch_norm: false")
        self.fixed = backend == "lava-fixed"
        self.unit = float(2**fraction_bits) if self.fixed else None
        self.batch_size, self.capacity, self.fused = int(batch_size), int(capacity), bool(fused)
        window_batch = self.batch_size if fused else 1  # samples per window
        self.forward_steps = int(forward_steps)
        self.backward_steps = int(config.backward_steps)
        self.input_size = math.prod(network.input_shape)
        self.sizes = [math.prod(shape) for shape in network.layer_shapes]
        self.edges = [(edge.source, edge.target) for edge in network.edges]
        # the SPIDEModel state_dict key of each edge's weight and bias (None: the edge has none)
        self._weight_keys: list[str | None] = []
        self._bias_keys: list[str | None] = []
        weights, biases = [], []
        for number in range(len(network.edges)):
            index, bias_index = network._weight_index[number], network._bias_index[number]
            weights.append(None if index is None else self._grid(network.weights[index]))
            self._weight_keys.append(None if index is None else f"network.weights.{index}")
            biases.append(None if bias_index is None else self._grid(network.biases[bias_index]))
            self._bias_keys.append(None if bias_index is None else f"network.biases.{bias_index}")
        buffers = {key: np.asarray(value, dtype=np.float64) for key, value in (momentum_buffers or {}).items()}
        names = {key: name for number in range(len(self.edges)) for key, name in
                 ((self._weight_keys[number], weights_name(number)), (self._bias_keys[number], bias_name(number)))
                 if key is not None}
        if input_norm is not None:
            names.update(NORM_KEYS)
        readout_names = {"network.readout.weight": "readout_weight", "network.readout.bias": "readout_bias"}
        unknown = set(buffers) - set(names) - set(readout_names)
        if unknown:
            raise BackendError(f"momentum buffers for parameters this model does not have: {sorted(unknown)}")
        neuron = config.neuron
        self.network = SPIDENetwork(
            input_size=self.input_size, layer_sizes=self.sizes, edges=self.edges, weights=weights, biases=biases,
            operators=[lava_operator(edge.operator) for edge in network.edges], norm_bounds=network.norm_bounds,
            vth=neuron.threshold, v_reset=neuron.reset_potential, leak=config.leak,
            vth_backward=config.backward_threshold, backward_subtraction=config.backward_subtraction,
            forward_steps=self.forward_steps, backward_steps=self.backward_steps, loss_scale=config.loss_scale,
            momentum=momentum, weight_decay=weight_decay, dropout=config.dropout, seed=seed, batch_size=window_batch,
            fraction_bits=fraction_bits if self.fixed else None,
            momentum_buffers={names[key]: value for key, value in buffers.items() if key in names},
            input_norm=input_norm, name="spide_network",
        )
        readout = network.readout
        self.host = SPIDEHost(
            input_size=self.input_size, readout_size=self.sizes[-1],
            weight=readout.weight.detach().double().numpy(), bias=readout.bias.detach().double().numpy(),
            forward_steps=self.forward_steps, backward_steps=self.backward_steps, loss_scale=config.loss_scale,
            momentum=momentum, weight_decay=weight_decay, batch_size=window_batch, capacity=capacity,
            momentum_buffers={readout_names[key]: value for key, value in buffers.items() if key in readout_names},
            name="spide_host",
        )
        self.host.x_out.connect(self.network.x_in)
        self.network.a_out.connect(self.host.a_in)
        self.host.g_out.connect(self.network.g_in)
        self.runtime = LavaRuntime(self.host, run_config(backend, select_sub_proc_model=not fused),
                                   timeout_s=timeout_s)
        self.setup_seconds = 0.0
        self.run_seconds = 0.0
        self._next_key = 0  # the key of the next batch that comes without one

    @staticmethod
    def _input_norm(model: Any) -> InputNorm | None:
        """The SPIDENetwork's InputNorm for a model with ``batch_norm``: its γ, β, ε and the training set's input
        moments, which ``SPIDEModel.refresh_statistics`` keeps (the trainer calls it before building the graph)."""
        norm = model.network.input_norm
        if norm is None:
            return None
        moments = model.input_moments
        if moments is None:
            raise BackendError("model.batch_norm: the graph needs the training set's input moments for its exact "
                               "evaluation statistics; call model.refresh_statistics(training batches) first")
        return InputNorm(norm.weight.detach().double().numpy().copy(), norm.bias.detach().double().numpy().copy(),
                         float(norm.eps), moments.count, moments.mean.double().numpy(),
                         moments.covariance.double().numpy())

    def _grid(self, tensor: torch.Tensor) -> np.ndarray:
        values = tensor.detach().to(torch.float64).numpy().copy()
        return values if self.unit is None else np.rint(values * self.unit) / self.unit

    # ------------------------------------------------------------------------------------------ lifetime
    def __enter__(self) -> SPIDELavaGraph:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self.runtime.__exit__(kind, error, trace)

    def start(self) -> None:
        """Compile and fork the graph now (otherwise the first batch does)."""
        self.setup_seconds += self.runtime.start()

    def close(self) -> None:
        self.runtime.close()

    # ------------------------------------------------------------------------------------------ batches
    def run(self, batches: Iterable[Batch]) -> list[BatchResult]:
        """Run the mini-batches in order, ``capacity`` windows per Lava run; their results in order."""
        self.start()
        self._last_number: int | None = None  # the mini-batch of the last window received (it may span chunks)
        results: list[BatchResult] = []
        pending: list[tuple[int, Batch, int]] = []  # (mini-batch number, window, mini-batch size)
        for number, batch in enumerate(batches):
            labels = np.asarray(batch.labels)
            if not 1 <= len(labels) <= self.batch_size:
                raise BackendError(f"a batch holds 1 … {self.batch_size} samples, got {len(labels)}")
            if batch.mode != EVALUATE:
                batch = replace(batch, key=self._next_key if batch.key is None else int(batch.key))
                self._next_key = batch.key + 1
            for window in self._windows(batch):
                pending.append((number, window, len(labels)))  # the mini-batch's real samples
                if len(pending) == self.capacity:
                    self._run_chunk(pending, results)
                    pending = []
        if pending:
            self._run_chunk(pending, results)
        return results

    def _windows(self, batch: Batch) -> list[Batch]:
        """The fused model's one window, or the plain graph's one window per sample (stepping at the last)."""
        inputs = np.asarray(batch.inputs, dtype=np.float64).reshape(len(batch.labels), -1)
        labels = np.asarray(batch.labels)
        if self.fused:
            return [Batch(inputs, labels, batch.mode, batch.learning_rate, batch.key)]
        modes = [batch.mode if batch.mode == EVALUATE else GRADIENT] * (len(labels) - 1) + [batch.mode]
        return [Batch(inputs[i:i + 1], labels[i:i + 1], mode, batch.learning_rate, batch.key)
                for i, mode in enumerate(modes)]

    def _run_chunk(self, windows: Sequence[tuple[int, Batch, int]], results: list[BatchResult]) -> None:
        steps = 0
        for _, window, batch_samples in windows:
            self.host.send_batch(window.mode, window.learning_rate, window.inputs, window.labels, batch_samples,
                                 key=window.key or 0)
            steps += window_steps(window.mode, self.forward_steps, self.backward_steps)
        started = time.perf_counter()
        self.runtime.run(steps)
        self.run_seconds += time.perf_counter() - started
        for number, _, _ in windows:
            loss_sum, correct, _, predictions = self.host.receive_results()
            if number == self._last_number:  # the plain graph's further windows of the same mini-batch
                previous = results[-1]
                results[-1] = BatchResult(previous.loss_sum + loss_sum, previous.correct + correct,
                                          np.concatenate([previous.predictions, predictions]))
            else:
                results.append(BatchResult(loss_sum, correct, predictions))
            self._last_number = number

    def train_batch(self, inputs: np.ndarray, labels: np.ndarray, learning_rate: float, *,
                    learn: bool = True) -> BatchResult:
        """One batch through both phases; with ``learn`` the graph applies the update (SPIDE's and the readout's)."""
        return self.run([Batch(inputs, labels, LEARN if learn else GRADIENT, learning_rate)])[0]

    def evaluate(self, inputs: np.ndarray, labels: np.ndarray) -> BatchResult:
        """One batch through the forward phase only (no dropout, no update)."""
        return self.run([Batch(inputs, labels, EVALUATE)])[0]

    # ------------------------------------------------------------------------------------------ Vars
    def gradients(self) -> dict[str, np.ndarray]:
        """The last batch's gradients as the optimiser saw them, keyed like SPIDEModel's state_dict (SPIDE's edges
        only; the readout's gradient is not kept)."""
        values = {}
        for number in range(len(self.edges)):
            if self._weight_keys[number] is None:
                continue
            values[self._weight_keys[number]] = self.runtime.get(
                getattr(self.network, f"gradient_{weights_name(number)}"))
            if self._bias_keys[number] is not None:
                values[self._bias_keys[number]] = self.runtime.get(
                    getattr(self.network, f"gradient_{bias_name(number)}"))
        for key, name in NORM_KEYS.items():
            if hasattr(self.network, name):
                values[key] = self.runtime.get(getattr(self.network, f"gradient_{name}"))
        return values

    def export(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(parameters, momentum buffers), keyed like SPIDEModel's state_dict: a checkpoint. SPIDENetwork's arrays
        leave through its pipe in one EXPORT window; the readout's (small) by Var.get."""
        self.start()
        if not self.fused:
            return self._read_parameters()
        self.host.request_export()
        started = time.perf_counter()
        self.runtime.run(window_steps(EXPORT, self.forward_steps, self.backward_steps))
        self.run_seconds += time.perf_counter() - started
        arrays = self.network.receive_parameters()
        parameters, velocities = {}, {}
        for number in range(len(self.edges)):
            keys = ((self._weight_keys[number], weights_name(number)), (self._bias_keys[number], bias_name(number)))
            for key, name in keys:
                if key is not None:
                    parameters[key], velocities[key] = arrays[name], arrays[f"velocity_{name}"]
        for key, name in {**NORM_KEYS, **NORM_STATISTIC_KEYS}.items():
            if name in arrays:
                parameters[key] = arrays[name]
                if f"velocity_{name}" in arrays:
                    velocities[key] = arrays[f"velocity_{name}"]
        for key, var, velocity in (("network.readout.weight", self.host.readout_weight,
                                    self.host.velocity_readout_weight),
                                   ("network.readout.bias", self.host.readout_bias, self.host.velocity_readout_bias)):
            parameters[key], velocities[key] = self.runtime.get(var), self.runtime.get(velocity)
        return parameters, velocities

    def _read_parameters(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The plain graph's checkpoint: Var.get of every aliased Var (~20k values/s)."""
        parameters, velocities = {}, {}
        for number in range(len(self.edges)):
            keys = ((self._weight_keys[number], weights_name(number)), (self._bias_keys[number], bias_name(number)))
            for key, name in keys:
                if key is not None:
                    parameters[key] = self.runtime.get(getattr(self.network, name))
                    velocities[key] = self.runtime.get(getattr(self.network, f"velocity_{name}"))
        parameters["network.readout.weight"] = self.runtime.get(self.host.readout_weight)
        parameters["network.readout.bias"] = self.runtime.get(self.host.readout_bias)
        velocities["network.readout.weight"] = self.runtime.get(self.host.velocity_readout_weight)
        velocities["network.readout.bias"] = self.runtime.get(self.host.velocity_readout_bias)
        return parameters, velocities

    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter, keyed like SPIDEModel's state_dict (``export``: do it at checkpoints)."""
        return self.export()[0]

    def load_into(self, model: Any) -> None:
        """Copy the graph's parameters into the torch model (same dtype as the model's)."""
        state = model.state_dict()
        with torch.no_grad():
            for key, value in self.parameters().items():
                state[key].copy_(torch.from_numpy(np.asarray(value)).to(state[key].dtype))

