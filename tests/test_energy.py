"""The energy estimate (deploy.energy) equals a hand count on tiny spike rasters."""

from __future__ import annotations

import numpy as np
import pytest

from lavaflow.deploy.energy import LOIHI1_DAVIES2018, estimate_energy, input_events
from lavaflow.deploy.resources import CoreLimits, resource_report
from lavaflow.models.errors import DataError
from lavaflow.models.fixed import FixedConnection, FixedNetSpec, FixedPopulation, input_payload
from lavaflow.models.netspec import INPUT, Input, Readout, Sparse
from lavaflow.models.reference import simulate


def cuba(size: int) -> FixedPopulation:
    return FixedPopulation("cuba", size, vth=1, dv=0, bias_mant=np.zeros(size, dtype=np.int64), bias_exp=0,
                           scale=1.0, du=4095)


def chain() -> FixedNetSpec:
    """input (2) → a (3) dense → b (2) sparse with 3 synapses: a0→b0, a2→b0, a1→b1; T = 4."""
    sparse = Sparse(np.array([2.0, 2.0, 2.0]), np.array([0, 0, 1]), np.array([0, 2, 1]), (2, 3))
    connections = (
        FixedConnection(INPUT, "a", np.full((3, 2), 2, dtype=np.int64), 0, 0),
        FixedConnection("a", "b", np.array([2, 2, 2], dtype=np.int64), 0, 1, sparse=sparse),
    )
    return FixedNetSpec(Input((2,), "events"), 1.0, {"a": cuba(3), "b": cuba(2)}, connections,
                        Readout("b", np.eye(2), np.zeros(2)), 4)


def test_energy_equals_a_hand_count_on_a_tiny_raster() -> None:
    """Two samples. Sample 0: input 0 sends 3 events, input 1 one; a fires (2, 0, 1), b fires (1, 0).
    Sample 1: no input events; a fires (0, 4, 0), b fires (0, 3).

    Fan-out: each input element drives 3 synapses (dense to a), a0 and a2 one each (to b0), a1 one (to b1), b none.
    Synaptic ops: sample 0 = 4·3 + (2 + 1)·1 = 15, sample 1 = 4·1 = 4; mean 9.5.
    Messages (one core per layer, so one per spike that has a target): sample 0 = 4 + 3 = 7, sample 1 = 4: 5.5.
    Neuron updates: 5 neurons × 4 steps = 20. Spikes: (3 + 1 + 4 + 3) / 2 = 5.5.
    """
    spec = chain()
    report = resource_report(spec)
    counts = {"a": np.array([[2, 0, 1], [0, 4, 0]]), "b": np.array([[1, 0], [0, 3]])}
    events = np.array([[3, 1], [0, 0]])
    estimate = estimate_energy(spec, report, counts, events)
    assert (estimate.synaptic_ops, estimate.spike_messages, estimate.neuron_updates) == (9.5, 5.5, 20)
    assert (estimate.spikes, estimate.input_events, estimate.samples, estimate.time_steps) == (5.5, 2.0, 2, 4)
    expected = 9.5 * 23.6e-12 + 20 * 81e-12 + 5.5 * 1.7e-12
    assert estimate.joules == pytest.approx(expected, rel=1e-12)
    assert estimate.ann_macs == 3 * 2 + 3  # one forward pass: the dense 3×2 and the 3 sparse synapses
    assert estimate.energies is LOIHI1_DAVIES2018
    assert "not published" in LOIHI1_DAVIES2018.source and "Davies" in LOIHI1_DAVIES2018.source
    metrics = estimate.metrics()
    assert metrics["loihi_energy_per_sample_joules"] == estimate.joules
    assert metrics["ann_macs_per_sample"] == 9.0


def test_messages_count_one_per_destination_core() -> None:
    """With one neuron per core, b has 2 cores: input elements reach all 3 of a's cores, a0 and a2 reach b's first
    core only, a1 the second. Sample 0's 4 events → 12 messages, a's spikes (2, 0, 1) → 3: 15; sample 1's a1 ×4:
    4. Mean 9.5 (synaptic ops are unchanged: 9.5)."""
    spec = chain()
    report = resource_report(spec, CoreLimits(neurons_per_core=1))
    assert report.cores_per_layer() == {"a": 3, "b": 2}
    counts = {"a": np.array([[2, 0, 1], [0, 4, 0]]), "b": np.array([[1, 0], [0, 3]])}
    estimate = estimate_energy(spec, report, counts, np.array([[3, 1], [0, 0]]))
    assert (estimate.spike_messages, estimate.synaptic_ops) == (9.5, 9.5)


def test_input_events_count_non_zero_payloads_and_match_a_simulated_raster() -> None:
    spec = chain()
    inputs = np.zeros((4, 2, 2))
    inputs[[0, 1, 3], 0, 0] = [1, 2, 1]
    inputs[2, 0, 1] = 5
    inputs[1, 1, 1] = 1
    events = input_events(spec, input_payload(spec, inputs))
    assert events.tolist() == [[3, 1], [0, 1]]
    result = simulate(spec, inputs)
    estimate = estimate_energy(spec, resource_report(spec), result.counts, events)
    hand = (3 * (3 + 1 + 0 + 1) + sum(result.counts["a"].sum(axis=0))) / 2  # input fan-out 3, each a neuron 1
    assert estimate.synaptic_ops == hand


def test_counts_of_the_wrong_shape_are_refused() -> None:
    spec = chain()
    with pytest.raises(DataError, match="'b'"):
        estimate_energy(spec, resource_report(spec), {"a": np.zeros((1, 3))}, np.zeros((1, 2)))
