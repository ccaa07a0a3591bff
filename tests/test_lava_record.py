"""Recording any population's spikes, voltage and CUBA current through Lava (fused and plain graphs, float and
fixed point): the traces must equal the reference simulator's records step for step."""

from __future__ import annotations

import numpy as np
import pytest

from lavaflow.deploy.quantize import quantize
from lavaflow.models.errors import NetSpecError
from lavaflow.models.netspec import Connection, CubaNeurons, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import run_lava

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only


def _spec(seed: int, kind: str) -> NetSpec:
    """Input → hidden ⇄ out with random weights: dense input, feedback from out to hidden, soft-reset or CUBA."""
    rng = np.random.default_rng(seed)
    n_in, hidden, out = 5, 7, 4

    def neurons(size: int) -> SoftResetNeurons | CubaNeurons:
        threshold = float(rng.choice([0.5, 1.0]))
        bias = rng.normal(0.0, 0.05, size)
        if kind == "cuba":
            return CubaNeurons(bias, threshold, current_decay=float(rng.choice([1.0, 0.5])), voltage_decay=0.1)
        return SoftResetNeurons(bias, threshold, reset_potential=float(rng.choice([0.0, -threshold])))

    connections = (
        Connection("input", "hidden", Dense(rng.normal(0.0, 0.8, (hidden, n_in))), 0),
        Connection("hidden", "out", Dense(rng.normal(0.0, 0.8, (out, hidden))), 1),
        Connection("out", "hidden", Dense(rng.normal(0.0, 0.5, (hidden, out))), 1),
    )
    readout = Readout("out", rng.normal(0.0, 1.0, (3, out)), rng.normal(0.0, 0.1, 3), 0.0)
    return NetSpec(Input((n_in,), "current"), {"hidden": neurons(hidden), "out": neurons(out)}, connections, readout, 9)


def _names(spec: NetSpec, kind: str) -> list[str]:
    variables = ("spikes", "v", "u") if kind == "cuba" else ("spikes", "v")
    return [f"{population}.{variable}" for population in spec.populations for variable in variables]


@LAVA_TIMEOUT
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain"])
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
@pytest.mark.parametrize("kind", ["soft", "cuba"])
def test_records_equal_reference(kind: str, backend: str, fused: bool) -> None:
    spec = _spec(11, kind)
    inputs = np.broadcast_to(np.random.default_rng(4).random((3, 5)), (spec.time_steps, 3, 5)).copy()
    names = _names(spec, kind)
    simulated = quantize(spec)[0] if backend == "lava-fixed" else spec
    reference = simulate(simulated, inputs, record=names)
    result = run_lava(spec, inputs, backend=backend, fused=fused, batch_size=2, record=names, timeout_s=300)
    assert sorted(result.records) == sorted(names)
    assert any(reference.records[name].any() for name in names if name.endswith(".spikes"))  # not a silent net
    for name in names:
        expected = reference.records[name].transpose(1, 0, 2)  # (T, N, n) → (N, T, n)
        got = result.records[name]
        assert got.shape == expected.shape == (3, spec.time_steps, spec.populations[name.split(".")[0]].size)
        assert got.dtype == expected.dtype, name
        if backend == "lava-fixed" or name.endswith(".spikes"):
            np.testing.assert_array_equal(got, expected, err_msg=name)
        else:
            np.testing.assert_allclose(got, expected, rtol=0.0, atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(result.counts["out"], reference.counts["out"])


@pytest.mark.parametrize("name", ["nope.v", "hidden.w", "hidden.u", "hidden"])
def test_unknown_record_name_refused(name: str) -> None:
    spec = _spec(2, "soft")
    inputs = np.zeros((spec.time_steps, 1, 5))
    with pytest.raises(NetSpecError, match=r"cannot record .*hidden\.spikes.*hidden\.v"):
        run_lava(spec, inputs, backend="lava-float", record=[name])
