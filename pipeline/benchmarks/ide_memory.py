"""Benchmark: IDE's memory and time per training batch against BPTT through the same feedback SNN.

Both train the same ``FeedbackSNN`` (same weights, dropout masks and BatchNorm) on one mini-batch:

- IDE: simulate T steps without a graph, then implicit differentiation (``pipeline.ide``): the graph holds one
  evaluation of the fixed-point map, so memory should not change with T;
- BPTT: unroll the same ``soft_reset_step`` loop with a graph and a rectangular surrogate gradient, so autograd
  keeps every step's tensors and memory grows linearly with T.

Peak memory is the most tensor memory held at once during the batch (forward + backward), parameters and
gradients included: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU, the torch profiler's memory timeline
(``profile_memory=True``, ``export_memory_timeline``), which follows every tensor's creation and destruction.
The distinct storages autograd keeps for backward (the graph built by the forward) are also counted exactly
(``saved_tensors_hooks``).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as functional
from torch import Tensor

from lavaflow.models.feedback import FeedbackSNN
from lavaflow.models.neurons import constant_in_time
from lavaflow.pipeline.ide import IDEConfig, IDENetwork, build

MIB = 2**20


class _RectangularSurrogate(torch.autograd.Function):
    """Heaviside forward; backward passes the gradient where |v − θ| < width / 2, scaled by 1 / width."""

    @staticmethod
    def forward(ctx: Any, shifted_voltage: Tensor, width: float) -> Tensor:
        ctx.save_for_backward(shifted_voltage)
        ctx.width = width
        return (shifted_voltage >= 0).to(shifted_voltage.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (shifted_voltage,) = ctx.saved_tensors
        window = (shifted_voltage.abs() < ctx.width / 2).to(grad_output.dtype) / ctx.width
        return grad_output * window, None


def bptt_logits(network: FeedbackSNN, inputs: Tensor) -> Tensor:
    """Logits from the unrolled SNN with a graph through every step (surrogate width = the threshold)."""
    if not constant_in_time(inputs):
        raise ValueError("bptt_logits takes constant-current input (an expand()ed image)")
    drive = network.input_drive(inputs[0].to(network.input_weight.dtype))
    operators = network.operators(drive)
    width = float(network.neuron.threshold)
    simulation = network.simulate(inputs, operators, network.input_current(drive, operators),
                                  spike_fn=lambda shifted: _RectangularSurrogate.apply(shifted, width))
    return network.readout(simulation.rates[-1].flatten(1))


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_bytes(run: Callable[[], None], device: torch.device) -> int:
    """Most bytes of tensors held at once while ``run`` executes (see the module docstring)."""
    if device.type == "cuda":
        _synchronise(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        _synchronise(device)
        return int(torch.cuda.max_memory_allocated(device))
    # Kineto (torch's profiler backend) logs "STAGE: Completed Stage: Warm Up ..." lines on stderr at a level above
    # ERROR; only its level 5 silences them. Read once, when the first profiler starts; a user's setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as profiler:
        run()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "timeline.json")
        profiler.export_memory_timeline(path, device="cpu")
        with open(path) as stream:
            _, sizes = json.load(stream)  # [times, [bytes per category] per time]
    return int(max((sum(point) for point in sizes), default=0))


def _saved_tensor_bytes(loss: Callable[[], Tensor]) -> int:
    """Bytes of the distinct storages autograd keeps for backward while building the graph of ``loss()``.

    Counted during the forward only: the graph's saved tensors all live until backward, so their storages' addresses
    identify them (tensors saved and freed inside backward could reuse an address). Backward then runs as usual.
    """
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = loss()
    value.backward()
    return sum(storages.values())


def bench_ide_memory(time_steps: tuple[int, ...] = (5, 30, 100), *, batch_size: int = 128,
                     layer_widths: tuple[int, ...] = (400,), input_shape: tuple[int, ...] = (1, 28, 28),
                     repeats: int = 3, device: str = "cpu", seed: int = 0) -> list[dict[str, Any]]:
    """Time and peak memory of one training batch (forward + backward), IDE vs BPTT, for each T.

    The network is IDE's F-MNIST F400 by default (dense, IF, θ = 2, dropout 0.2, BatchNorm) on random
    constant-current images; SGD is left out, as it is the same for both.

    Returns:
        One row per (T, method): ``time_steps``, ``method`` ("ide" | "bptt"), ``seconds_per_batch`` (median of
        ``repeats`` after a warm-up), ``peak_memory_mib``, ``saved_tensor_mib`` (autograd's saved tensors),
        ``memory_method`` (how the peak was measured) and ``device``.
    """
    if not time_steps or min(time_steps) < 1 or batch_size < 1 or repeats < 1:
        raise ValueError(f"need positive time_steps, batch_size and repeats, got {time_steps}, {batch_size}, "
                         f"{repeats}")
    target = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    config = IDEConfig(architecture="fc", layer_widths=tuple(layer_widths))
    model = build(config, input_shape, 10, max(time_steps), generator).to(target)
    if not isinstance(model, IDENetwork):
        raise TypeError("pipeline.ide.build must return an IDENetwork")
    model.train()
    images = torch.rand((batch_size, *input_shape), generator=generator).to(target)
    targets = torch.randint(0, 10, (batch_size,), generator=generator).to(target)
    memory_method = "torch.cuda.max_memory_allocated" if target.type == "cuda" else "torch.profiler memory timeline"
    rows = []
    for steps in time_steps:
        inputs = images.unsqueeze(0).expand(steps, *images.shape)
        logits_of: dict[str, Callable[[], Tensor]] = {
            "ide": lambda inputs=inputs: model(inputs),
            "bptt": lambda inputs=inputs: bptt_logits(model.network, inputs),
        }
        for method, logits in logits_of.items():
            def loss(logits: Callable[[], Tensor] = logits) -> Tensor:
                model.zero_grad(set_to_none=True)
                return functional.cross_entropy(logits(), targets)

            def batch(loss: Callable[[], Tensor] = loss) -> None:
                loss().backward()

            batch()  # warm-up
            seconds = []
            for _ in range(repeats):
                _synchronise(target)
                started = time.perf_counter()
                batch()
                _synchronise(target)
                seconds.append(time.perf_counter() - started)
            rows.append({
                "time_steps": steps,
                "method": method,
                "seconds_per_batch": statistics.median(seconds),
                "peak_memory_mib": _peak_memory_bytes(batch, target) / MIB,
                "saved_tensor_mib": _saved_tensor_bytes(loss) / MIB,
                "memory_method": memory_method,
                "device": str(target),
            })
            model.zero_grad(set_to_none=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """IDE and BPTT side by side for each T, with BPTT / IDE ratios of time and peak memory."""
    by_key = {(row["time_steps"], row["method"]): row for row in rows}
    steps = sorted({row["time_steps"] for row in rows})
    header = (f"{'T':>5} | {'IDE s/batch':>11} {'BPTT s/batch':>12} {'BPTT/IDE':>8} | {'IDE MiB':>8} "
              f"{'BPTT MiB':>9} {'BPTT/IDE':>8} | {'IDE saved':>9} {'BPTT saved':>10}")
    lines = [header, "-" * len(header)]
    for step in steps:
        ide, bptt = by_key.get((step, "ide")), by_key.get((step, "bptt"))
        if ide is None or bptt is None:
            raise ValueError(f"rows for T = {step} need both an 'ide' and a 'bptt' entry")
        time_ratio = bptt["seconds_per_batch"] / ide["seconds_per_batch"]
        memory_ratio = bptt["peak_memory_mib"] / max(ide["peak_memory_mib"], 1e-9)
        lines.append(
            f"{step:>5} | {ide['seconds_per_batch']:>11.4f} {bptt['seconds_per_batch']:>12.4f} {time_ratio:>7.1f}x | "
            f"{ide['peak_memory_mib']:>8.1f} {bptt['peak_memory_mib']:>9.1f} {memory_ratio:>7.1f}x | "
            f"{ide['saved_tensor_mib']:>9.1f} {bptt['saved_tensor_mib']:>10.1f}")
    lines.append(f"peak memory: {rows[0]['memory_method']} on {rows[0]['device']}; "
                 "saved: autograd's saved tensors (MiB)")
    return "\n".join(lines)
