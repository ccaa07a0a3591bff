"""Reference simulator: steps a NetSpec in float64 or a FixedNetSpec in bit-accurate integers, with numpy.

It imports no Lava, so it is a second implementation and the oracle of the parity tests: Lava's floating_pt models
must match float mode spike for spike, Lava's fixed_pt models must match fixed mode bit for bit. It is also the
raw-numpy baseline of the Lava throughput benchmark, so the inner loop only calls BLAS and in-place ufuncs.

Each step t = 1..T follows the NetSpec time semantics (models.netspec) in Lava's order. For each population in
NetSpec order: a_in = Σ_c W_c·x_c, summed over incoming connections in NetSpec order, where x_c is this step's input
(delay 0) or the source's spikes ``delay_steps`` ago (a ring buffer per source; zero before the first step); then
the neuron update of the population's kind (models.kinds: float, decay, add a_in, add bias, fire, reset; or the
integers of models.fixed).

Both modes pass the same gate as the Lava export before anything runs: ``NetSpec.validate`` and
``Input.checked`` (float), models.fixed.input_payload (fixed point: spec, data and the 18-bit a_in bound), so every
backend refuses the same specs and data. Fixed mode keeps the neuron state in int64; only Lava's documented current
wrap and voltage saturation are replicated, and the gate guarantees nothing else can overflow (a_in fits 18 bits,
so W·x and its shift fit Lava's int32). Synaptic sums W·x are computed in float64 by BLAS: every product and
partial sum is an integer below 2^53 (|W| ≤ 256, x ≤ 255, fan-in < 2^36), so float64 is exact and much faster
than numpy's int64 matmul.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as functional

from lavaflow.models.errors import ConfigError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.fixed import check_fixed_spec as check_fixed_spec  # re-exported: its old home
from lavaflow.models.fixed import input_payload as input_payload
from lavaflow.models.kinds import kind_named, kind_of
from lavaflow.models.kinds.base import ReferenceModel
from lavaflow.models.netspec import INPUT, Conv, NetSpec, Readout, Sparse
from lavaflow.models.neurons import potential_unit, rate_normaliser


@dataclass(frozen=True)
class SimulationResult:
    """What one batch produced. B is the batch size, T the number of steps.

    Attributes:
        counts: population name → (B, n) int64 spike counts over the T steps.
        rates: (B, n_source) λ-weighted rates of the readout source, Σ_t λ^{T−t} s[t] / Σ_k λ^k.
        logits: (B, classes) float64, readout.weight @ feature + readout.bias (the feature: rates, or the final v
            in float units for a potential readout).
        predictions: (B,) int64 arg-max of the logits.
        records: "population.variable" → (T, B, n) per-step values after the reset: "v" (float64, or int64
            in 24-bit LSBs in fixed mode), "u" (CUBA current, same units) and "spikes" (uint8).
    """

    counts: dict[str, np.ndarray]
    rates: np.ndarray
    logits: np.ndarray
    predictions: np.ndarray
    records: dict[str, np.ndarray] = field(default_factory=dict)


def simulate(spec: NetSpec | FixedNetSpec, inputs: np.ndarray, *, record: Sequence[str] = ()) -> SimulationResult:
    """Run a batch through ``spec`` for its ``time_steps`` steps; float64 for a NetSpec, integers for a FixedNetSpec.

    Args:
        spec: the network; its type picks the mode.
        inputs: (T, B, *input_shape) as the data pipeline encodes it: intensities (current encoding, repeated T
            times), 0/1 spikes (rate) or event counts (events). Any real dtype; values are used exactly.
        record: "population.variable" names ("v", "spikes", and "u" for CUBA populations) to keep per step.

    Returns:
        Spike counts, readout rates, logits, predictions and the requested records.

    Raises:
        DataError: ``inputs`` do not match the input shape or ``time_steps``, hold non-finite values, rate input
            other than 0/1, or fixed-mode events that are not integers in 0..255.
        ConfigError: an unknown record name.
        NetSpecError: an invalid spec (e.g. NaN written into its arrays), or a fixed-mode spec whose a_in could
            leave its 18-bit range with these inputs.
    """
    if isinstance(spec, FixedNetSpec):
        drive = input_payload(spec, inputs).astype(np.float64)  # exact: payloads are 0..255
        unit = potential_unit(spec.populations[spec.readout.source].scale)
        return _run(_fixed_network(spec, drive.shape[1]), spec.readout, drive, record, unit)
    if isinstance(spec, NetSpec):
        spec.validate()
        drive = spec.input.checked(inputs, spec.time_steps)
        return _run(_float_network(spec, drive.shape[1]), spec.readout, drive, record, 1.0)
    raise TypeError(f"simulate expects a NetSpec or FixedNetSpec, got {type(spec).__name__}")


# ------------------------------------------------------------------------------------------------ synapses
class _DenseSynapse:
    """y = x @ Wᵀ into a preallocated output; fixed mode then applies Lava's weight_exp (see ``_shift``)."""

    def __init__(self, weight: np.ndarray, exponent: int | None) -> None:
        self.weight_t = np.ascontiguousarray(weight.T, dtype=np.float64)
        self.exponent = exponent  # None in float mode

    def apply(self, source: np.ndarray, out: np.ndarray) -> None:
        np.matmul(source, self.weight_t, out=out)
        _shift(out, self.exponent)


