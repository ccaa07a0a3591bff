"""BPTT: a feed-forward CUBA spiking network trained with surrogate gradients, as lava-dl users train.

The baseline every other method is compared with. The network is a stack of lava-dl slayer ``cuba.Dense``
blocks; slayer quantises weights to Loihi's 8-bit grid (steps of 2/64) and runs the neuron in Loihi's integer
arithmetic, so the trained network maps onto Lava's LIF without further loss. Hidden blocks keep slayer's
``delay_shift`` (Lava's Dense adds one step between layers) and the last block does not, which is exactly the
NetSpec time semantics: the input reaches the first layer in the same step, each later layer one step later.

The logits are ``readout_scale`` times the output layer's spike rate, so the NetSpec readout is a scaled identity.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from lavaflow.models.errors import ConfigError
from lavaflow.models.netspec import INPUT, Connection, CubaNeurons, Dense, Input, NetSpec, Readout
from lavaflow.pipeline.methods import Method


@dataclass(frozen=True)
class BPTTConfig:
    """Network and neuron hyper-parameters (the ``model:`` config section)."""

    hidden: tuple[int, ...] = (128,)
    threshold: float = 1.25  # in units of the synaptic input (a weight times a spike)
    current_decay: float = 0.25  # fraction of the synaptic current lost per step
    voltage_decay: float = 0.03  # fraction of the voltage lost per step
    tau_grad: float = 0.03  # width of slayer's surrogate gradient
    scale_grad: float = 3.0  # height of slayer's surrogate gradient
    readout_scale: float = 10.0  # logits = readout_scale · output spike rate

    def __post_init__(self) -> None:
        if not self.hidden or any(size < 1 for size in self.hidden):
            raise ConfigError(f"model.hidden needs at least one layer size and every size must be at least 1, got "
                              f"{list(self.hidden)}")
        checks = {
            "threshold": (self.threshold > 0, "> 0"),
            "current_decay": (0 <= self.current_decay <= 1, "in [0, 1]"),
            "voltage_decay": (0 <= self.voltage_decay <= 1, "in [0, 1]"),
            "tau_grad": (self.tau_grad > 0, "> 0"),
            "scale_grad": (self.scale_grad > 0, "> 0"),
            "readout_scale": (self.readout_scale > 0, "> 0"),
        }
        for name, (valid, bound) in checks.items():
            if not (math.isfinite(getattr(self, name)) and valid):
                raise ConfigError(f"model.{name} = {getattr(self, name)!r} must be {bound}")


def slayer_kernels_for_visible_gpus() -> None:
    """Have slayer compile its CUDA neuron kernels for the GPUs present.

    lava-dl 0.6 sets ``slayer.jitconfig.TORCH_CUDA_ARCH_LIST = "8.0"`` on any GPU of compute capability 8 or more,
    so on a Hopper GPU (9.0) the first CUDA forward fails with "no kernel image is available for execution on the
    device". Slayer reads the setting when it compiles (at the first CUDA forward), so naming the visible GPUs'
    own capabilities here is enough. No GPU: nothing to do.
    """
    if not torch.cuda.is_available():
        return
    from lava.lib.dl.slayer import jitconfig

    capabilities = sorted({torch.cuda.get_device_capability(index) for index in range(torch.cuda.device_count())})
    jitconfig.TORCH_CUDA_ARCH_LIST = ";".join(f"{major}.{minor}" for major, minor in capabilities)


class SlayerNetwork(torch.nn.Module):
    """Flatten → cuba.Dense blocks → spike rate × readout_scale. Input (T, B, *shape); logits (B, classes)."""

    def __init__(self, config: BPTTConfig, input_size: int, num_classes: int, generator: torch.Generator) -> None:
        super().__init__()
        from lava.lib.dl import slayer  # imported here: it is slow and prints warnings

        slayer_kernels_for_visible_gpus()
        self.config = config
        sizes = [input_size, *config.hidden, num_classes]
        blocks = []
        for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            neuron = {  # a fresh dict per block: slayer mutates the one it is given (research/lava.md §4.1)
                "threshold": config.threshold,
                "current_decay": config.current_decay,
                "voltage_decay": config.voltage_decay,
                "tau_grad": config.tau_grad,
                "scale_grad": config.scale_grad,
                "requires_grad": False,
            }
            is_last = index == len(sizes) - 2
            blocks.append(slayer.block.cuba.Dense(neuron, n_in, n_out, weight_norm=False, delay_shift=not is_last))
        self.blocks = torch.nn.ModuleList(blocks)
        with torch.no_grad():  # seeded initialisation (slayer's own init draws from the global RNG)
            for block in self.blocks:
                weight = block.synapse.weight
                bound = 1.0 / math.sqrt(weight.shape[1])
                weight.copy_((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound * 2.0)

    def spikes(self, inputs: torch.Tensor) -> torch.Tensor:
        """Output spikes (B, classes, T) for time-first input (T, B, *shape)."""
        x = inputs.reshape(inputs.shape[0], inputs.shape[1], -1).permute(1, 2, 0).contiguous()  # NCT
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.config.readout_scale * self.spikes(inputs).mean(-1)

    def quantized_weights(self) -> list[np.ndarray]:
        """Weights as slayer applies them: on the 8-bit grid, in float units, (n_out, n_in)."""
        result = []
        for block in self.blocks:
            synapse = block.synapse
            weight = synapse.pre_hook_fx(synapse.weight)
            result.append(weight.detach().reshape(weight.shape[:2]).cpu().numpy().astype(np.float64))
        return result

    def export_hdf5(self, path: str | Path) -> None:
        """slayer's own network description, as lava-dl netx reads it."""
        with h5py.File(path, "w") as handle:
            layers = handle.create_group("layer")
            for index, block in enumerate(self.blocks):
                block.export_hdf5(layers.create_group(str(index)))


