"""NetSpec: validation when built, and an exact save/load round trip covering every node class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lavaflow.models.errors import NetSpecError
from lavaflow.models.kinds.cuba_refractory import CubaRefractoryNeurons
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.lif_potential import PotentialLIFNeurons
from lavaflow.models.netspec import (
    INPUT,
    NODE_TYPES,
    Connection,
    Conv,
    CubaNeurons,
    Dense,
    Input,
    NetSpec,
    Readout,
    SoftResetNeurons,
    Sparse,
    assert_netspec_equal,
)
from lavaflow.models.neurons import SoftResetParams, soft_reset_step


def every_node_spec(rng: np.random.Generator) -> NetSpec:
    """A NetSpec that uses every node class in NODE_TYPES (checked below)."""
    conv = Conv(rng.normal(size=(2, 1, 3, 3)), input_shape=(1, 6, 6), stride=(1, 1), padding=(1, 1))
    populations = {
        "conv": SoftResetNeurons(rng.normal(size=72), threshold=2.0, voltage_decay=0.05, shape=(2, 6, 6)),
        "hidden": SoftResetNeurons(rng.normal(size=20), threshold=1.0, reset_potential=-1.0),
        "out": CubaNeurons(np.zeros(4), threshold=1.25, current_decay=0.25, voltage_decay=0.03),
        "refractory": CubaRefractoryNeurons(rng.normal(size=3), 1.5, 0.5, 0.1, refractory_period=3),
        "potential": PotentialLIFNeurons(
            rng.normal(size=2), 1.0, 0.2, leak_potential=-0.3, reset_potential=-0.5, reset_mode="subtract"
        ),
        "li": LeakyIntegrator(rng.normal(size=2), current_decay=0.5, voltage_decay=0.25),
    }
    connections = (
        Connection(INPUT, "conv", conv, delay_steps=0),
        Connection("conv", "hidden", Dense(rng.normal(size=(20, 72)))),
        Connection("hidden", "hidden", Sparse.from_dense(rng.normal(size=(20, 20)) * (rng.random((20, 20)) < 0.2)), 2),
        Connection("hidden", "out", Dense(rng.normal(size=(4, 20)))),
        Connection("hidden", "refractory", Dense(rng.normal(size=(3, 20)))),
        Connection("refractory", "potential", Dense(rng.normal(size=(2, 3)))),
        Connection("potential", "li", Dense(rng.normal(size=(2, 2)))),
    )
    readout = Readout("out", rng.normal(size=(3, 4)), rng.normal(size=3), rate_decay=0.05)
    return NetSpec(Input((1, 6, 6), "current"), populations, connections, readout, 7, {"method": "test"})


def test_round_trip_is_exact_for_every_node_class(tmp_path: Path) -> None:
    spec = every_node_spec(np.random.default_rng(0))
    used = {type(spec).__name__, type(spec.input).__name__, type(spec.readout).__name__}
    used |= {type(p).__name__ for p in spec.populations.values()}
    used |= {type(c).__name__ for c in spec.connections} | {type(c.synapse).__name__ for c in spec.connections}
    assert used == set(NODE_TYPES), f"add {set(NODE_TYPES) - used} to the round-trip fixture"
    spec.save(tmp_path / "net.npz")
    loaded = NetSpec.load(tmp_path / "net.npz")
    assert_netspec_equal(spec, loaded)
    order = ["conv", "hidden", "out", "refractory", "potential", "li"]
    assert list(loaded.populations) == order  # update order survives
    assert loaded.connections[2].delay_steps == 2 and loaded.metadata == {"method": "test"}
    assert loaded.connections[0].synapse.output_shape == (2, 6, 6)


def test_assert_netspec_equal_detects_a_changed_weight() -> None:
    a = every_node_spec(np.random.default_rng(0))
    b = every_node_spec(np.random.default_rng(0))
    b.connections[1].synapse.weight[0, 0] += 1e-9
    with pytest.raises(AssertionError):
        assert_netspec_equal(a, b)


def test_load_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(NetSpecError, match="not a readable NetSpec"):
        NetSpec.load(bad)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda w: w.__setitem__((0, 0), np.nan), "non-finite"),
        (lambda w: w.__setitem__((1, 1), np.inf), "non-finite"),
    ],
)
def test_non_finite_weights_are_rejected(mutate, message: str) -> None:
    weight = np.ones((3, 4))
    mutate(weight)
    with pytest.raises(NetSpecError, match=message):
        Dense(weight)


def test_structure_errors_name_the_problem() -> None:
    neurons = {"h": SoftResetNeurons(np.zeros(3), threshold=1.0)}
    readout = Readout("h", np.eye(3), np.zeros(3))
    with pytest.raises(NetSpecError, match="maps 4 → 3 neurons but the source has 5"):
        NetSpec(Input((5,), "rate"), neurons, (Connection(INPUT, "h", Dense(np.ones((3, 4))), 0),), readout, 4)
    with pytest.raises(NetSpecError, match="unknown source 'ghost'"):
        NetSpec(Input((5,), "rate"), neurons, (Connection("ghost", "h", Dense(np.ones((3, 3)))),), readout, 4)
    with pytest.raises(NetSpecError, match="input connections have delay 0"):
        NetSpec(Input((5,), "rate"), neurons, (Connection(INPUT, "h", Dense(np.ones((3, 5))), 1),), readout, 4)
    with pytest.raises(NetSpecError, match="delay ≥ 1"):
        NetSpec(Input((5,), "rate"), neurons, (Connection("h", "h", Dense(np.ones((3, 3))), 0),), readout, 4)
    with pytest.raises(NetSpecError, match="readout weight"):
        NetSpec(Input((5,), "rate"), neurons, (), Readout("h", np.eye(4), np.zeros(4)), 4)
    with pytest.raises(NetSpecError, match="dtype int64"):
        Dense(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(NetSpecError, match="encoding"):
        Input((5,), "morse")


@given(steps=st.integers(1, 64), sixteenths=st.integers(0, 16))
def test_if_spike_count_is_floor_of_total_charge(steps: int, sixteenths: int) -> None:
    """θ = D = 1, constant dyadic input q: after t steps v = t·q − count, so count = ⌊t·q⌋ (exact in float32)."""
    current = torch.full((2, 3), sixteenths / 16)
    voltage, count = torch.zeros(2, 3), torch.zeros(2, 3)
    for _ in range(steps):
        spikes, voltage = soft_reset_step(current, voltage, SoftResetParams())
        count += spikes
    assert torch.equal(count, torch.full((2, 3), float(steps * sixteenths // 16)))


def test_spide_reset_rounds_instead_of_flooring() -> None:
    """θ = 1, u_rest = −1 (D = 2): count = round-half-up(t·I/2), the unbiased rate SPIDE relies on."""
    params = SoftResetParams(threshold=1.0, reset_potential=-1.0)
    for charge in (0.25, 0.5, 0.75, 1.25):
        voltage, count = torch.zeros(1), torch.zeros(1)
        for _ in range(20):
            spikes, voltage = soft_reset_step(torch.tensor([charge]), voltage, params)
            count += spikes
        assert int(count) == int(np.floor(20 * charge / 2 + 0.5))