class _ConvSynapse:
    """Cross-correlation with torch's conv2d in float64 (exact on the integer operands of fixed mode)."""

    def __init__(self, weight: np.ndarray, conv: Conv, exponent: int | None) -> None:
        self.weight = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float64))
        self.conv = conv
        self.exponent = exponent

    def apply(self, source: np.ndarray, out: np.ndarray) -> None:
        images = torch.from_numpy(source).reshape(source.shape[0], *self.conv.input_shape)
        result = functional.conv2d(
            images,
            self.weight,
            stride=self.conv.stride,
            padding=self.conv.padding,
            dilation=self.conv.dilation,
            groups=self.conv.groups,
        )
        np.copyto(out, result.reshape(source.shape[0], -1).numpy())
        if self.exponent is not None:
            np.rint(out, out=out)  # integer operands: removes any rounding a fast conv algorithm might add
        _shift(out, self.exponent)


class _SparseSynapse:
    """y = W·x with W in CSR form (float64; exact on the integer operands of fixed mode)."""

    def __init__(self, weight: np.ndarray, sparse: Sparse, exponent: int | None) -> None:
        self.weight_t = sparse.matrix(np.asarray(weight, dtype=np.float64)).T.tocsr()
        self.exponent = exponent

    def apply(self, source: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, source @ self.weight_t)
        _shift(out, self.exponent)


def _shift(values: np.ndarray, exponent: int | None) -> None:
    """Lava's weight_exp in place on float64 integers: << e is ×2^e, arithmetic >> e is floor(x / 2^e); both exact."""
    if not exponent:
        return
    np.multiply(values, 2.0**exponent, out=values)
    if exponent < 0:
        np.floor(values, out=values)


Synapse = _DenseSynapse | _ConvSynapse | _SparseSynapse


def _synapse(weight: np.ndarray, geometry: Conv | Sparse | None, exponent: int | None) -> Synapse:
    """The synapse for ``weight`` laid out as ``geometry`` says (None: a dense (n_out, n_in) matrix)."""
    if isinstance(geometry, Conv):
        return _ConvSynapse(weight, geometry, exponent)
    if isinstance(geometry, Sparse):
        return _SparseSynapse(weight, geometry, exponent)
    return _DenseSynapse(weight, exponent)


# ------------------------------------------------------------------------------------------------ neurons
# Each kind's float and integer models live in its module (models.kinds); the loop looks them up by kind.
Neurons = ReferenceModel


# ------------------------------------------------------------------------------------------------ the loop
@dataclass
class _Incoming:
    source: str
    delay_steps: int
    synapse: Synapse


@dataclass
class _Population:
    name: str
    size: int
    neurons: Neurons
    incoming: list[_Incoming]


@dataclass
class _Network:
    populations: list[_Population]


def _float_network(spec: NetSpec, batch: int) -> _Network:
    populations = []
    for name, neurons in spec.populations.items():
        kernel = kind_of(neurons).float_model(neurons, batch)
        incoming = []
        for c in spec.incoming(name):
            geometry = c.synapse if isinstance(c.synapse, (Conv, Sparse)) else None
            incoming.append(_Incoming(c.source, c.delay_steps, _synapse(c.synapse.weight, geometry, None)))
        populations.append(_Population(name, neurons.size, kernel, incoming))
    return _Network(populations)


