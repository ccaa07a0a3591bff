"""Recurrent spiking networks of CUBA-LIF neurons with a refractory period (ST-RSBP's networks, spec A.2, A.7, A.10).

A stack of hidden layers, each ``dense`` (fed by the layer below) or ``recurrent dense`` (also fed by its own
spikes of the previous step through a fixed sparse topology, the reservoir of spec A.7), then an output layer with
fixed lateral inhibition between its neurons. Every neuron is the kind "cuba_refractory" (models.kinds):

    u[t] = (1 − 1/τ_s)·u[t−1] + Σ_j (w_ij/τ_s)·x_j[t − d]        (d = 0 from the input, 1 between populations)
    v[t] = (1 − 1/τ_m)·v[t−1] + u[t]   unless held;   s[t] = [v[t] > ν];   v ← 0 and R held steps after a spike

The weights ``w`` are the paper's: a spike makes the synaptic current I = τ_s·u jump by w (spec A.2), so the
spec's initialisation U(−1, 1) and thresholds ν = 20 carry over; the NetSpec holds w/τ_s, Lava's Dense weight.
τ_s = 8 makes that division exact. Layer names in the NetSpec: ``hidden0``, ``hidden1``, …, ``output``.

Time follows the NetSpec contract (models.netspec), so ``RSNN.simulate`` and models.reference.simulate give the
same spikes: the reference code's extra one-step delay of the input is dropped (a shift of the whole raster).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lavaflow.models.errors import ConfigError
from lavaflow.models.kinds.cuba_refractory import (
    CubaRefractoryNeurons,
    CubaRefractoryParams,
)
from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout, Sparse

# Reservoir connection probabilities c[pre type][post type] (E = 0, I = 1), spec A.7 (base constants × 1.5).
RESERVOIR_PROBABILITY = ((0.45, 0.30), (0.60, 0.15))
EXCITATORY_FRACTION = 0.8
TOPOLOGIES = ("grid", "dense")


@dataclass(frozen=True)
class RSNNLayer:
    """One hidden layer: ``size`` neurons, with recurrent connections within the layer when ``recurrent``."""

    size: int
    recurrent: bool = False

    @classmethod
    def parse(cls, text: str) -> RSNNLayer:
        """"400" is a dense layer of 400 neurons, "r400" (or "R400") a recurrent one (the paper's notation)."""
        body = text.strip()
        recurrent = body[:1] in ("r", "R")
        digits = body[1:] if recurrent else body
        if not digits.isdigit() or int(digits) < 1:
            raise ConfigError(f"layer {text!r}: write N for a dense layer of N neurons or rN for a recurrent one")
        return cls(int(digits), recurrent)


@dataclass(frozen=True)
class RSNNArchitecture:
    """Sizes and neuron parameters of an RSNN; ``thresholds`` has one ν per hidden layer and one for the output.

    Attributes:
        tau_m, tau_s: membrane and synaptic time constants in steps (voltage_decay 1/τ_m, current_decay 1/τ_s).
        refractory_steps: R, the steps v is held at 0 after a spike (the kind's refractory_period).
        lateral_inhibition: w0; output neurons inhibit each other with the fixed weight −w0 (0: none).
        topology: "grid", the spec's 3-D reservoir (distance-dependent sparse, with E/I labels), or "dense"
            (all-to-all, self-connections excluded).
    """

    input_size: int
    layers: tuple[RSNNLayer, ...]
    num_classes: int
    thresholds: tuple[float, ...]
    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory_steps: int = 2
    lateral_inhibition: float = 1.0
    topology: str = "grid"

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.layers) + 1:
            raise ConfigError(f"thresholds needs one value per hidden layer and one for the output "
                              f"({len(self.layers) + 1}), got {len(self.thresholds)}")
        if any(not (math.isfinite(v) and v > 0) for v in self.thresholds):
            raise ConfigError(f"thresholds must be positive, got {list(self.thresholds)}")
        if not (self.tau_m >= 1 and self.tau_s >= 1):
            raise ConfigError(f"tau_m and tau_s are in steps and must be at least 1, got {self.tau_m}, {self.tau_s}")
        if self.refractory_steps < 0:
            raise ConfigError(f"refractory_steps must be at least 0, got {self.refractory_steps}")
        if self.topology not in TOPOLOGIES:
            raise ConfigError(f"topology {self.topology!r} is not one of {TOPOLOGIES}")
        if self.input_size < 1 or self.num_classes < 1:
            raise ConfigError(f"input_size and num_classes must be positive, got {self.input_size}, "
                              f"{self.num_classes}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Neurons per population: hidden layers, then the output."""
        return (*(layer.size for layer in self.layers), self.num_classes)

    @property
    def names(self) -> tuple[str, ...]:
        return (*(f"hidden{k}" for k in range(len(self.layers))), "output")

    @property
    def current_decay(self) -> float:
        return 1.0 / self.tau_s

    @property
    def voltage_decay(self) -> float:
        return 1.0 / self.tau_m

    def params(self, index: int) -> CubaRefractoryParams:
        """The torch step's parameters of population ``index``."""
        return CubaRefractoryParams(self.thresholds[index], self.current_decay, self.voltage_decay,
                                    self.refractory_steps)


def grid_shape(size: int) -> tuple[int, int, int]:
    """A 3-D grid (a, a, size/a²) holding ``size`` neurons, a ≤ 5 as large as divides (400 → 5×5×16, spec A.10)."""
    for side in (5, 4, 3, 2, 1):
        if size % (side * side) == 0:
            return side, side, size // (side * side)
    raise AssertionError("unreachable: side 1 always divides")


def reservoir_mask(size: int, topology: str, generator: torch.Generator) -> Tensor:
    """(size, size) bool, [post, pre]: which recurrent connections exist (spec A.7 for "grid").

    "grid": neurons on ``grid_shape(size)``, 80 % excitatory; pre → post exists with probability
    c[type_pre][type_post]·exp(−d²/4), d the grid distance (d = 0: self-connections are possible, as in the
    reference). "dense": every pair except self-connections.
    """
    if topology == "dense":
        return ~torch.eye(size, dtype=torch.bool)
    if topology != "grid":
        raise ConfigError(f"topology {topology!r} is not one of {TOPOLOGIES}")
    shape = grid_shape(size)
    coordinates = torch.tensor(list(itertools.product(*(range(n) for n in shape))), dtype=torch.float64)
    inhibitory = (torch.rand(size, generator=generator, dtype=torch.float64) >= EXCITATORY_FRACTION).long()
    table = torch.tensor(RESERVOIR_PROBABILITY, dtype=torch.float64)
    distance2 = torch.cdist(coordinates, coordinates).square()  # [post, pre] (symmetric)
    probability = table[inhibitory[None, :], inhibitory[:, None]] * torch.exp(-distance2 / 4)
    return torch.rand((size, size), generator=generator, dtype=torch.float64) < probability


class RSNNPopulation(nn.Module):
    """One population's incoming weights: ``weight`` (n, n_in) from below, and the loop within the population:
    trainable ``recurrent_weight`` on ``recurrent_mask`` (hidden recurrent layers), or the fixed ``lateral``
    inhibition (output). Weights in the paper's units (a jump of τ_s·u)."""

    def __init__(self, weight: Tensor, recurrent_weight: Tensor | None, recurrent_mask: Tensor | None,
                 lateral: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.recurrent_weight = nn.Parameter(recurrent_weight) if recurrent_weight is not None else None
        self.register_buffer("recurrent_mask", recurrent_mask)
        self.register_buffer("lateral", lateral)

    def loop_weight(self) -> Tensor | None:
        """The effective (n, n) weight of the population onto itself (delay 1), or None."""
        if self.recurrent_weight is not None:
            return self.recurrent_weight * self.recurrent_mask
        return self.lateral


class RSNN(nn.Module):
    """The network; ``simulate`` runs it exactly (no graph), the trainer differentiates at spike-train level."""

    def __init__(self, architecture: RSNNArchitecture, generator: torch.Generator, initial_weight: float = 1.0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.architecture = architecture
        sizes = (architecture.input_size, *architecture.sizes)
        populations = []
        for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            weight = (torch.rand((n_out, n_in), generator=generator, dtype=torch.float64) * 2 - 1) * initial_weight
            recurrent, mask, lateral = None, None, None
            is_output = index == len(sizes) - 2
            if not is_output and architecture.layers[index].recurrent:
                mask = reservoir_mask(n_out, architecture.topology, generator)
                recurrent = (torch.rand((n_out, n_out), generator=generator, dtype=torch.float64) * 2 - 1) * mask
                recurrent = recurrent.to(dtype)
            if is_output and architecture.lateral_inhibition:
                lateral = -architecture.lateral_inhibition * (1 - torch.eye(n_out, dtype=dtype))
            populations.append(RSNNPopulation(weight.to(dtype), recurrent, mask, lateral))
        self.populations = nn.ModuleList(populations)

    @torch.no_grad()
    def simulate(self, inputs: Tensor) -> list[Tensor]:
        """Spikes of every population, each (T, B, n) float64, for time-first input (T, B, *input_shape).

        Layer by layer: a population's drive from below is one matmul over all steps (delay 0 from the input,
        1 from a population), then the time loop adds its own loop input of the previous step and steps the
        neuron, in float64 as the reference simulator does. The step is ``cuba_refractory_step``'s arithmetic
        (models.kinds.cuba_refractory) with masks in place of its 0/1 products, which give the same values and
        halve the operations of this, the forward's, loop (tests compare the two).
        """
        time_steps, batch = inputs.shape[:2]
        below = inputs.reshape(time_steps, batch, -1).to(torch.float64)
        if below.shape[-1] != self.architecture.input_size:
            raise ValueError(f"inputs have {below.shape[-1]} values per step; the network expects "
                             f"{self.architecture.input_size}")
        decay = self.architecture.current_decay
        spikes_per_population = []
        for index, population in enumerate(self.populations):
            weight = population.weight.detach().to(torch.float64) * decay
            drive = below @ weight.T
            if index > 0:  # between populations: one step of delay
                drive = torch.cat([torch.zeros_like(drive[:1]), drive[:-1]])
            loop = population.loop_weight()
            loop_t = None if loop is None else (loop.detach().to(torch.float64) * decay).T
            spikes = simulate_population(drive, loop_t, self.architecture.params(index))
            spikes_per_population.append(spikes)
            below = spikes
        return spikes_per_population


def simulate_population(drive: Tensor, loop_t: Tensor | None, params: CubaRefractoryParams) -> Tensor:
    """Spikes (T, B, n) of one "cuba_refractory" population driven by ``drive`` (T, B, n) plus, with a step of
    delay, its own spikes through ``loop_t`` (n, n), transposed: the values of ``cuba_refractory_step``.

    v is 0 whenever it is held (a spike resets it to 0, and the R steps after hold it), so "held" zeroes the
    integrated value; a neuron is held while the step is within R of its last spike.
    """
    current_keep, voltage_keep = 1.0 - params.current_decay, 1.0 - params.voltage_decay
    current = torch.zeros_like(drive[0])
    voltage = torch.zeros_like(current)
    last_spike = torch.full_like(current, -math.inf)
    spikes = torch.zeros_like(drive)
    period = params.refractory_period
    for t in range(drive.shape[0]):
        current.mul_(current_keep).add_(drive[t] if loop_t is None or t == 0 else drive[t] + spikes[t - 1] @ loop_t)
        voltage = (voltage_keep * voltage).add_(current)
        if period > 0:
            voltage.masked_fill_(last_spike >= t - period, 0.0)
        fired = voltage > params.threshold
        voltage.masked_fill_(fired, 0.0)
        last_spike.masked_fill_(fired, float(t))
        spikes[t] = fired
    return spikes


def rsnn_netspec(model: RSNN, *, input_shape: Sequence[int], encoding: str, time_steps: int,
                 readout_scale: float = 1.0, metadata: dict[str, str] | None = None) -> NetSpec:
    """The RSNN as a NetSpec of "cuba_refractory" populations; the readout gives ``readout_scale`` × spike counts.

    Weights become w/τ_s (Lava's Dense weight). A grid reservoir becomes a Sparse synapse holding every existing
    connection (also one trained to 0), a dense loop and the output's lateral inhibition Dense synapses; all loops
    have delay 1, as the hidden-to-hidden connections.
    """
    architecture = model.architecture
    decay = architecture.current_decay
    populations: dict[str, CubaRefractoryNeurons] = {}
    connections: list[Connection] = []
    source = INPUT
    for index, (name, population) in enumerate(zip(architecture.names, model.populations, strict=True)):
        size = architecture.sizes[index]
        populations[name] = CubaRefractoryNeurons(
            bias=np.zeros(size), threshold=float(architecture.thresholds[index]),
            current_decay=decay, voltage_decay=architecture.voltage_decay,
            refractory_period=int(architecture.refractory_steps))
        weight = population.weight.detach().cpu().to(torch.float64).numpy() * decay
        connections.append(Connection(source, name, Dense(weight), delay_steps=0 if source == INPUT else 1))
        loop = population.loop_weight()
        if loop is not None:
            loop = loop.detach().cpu().to(torch.float64).numpy() * decay
            mask = population.recurrent_mask
            if mask is not None and architecture.topology == "grid":
                rows, cols = np.nonzero(mask.cpu().numpy())
                synapse = Sparse(loop[rows, cols], rows.astype(np.int64), cols.astype(np.int64), (size, size))
            else:
                synapse = Dense(loop)
            connections.append(Connection(name, name, synapse, delay_steps=1))
        source = name
    classes = architecture.num_classes
    readout = Readout("output", readout_scale * time_steps * np.eye(classes), np.zeros(classes))
    return NetSpec(Input(tuple(int(n) for n in input_shape), encoding), populations, tuple(connections), readout,
                   time_steps, dict(metadata or {}))