def build(
    config: BPTTConfig, input_shape: tuple[int, ...], num_classes: int, time_steps: int, generator: torch.Generator
) -> SlayerNetwork:
    del time_steps  # slayer blocks take any number of steps
    return SlayerNetwork(config, int(np.prod(input_shape)), num_classes, generator)


def to_netspec(
    model: SlayerNetwork, config: BPTTConfig, input_shape: tuple[int, ...], encoding: str, time_steps: int
) -> NetSpec:
    """CUBA populations with slayer's 12-bit decays, quantised weights, and a scaled identity readout."""
    weights = model.quantized_weights()
    populations: dict[str, CubaNeurons] = {}
    connections = []
    source = INPUT
    for index, (block, weight) in enumerate(zip(model.blocks, weights, strict=True)):
        name = "output" if index == len(weights) - 1 else f"hidden{index}"
        neuron = block.neuron
        populations[name] = CubaNeurons(
            bias=np.zeros(weight.shape[0]),
            threshold=float(neuron.threshold),
            current_decay=float(neuron.cx_current_decay) / 4096,
            voltage_decay=float(neuron.cx_voltage_decay) / 4096,
        )
        connections.append(Connection(source, name, Dense(weight), delay_steps=0 if source == INPUT else 1))
        source = name
    num_classes = weights[-1].shape[0]
    readout = Readout("output", config.readout_scale * np.eye(num_classes), np.zeros(num_classes))
    return NetSpec(Input(tuple(input_shape), encoding), populations, tuple(connections), readout, time_steps)


METHOD = Method(
    name="bptt",
    model_config=BPTTConfig,
    build=build,
    to_netspec=to_netspec,
    training_defaults={"optimizer": "adam", "learning_rate": 3e-3, "time_steps": 16, "epochs": 15},
    description="surrogate-gradient BPTT through lava-dl slayer CUBA blocks (the baseline)",
)
