"""Energy per sample on Loihi, estimated from measured spikes, beside the equivalent ANN's multiply-accumulates.

Counted per sample of T steps, from the spike counts of every population and the input events (models.reference
or Lava fixed point, which agree bit for bit) and the resource report's connectivity and partition:

    synaptic operations  Σ_j count_j · fan_out_j      over input elements and neurons j (a graded input payload is
                                                      one event, like a spike)
    neuron updates       N_neurons · T                 every neuron is updated every step
    spike messages       Σ_j count_j · cores_j         one message per destination core holding a target of j
    energy               E_syn · ops + E_neuron · updates + E_spike · messages

The per-operation energies are Loihi 1's, the only ones Intel has published: Davies et al., "Loihi: A Neuromorphic
Manycore Processor with On-Chip Learning", IEEE Micro 38(1):82–99, 2018, Table 2 (14 nm, measured at 0.75 V):
23.6 pJ per synaptic spike operation (minimum), 81 pJ per active neuron update (52 pJ inactive), 1.7 pJ per
within-tile spike (3.0 / 4.0 pJ more per east-west / north-south tile hop). Quoted as the literature reproduces
them: check them against the paper before publishing a figure.

What is NOT published for Loihi 2: Intel's Loihi 2 material (the 2021 technology brief "Taking Neuromorphic
Computing to the Next Level with Loihi 2", and later benchmark papers) gives speed-ups and whole-chip or
per-inference measurements of particular workloads, not per-operation energies; the open Lava repos contain none
either. The estimate below therefore labels itself "Loihi 1 per-operation figures applied to this network's
Loihi 2 partition": an order of magnitude, not a Loihi 2 measurement. It is also an upper bound in two ways and a
lower bound in one: every neuron-step is charged as active (Loihi charges idle neurons less), dense synapses count
zero weights (a core stores and visits them), but tile hops and static power are not counted (they need a
placement and a measurement).

The ANN comparison is the multiply-accumulates of one forward pass of the same connectivity (``macs``): what a
conventional accelerator computes per sample, whatever T is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lavaflow.deploy.resources import ResourceReport
from lavaflow.models.errors import DataError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.netspec import INPUT

PICO = 1e-12


@dataclass(frozen=True)
class OperationEnergies:
    """Energy per operation in picojoules, and where the figures come from."""

    name: str
    synaptic_op_pj: float
    neuron_update_pj: float
    spike_message_pj: float
    source: str


LOIHI1_DAVIES2018 = OperationEnergies(
    name="loihi1-davies2018",
    synaptic_op_pj=23.6,  # energy per synaptic spike op (min)
    neuron_update_pj=81.0,  # energy per neuron update, active (52 pJ inactive)
    spike_message_pj=1.7,  # within-tile spike energy; tile hops (3.0 / 4.0 pJ) not counted
    source=(
        "Davies et al., IEEE Micro 38(1):82-99, 2018, Table 2 (Loihi 1, 14 nm, 0.75 V). Loihi 2 per-operation "
        "energies are not published (Intel's 2021 Loihi 2 brief gives speed-ups, not pJ per operation)"
    ),
)


@dataclass(frozen=True)
class EnergyEstimate:
    """Operations and energy per sample (means over the samples counted)."""

    samples: int
    time_steps: int
    spikes: float  # spikes of every population
    input_events: float  # non-zero input payloads
    synaptic_ops: float
    neuron_updates: int
    spike_messages: float
    synaptic_joules: float
    neuron_joules: float
    message_joules: float
    ann_macs: int  # one forward pass of the equivalent ANN
    energies: OperationEnergies

    @property
    def joules(self) -> float:
        return self.synaptic_joules + self.neuron_joules + self.message_joules

    def to_dict(self) -> dict[str, object]:
        values = asdict(self)
        values["joules"] = self.joules
        values["per"] = "sample"
        return values

    def metrics(self) -> dict[str, float]:
        """Flat metrics.json keys."""
        return {
            "loihi_energy_per_sample_joules": self.joules,
            "loihi_synaptic_ops_per_sample": self.synaptic_ops,
            "loihi_neuron_updates_per_sample": float(self.neuron_updates),
            "loihi_spike_messages_per_sample": self.spike_messages,
            "spikes_per_sample_fixed": self.spikes,
            "ann_macs_per_sample": float(self.ann_macs),
        }

    def __str__(self) -> str:
        return (
            f"energy per sample (T = {self.time_steps}, mean of {self.samples}): {_joules(self.joules)} = "
            f"{self.synaptic_ops:,.0f} synaptic ops × {self.energies.synaptic_op_pj} pJ + {self.neuron_updates:,} "
            f"neuron updates × {self.energies.neuron_update_pj} pJ + {self.spike_messages:,.0f} spike messages × "
            f"{self.energies.spike_message_pj} pJ; {self.spikes:,.1f} spikes; the equivalent ANN: "
            f"{self.ann_macs:,} MACs\n  figures: {self.energies.source}"
        )


def _joules(value: float) -> str:
    for unit, scale in (("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-12:.3g} pJ"


def input_events(spec: FixedNetSpec, payloads: np.ndarray) -> np.ndarray:
    """(B, n_input) number of steps at which each input element sends a non-zero payload; ``payloads`` is
    (T, B, *input_shape) as models.fixed.input_payload returns them."""
    payloads = np.asarray(payloads)
    return np.count_nonzero(payloads.reshape(payloads.shape[0], payloads.shape[1], -1), axis=0).astype(np.int64)


def estimate_energy(spec: FixedNetSpec, report: ResourceReport, counts: dict[str, np.ndarray],
                    events: np.ndarray, *, energies: OperationEnergies = LOIHI1_DAVIES2018) -> EnergyEstimate:
    """Operations and energy per sample from measured spikes (see the module docstring for the formulas).

    Args:
        spec: the deployed network.
        report: its resource report (connectivity and partition).
        counts: population → (B, n) spike counts over the T steps (models.reference's ``counts``).
        events: (B, n_input) non-zero input payloads per element (``input_events``).

    Raises:
        DataError: counts or events whose shapes do not match the network.
    """
    events = np.asarray(events)
    if events.ndim != 2 or events.shape[1] != spec.input.size:
        raise DataError(f"input events have shape {events.shape}; expected (B, {spec.input.size})")
    batch = events.shape[0]
    fired = {INPUT: events.astype(np.float64)}
    for name, population in spec.populations.items():
        values = np.asarray(counts.get(name))
        if values.shape != (batch, population.size):
            raise DataError(f"spike counts of {name!r} have shape {values.shape}; expected ({batch}, "
                            f"{population.size}) (every population, the same samples as the input events)")
        fired[name] = values.astype(np.float64)
    zero = np.zeros(0)
    synaptic = sum(float(fired[name].sum(axis=0) @ report.fan_out.get(name, zero)) for name in fired
                   if report.fan_out.get(name, zero).size)
    messages = sum(float(fired[name].sum(axis=0) @ report.routing.get(name, zero)) for name in fired
                   if report.routing.get(name, zero).size)
    neuron_updates = sum(p.size for p in spec.populations.values()) * spec.time_steps
    synaptic /= batch
    messages /= batch
    return EnergyEstimate(
        samples=batch,
        time_steps=spec.time_steps,
        spikes=float(sum(fired[name].sum() for name in spec.populations) / batch),
        input_events=float(events.sum() / batch),
        synaptic_ops=synaptic,
        neuron_updates=neuron_updates,
        spike_messages=messages,
        synaptic_joules=synaptic * energies.synaptic_op_pj * PICO,
        neuron_joules=neuron_updates * energies.neuron_update_pj * PICO,
        message_joules=messages * energies.spike_message_pj * PICO,
        ann_macs=report.macs,
        energies=energies,
    )