def _fixed_network(spec: FixedNetSpec, batch: int) -> _Network:
    populations = []
    for name, population in spec.populations.items():
        kernel = kind_named(population.kind).fixed_model(population, batch)
        incoming = [
            _Incoming(c.source, c.delay_steps, _synapse(c.weight, c.conv or c.sparse, int(c.weight_exp)))
            for c in spec.connections
            if c.target == name
        ]
        populations.append(_Population(name, population.size, kernel, incoming))
    return _Network(populations)


def _run(
    network: _Network, readout: Readout, drive: np.ndarray, record: Sequence[str], unit: float
) -> SimulationResult:
    """Step the network over ``drive`` (T, B, *input_shape) float64 and summarise; ``unit`` is the float value of
    one LSB of the readout source's v (1 in float mode)."""
    time_steps, batch = drive.shape[:2]
    inputs = drive.reshape(time_steps, batch, -1)
    by_name = {p.name: p for p in network.populations}
    recorders = _recorders(by_name, record, time_steps, batch)
    # Ring buffers of spikes: slot t % length holds step t; a reader with delay d reads slot (t − d) % length.
    longest = {name: 0 for name in by_name}
    for population in network.populations:
        for connection in population.incoming:
            if connection.source != INPUT:
                longest[connection.source] = max(longest[connection.source], connection.delay_steps)
    history = {p.name: np.zeros((longest[p.name] + 1, batch, p.size)) for p in network.populations}
    a_in = {p.name: np.zeros((batch, p.size)) for p in network.populations}
    scratch = {p.name: np.zeros((batch, p.size)) for p in network.populations}
    counts = {p.name: np.zeros((batch, p.size)) for p in network.populations}
    leak = 1.0 - readout.rate_decay
    rate_weights = [leak ** (time_steps - 1 - t) for t in range(time_steps)]  # as neurons.weighted_rate
    weighted = np.zeros((batch, by_name[readout.source].size))

    for t in range(time_steps):
        for population in network.populations:
            total = a_in[population.name]
            for index, connection in enumerate(population.incoming):
                if connection.source == INPUT:
                    source = inputs[t]
                else:
                    buffer = history[connection.source]
                    source = buffer[(t - connection.delay_steps) % buffer.shape[0]]
                if index == 0:
                    connection.synapse.apply(source, total)
                else:
                    connection.synapse.apply(source, scratch[population.name])
                    total += scratch[population.name]
            if not population.incoming:
                total.fill(0.0)
            buffer = history[population.name]
            spikes = buffer[t % buffer.shape[0]]
            population.neurons.step(total, spikes)
            counts[population.name] += spikes
            if population.name == readout.source:
                weighted += rate_weights[t] * spikes
            for variable, values in recorders.get(population.name, {}).items():
                values[t] = spikes if variable == "spikes" else population.neurons.state[variable]

    rates = weighted / rate_normaliser(time_steps, leak)
    if readout.quantity == "potential":
        logits = readout.logits(by_name[readout.source].neurons.state["v"] * unit)
    else:
        logits = readout.logits(rates)
    return SimulationResult(
        counts={name: values.astype(np.int64) for name, values in counts.items()},
        rates=rates,
        logits=logits,
        predictions=np.argmax(logits, axis=1).astype(np.int64),
        records={
            f"{name}.{variable}": values for name, group in recorders.items() for variable, values in group.items()
        },
    )


def _recorders(
    populations: dict[str, _Population], record: Sequence[str], time_steps: int, batch: int
) -> dict[str, dict[str, np.ndarray]]:
    """Preallocated (T, B, n) arrays for each requested "population.variable"."""
    if isinstance(record, str):
        raise ConfigError(f"record must be a sequence of names, got the string {record!r}")
    recorders: dict[str, dict[str, np.ndarray]] = {}
    for item in record:
        name, _, variable = item.rpartition(".")
        population = populations.get(name)
        valid = ("spikes", *population.neurons.state) if population is not None else ()
        if variable not in valid:
            choices = sorted(f"{p.name}.{v}" for p in populations.values() for v in ("spikes", *p.neurons.state))
            raise ConfigError(f"cannot record {item!r}; choose from {choices}")
        dtype = np.uint8 if variable == "spikes" else population.neurons.state[variable].dtype
        recorders.setdefault(name, {})[variable] = np.zeros((time_steps, batch, population.size), dtype=dtype)
    return recorders
