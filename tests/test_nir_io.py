"""NIR import and export (deploy.nir_graph): graphs built with the ``nir`` package, read with a time step dt, run by
our reference simulator and our Lava graph in float and (after quantisation) fixed point, equal step for step to
Lava's standard LIFReset and Dense processes configured by hand from the NIR constants; where Lava has no standard
process (reset by subtraction, a reset or leak potential), equal to a numpy forward-Euler loop of the NIR ODE.
Round trips write → read give the same NetSpec; bad graphs raise NetSpecError naming the node."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as functional
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense as LavaDense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIFReset
from lava.proc.monitor.process import Monitor

from lavaflow.deploy.nir_graph import read_nir, to_nir, write_nir
from lavaflow.deploy.quantize import dequantize, quantize
from lavaflow.models.errors import NetSpecError
from lavaflow.models.fixed import FixedNetSpec
from lavaflow.models.kinds.cuba import CubaNeurons
from lavaflow.models.kinds.li import LeakyIntegrator
from lavaflow.models.kinds.lif_potential import PotentialLIFNeurons
from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons, Sparse
from lavaflow.models.reference import simulate
from lavaflow.pipeline.lava.run import run_lava
from lavaflow.pipeline.lava.session import run_and_read

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from spec_helpers import assert_specs_close

LAVA_TIMEOUT = pytest.mark.timeout(600)  # catches hangs only
DT = 1e-3
STEPS = 10
TAGS = {"lava-float": "floating_pt", "lava-fixed": "fixed_pt"}
RESET_STEP = 2  # Lava step at which LIFReset zeroes u and v: see _lava_standard


def _vec(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


def _spikes(seed: int, size: int | tuple[int, ...], rate: float = 0.5) -> np.ndarray:
    """(T, 1, *shape) 0/1 input spikes, one sample."""
    shape = (size,) if isinstance(size, int) else size
    return (np.random.default_rng(seed).random((STEPS, 1, *shape)) < rate).astype(np.float64)


# ------------------------------------------------------------------------------------------ Lava's own processes
@dataclasses.dataclass
class _Layer:
    """One LIFReset population configured by hand: Lava's du, dv, vth and bias."""

    size: int
    du: float
    dv: float
    vth: float
    bias_mant: np.ndarray
    bias_exp: int = 0


@dataclasses.dataclass
class _Projection:
    source: str  # "input" or a layer name
    target: str
    weights: np.ndarray
    weight_exp: int = 0


def _lava_standard(
    layers: dict[str, _Layer], projections: list[_Projection], inputs: np.ndarray, backend: str
) -> dict[str, np.ndarray]:
    """Run Lava's LIFReset + Dense graph on one sample (T, n_in); return {"name.v"/"name.spikes": (T, n)}.

    Lava's Dense delivers the previous step's input, while a NetSpec's input reaches the first layer in the same step.
    So the source holds x[t] at Lava step t + 1, every LIFReset zeroes u and v at step 2 (before integrating it), and
    Lava's steps 2..T+1 are our steps 1..T; step 1 integrates only the bias, which must not fire (checked).
    """
    fixed = backend == "lava-fixed"
    time_steps = inputs.shape[0]
    data = np.concatenate([inputs.T, np.zeros((inputs.shape[1], 1))], axis=1)
    source = RingBuffer(data=data.astype(np.int32) if fixed else data)
    neurons = {
        name: LIFReset(
            shape=(layer.size,), du=layer.du, dv=layer.dv, vth=layer.vth, bias_mant=layer.bias_mant,
            bias_exp=layer.bias_exp, reset_interval=10_000, reset_offset=RESET_STEP,
        )
        for name, layer in layers.items()
    }
    for projection in projections:
        weights = projection.weights.astype(np.int32) if fixed else projection.weights
        dense = LavaDense(weights=weights, weight_exp=projection.weight_exp, num_message_bits=0)
        sender = source if projection.source == "input" else neurons[projection.source]
        sender.s_out.connect(dense.s_in)
        dense.a_out.connect(neurons[projection.target].a_in)
    monitors = {}
    for name, lif in neurons.items():
        for variable, target in (("v", lif.v), ("spikes", lif.s_out)):
            monitor = Monitor()
            monitor.probe(target, time_steps + 1)
            monitors[f"{name}.{variable}"] = (monitor, lif.name, "v" if variable == "v" else "s_out")

    def read() -> dict[str, np.ndarray]:
        return {key: np.asarray(m.get_data()[proc][var]) for key, (m, proc, var) in monitors.items()}

    config = Loihi2SimCfg(select_tag=TAGS[backend], loglevel=logging.WARNING)
    traces = run_and_read(source, time_steps + 1, config, read, timeout_s=120).value
    for name in layers:
        assert not traces[f"{name}.spikes"][0].any(), "a bias alone fired at Lava's step 1: lower it"
    return {key: values[1:].reshape(time_steps, -1) for key, values in traces.items()}


def _ours(spec: NetSpec | FixedNetSpec, inputs: np.ndarray, names: list[str], backend: str) -> list[dict]:
    """Our reference simulator and our Lava runs (fused model, plain Dense + neuron graph) of the same spec:
    {"name.v"/"name.spikes": (T, n)} each."""
    record = [f"{n}.{v}" for n in names for v in ("v", "spikes")]
    reference = simulate(spec, inputs, record=record)
    results = [{key: reference.records[key][:, 0] for key in record}]
    for fused in (True, False):
        lava = run_lava(spec, inputs, backend=backend, fused=fused, batch_size=1, record=record)
        results.append({key: lava.records[key][0] for key in record})
    return results


def _assert_traces_equal(expected: dict, results: list[dict], fixed: bool) -> None:
    for result in results:
        for key, values in expected.items():
            if fixed or key.endswith(".spikes"):
                np.testing.assert_array_equal(result[key], values, err_msg=key)
            else:
                np.testing.assert_allclose(result[key], values, rtol=0, atol=1e-9, err_msg=key)


def _fixed_layer(fixed: FixedNetSpec, name: str, du: int) -> _Layer:
    """A fixed-point LIFReset configured with the population's integers (du given, checked against the NIR τ)."""
    population = fixed.populations[name]
    assert population.v_reset == 0 and population.leak == 0  # Lava's LIF: reset to 0, no leak potential
    return _Layer(population.size, du, population.dv, population.vth, population.bias_mant, population.bias_exp)


def _fixed_projections(fixed: FixedNetSpec, dense: dict[int, np.ndarray] | None = None) -> list[_Projection]:
    """Dense projections with the quantised integer weights (conv kernels multiplied out where ``dense`` says)."""
    return [
        _Projection(c.source, c.target, c.weight if dense is None or i not in dense else dense[i], c.weight_exp)
        for i, c in enumerate(fixed.connections)
    ]


# ------------------------------------------------------------------------------------------ feedforward LIF
TAU, R, THRESHOLD = 4e-3, 2.0, 1.0  # dv = dt/τ = 0.25, gain = R·dt/τ = 0.5


def _feedforward() -> tuple[nir.NIRGraph, dict]:
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(0.8, 0.8, (6, 4)), rng.uniform(0.0, 0.4, 6)
    w2, b2 = rng.normal(0.6, 0.8, (3, 6)), rng.uniform(0.0, 0.4, 3)
    lif = {"tau": TAU, "r": R, "v_leak": 0.0, "v_threshold": THRESHOLD, "v_reset": 0.0}
    nodes = {
        "input": nir.Input(np.array([4])),
        "fc1": nir.Affine(weight=w1, bias=b1),
        "lif1": nir.LIF(**{k: _vec(6, v) for k, v in lif.items()}),
        "fc2": nir.Affine(weight=w2, bias=b2),
        "lif2": nir.LIF(**{k: _vec(3, v) for k, v in lif.items()}),
        "output": nir.Output(np.array([3])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges), {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_feedforward_lif_equals_lavas_lif_and_dense(backend: str) -> None:
    graph, p = _feedforward()
    spec = read_nir(graph, dt=DT, time_steps=STEPS).spec
    inputs = _spikes(2, 4)
    decay, gain = DT / TAU, R * DT / TAU
    if backend == "lava-float":
        layers = {  # by hand: du = 1 (no synaptic current), dv = dt/τ, vth = v_threshold, bias = gain·b, W = gain·W
            "lif1": _Layer(6, 1.0, decay, THRESHOLD, gain * p["b1"]),
            "lif2": _Layer(3, 1.0, decay, THRESHOLD, gain * p["b2"]),
        }
        projections = [_Projection("input", "lif1", gain * p["w1"]), _Projection("lif1", "lif2", gain * p["w2"])]
        simulated = spec
    else:
        simulated, _ = quantize(spec)
        for name in ("lif1", "lif2"):
            assert simulated.populations[name].dv == round(4096 * decay)  # Lava's 12-bit dv of dt/τ
            assert simulated.populations[name].vth * simulated.populations[name].scale == pytest.approx(
                THRESHOLD, rel=1e-2
            )
        restored = dequantize(simulated)  # the integers stand for gain·W, gain·b
        for connection, weight in zip(restored.connections, (p["w1"], p["w2"]), strict=True):
            np.testing.assert_allclose(connection.synapse.weight, gain * weight, rtol=0, atol=0.01)
        np.testing.assert_allclose(restored.populations["lif1"].bias, gain * p["b1"], rtol=0, atol=0.01)
        layers = {name: _fixed_layer(simulated, name, du=4095) for name in ("lif1", "lif2")}
        projections = _fixed_projections(simulated)
    expected = _lava_standard(layers, projections, inputs[:, 0], backend)
    _assert_traces_equal(expected, _ours(simulated, inputs, ["lif1", "lif2"], backend), backend == "lava-fixed")
    assert expected["lif1.spikes"].sum() > 3 and expected["lif2.spikes"].sum() > 0


# ------------------------------------------------------------------------------------------ CubaLIF, recurrent
TAU_SYN, TAU_MEM, W_IN, V_LEAK = 2e-3, 4e-3, 1.5, 0.4  # du = 0.5, dv = 0.25


def _recurrent() -> tuple[nir.NIRGraph, dict]:
    """input → Linear → a nested subgraph holding CubaLIF with a recurrent Affine (as snnTorch's RSynaptic) → out."""
    rng = np.random.default_rng(3)
    w_in, w_rec = rng.normal(1.2, 1.0, (5, 3)), rng.normal(0.0, 0.8, (5, 5))
    cuba = {"tau_syn": TAU_SYN, "tau_mem": TAU_MEM, "r": R, "v_leak": V_LEAK, "v_threshold": THRESHOLD,
            "v_reset": 0.0, "w_in": W_IN}
    inner = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([5])),
            "lif": nir.CubaLIF(**{k: _vec(5, v) for k, v in cuba.items()}),
            "w_rec": nir.Affine(weight=w_rec, bias=np.zeros(5)),
            "output": nir.Output(np.array([5])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])), "w_in": nir.Linear(weight=w_in), "rsyn": inner,
               "output": nir.Output(np.array([5]))},
        edges=[("input", "w_in"), ("w_in", "rsyn"), ("rsyn", "output")],
        type_check=False,
    )
    return graph, {"w_in": w_in, "w_rec": w_rec}


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_cuba_lif_with_a_recurrent_affine_equals_lavas_lif_and_dense(backend: str) -> None:
    graph, p = _recurrent()
    imported = read_nir(graph, dt=DT, time_steps=STEPS)
    spec, name = imported.spec, "rsyn.lif"
    assert list(spec.populations) == [name] and imported.neuron_model == "CubaLIF"
    inputs = _spikes(4, 3)
    du, dv = DT / TAU_SYN, DT / TAU_MEM
    gain = W_IN * du * R * dv  # u is R·dt/τ_mem·I in voltage units; I gains dt/τ_syn·w_in per input
    if backend == "lava-float":
        layers = {name: _Layer(5, du, dv, THRESHOLD, _vec(5, dv * V_LEAK))}  # v_leak: a constant dv·v_leak per step
        projections = [_Projection("input", name, gain * p["w_in"]), _Projection(name, name, gain * p["w_rec"])]
        simulated = spec
    else:
        simulated, _ = quantize(spec)
        population = simulated.populations[name]
        assert population.du + 1 == round(4096 * du) and population.dv == round(4096 * dv)
        layers = {name: _fixed_layer(simulated, name, du=population.du)}
        projections = _fixed_projections(simulated)
    expected = _lava_standard(layers, projections, inputs[:, 0], backend)
    _assert_traces_equal(expected, _ours(simulated, inputs, [name], backend), backend == "lava-fixed")
    assert 0 < expected[f"{name}.spikes"].sum() < expected[f"{name}.spikes"].size
    assert spec.readout.source == name and spec.readout.quantity == "rate"


# ------------------------------------------------------------------------------------------ reset, leak potential
def _euler_lif(graph: nir.NIRGraph, inputs: np.ndarray, subtract: bool) -> tuple[np.ndarray, np.ndarray]:
    """Forward Euler of τ dv/dt = (v_leak − v) + R·(W x + b) with step dt; fire at v > θ; reset or subtract."""
    fc, lif = graph.nodes["fc"], graph.nodes["lif"]
    v = np.zeros(fc.weight.shape[0])
    voltages, spikes = [], []
    for x in inputs:
        current = fc.weight @ x + fc.bias
        v = v + DT / lif.tau * (lif.v_leak - v + lif.r * current)
        fired = v > lif.v_threshold
        if subtract:
            v = np.where(fired, v - (lif.v_threshold - lif.v_reset), v)
        else:
            v = np.where(fired, lif.v_reset, v)
        voltages.append(v.copy())
        spikes.append(fired.astype(np.uint8))
    return np.array(voltages), np.array(spikes)


def _single_lif(mode: str) -> nir.NIRGraph:
    rng = np.random.default_rng(5)
    n = 6
    v_leak = _vec(n, 0.2) if mode == "subtract" else rng.uniform(-0.2, 0.4, n)  # per neuron: folded into the bias
    lif = nir.LIF(
        tau=_vec(n, TAU), r=rng.uniform(1.0, 3.0, n), v_leak=v_leak, v_threshold=_vec(n, THRESHOLD),
        v_reset=_vec(n, -0.3), metadata={"reset_mode": mode},
    )
    nodes = {"input": nir.Input(np.array([4])), "fc": nir.Affine(weight=rng.normal(1.0, 0.8, (n, 4)),
             bias=rng.normal(0.0, 0.2, n)), "lif": lif, "output": nir.Output(np.array([n]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])


@LAVA_TIMEOUT
@pytest.mark.parametrize("mode", ["zero", "subtract"])
def test_lif_reset_and_leak_potentials_equal_a_forward_euler_loop(mode: str) -> None:
    graph = _single_lif(mode)
    imported = read_nir(graph, dt=DT, time_steps=STEPS)
    assert imported.reset_mode == mode
    inputs = _spikes(6, 4, rate=0.6)
    voltages, spikes = _euler_lif(graph, inputs[:, 0], subtract=mode == "subtract")
    expected = {"lif.v": voltages, "lif.spikes": spikes}
    _assert_traces_equal(expected, _ours(imported.spec, inputs, ["lif"], "lava-float"), fixed=False)
    assert 0 < spikes.sum() < spikes.size
    assert np.any(voltages < 0)  # the reset potential is visited
    fixed, _ = quantize(imported.spec)
    reference, *lava = _ours(fixed, inputs, ["lif"], "lava-fixed")
    _assert_traces_equal(reference, lava, fixed=True)


# ------------------------------------------------------------------------------------------ conv, pool, flatten
def _conv_net() -> tuple[nir.NIRGraph, dict]:
    """(1, 6, 6) → Conv2d 3×3 → LIF (2, 4, 4) → SumPool2d 2×2 → LIF (2, 2, 2) → Flatten → Affine → LIF (3)."""
    rng = np.random.default_rng(7)
    kernel, kernel_bias = rng.normal(0.5, 0.6, (2, 1, 3, 3)), np.array([0.1, -0.05])
    fc, fc_bias = rng.normal(0.8, 0.8, (3, 8)), rng.uniform(0.0, 0.2, 3)

    def lif(shape: tuple[int, ...], threshold: float) -> nir.LIF:
        values = {"tau": TAU, "r": R, "v_leak": 0.0, "v_threshold": threshold, "v_reset": 0.0}
        return nir.LIF(**{k: np.full(shape, v) for k, v in values.items()})

    nodes = {
        "input": nir.Input(np.array([1, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=kernel, stride=1, padding=0, dilation=1, groups=1,
                           bias=kernel_bias),
        "lif_c": lif((2, 4, 4), THRESHOLD),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "lif_p": lif((2, 2, 2), 0.6),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        "fc": nir.Affine(weight=fc, bias=fc_bias),
        "lif_o": lif((3,), THRESHOLD),
        "output": nir.Output(np.array([3])),
    }
    chain = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(chain)), type_check=False)
    return graph, {"kernel": kernel, "kernel_bias": kernel_bias, "fc": fc, "fc_bias": fc_bias}


def _conv_matrix(kernel: np.ndarray, in_shape: tuple[int, int, int], groups: int = 1, stride: int = 1) -> np.ndarray:
    """The (n_out, n_in) matrix of torch's conv2d on (C, H, W) inputs flattened row-major: torch's own layout."""
    basis = torch.eye(int(np.prod(in_shape)), dtype=torch.float64).reshape(-1, *in_shape)
    out = functional.conv2d(basis, torch.from_numpy(kernel.astype(np.float64)), stride=stride, groups=groups)
    return out.reshape(basis.shape[0], -1).T.numpy()


def _sum_pool_matrix(in_shape: tuple[int, int, int]) -> np.ndarray:
    """2×2 sum pooling, stride 2, as torch's avg_pool2d × 4 on the identity basis."""
    basis = torch.eye(int(np.prod(in_shape)), dtype=torch.float64).reshape(-1, *in_shape)
    return (functional.avg_pool2d(basis, 2) * 4).reshape(basis.shape[0], -1).T.numpy()


@LAVA_TIMEOUT
@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_conv_pool_flatten_net_equals_lavas_lif_and_dense(backend: str) -> None:
    graph, p = _conv_net()
    spec = read_nir(graph, dt=DT, time_steps=STEPS).spec
    assert [c.synapse.__class__.__name__ for c in spec.connections] == ["Conv", "Conv", "Dense"]
    assert spec.populations["lif_c"].shape == (2, 4, 4)
    inputs = _spikes(8, (1, 6, 6), rate=0.6)
    decay, gain = DT / TAU, R * DT / TAU
    names = ["lif_c", "lif_p", "lif_o"]
    if backend == "lava-float":
        conv_bias = np.repeat(p["kernel_bias"], 16)  # per channel, C-major like the neurons
        layers = {
            "lif_c": _Layer(32, 1.0, decay, THRESHOLD, gain * conv_bias),
            "lif_p": _Layer(8, 1.0, decay, 0.6, np.zeros(8)),
            "lif_o": _Layer(3, 1.0, decay, THRESHOLD, gain * p["fc_bias"]),
        }
        projections = [
            _Projection("input", "lif_c", gain * _conv_matrix(p["kernel"], (1, 6, 6))),
            _Projection("lif_c", "lif_p", gain * _sum_pool_matrix((2, 4, 4))),
            _Projection("lif_p", "lif_o", gain * p["fc"]),
        ]
        simulated = spec
    else:
        simulated, _ = quantize(spec)
        layers = {name: _fixed_layer(simulated, name, du=4095) for name in names}
        conv, pool = simulated.connections[0], simulated.connections[1]
        dense = {
            0: np.rint(_conv_matrix(conv.weight, (1, 6, 6))),
            1: np.rint(_conv_matrix(pool.weight, (2, 4, 4), groups=2, stride=2)),
        }
        projections = _fixed_projections(simulated, dense)
    expected = _lava_standard(layers, projections, inputs[:, 0].reshape(STEPS, -1), backend)
    _assert_traces_equal(expected, _ours(simulated, inputs, names, backend), backend == "lava-fixed")
    assert all(expected[f"{n}.spikes"].sum() > 0 for n in names)


def _euler_chain(drive: np.ndarray, lif: nir.LIF) -> tuple[np.ndarray, np.ndarray]:
    """Forward Euler of a LIF node (v_leak 0, reset to 0) driven by the currents ``drive`` (T, n)."""
    v, voltages, spikes = np.zeros(drive.shape[1]), [], []
    for current in drive:
        v = v + DT / lif.tau.reshape(-1) * (-v + lif.r.reshape(-1) * current)
        fired = v > lif.v_threshold.reshape(-1)
        v = np.where(fired, 0.0, v)
        voltages.append(v.copy())
        spikes.append(fired.astype(np.uint8))
    return np.array(voltages), np.array(spikes)


def _plain_lif(shape: tuple[int, ...], threshold: float = THRESHOLD) -> nir.LIF:
    values = {"tau": TAU, "r": R, "v_leak": 0.0, "v_threshold": threshold, "v_reset": 0.0}
    return nir.LIF(**{k: np.full(shape, v) for k, v in values.items()})


def test_a_chain_of_linear_nodes_is_multiplied_out_into_one_dense() -> None:
    """AvgPool2d → Scale → Flatten → Affine between the input and a LIF: one Dense, checked against torch."""
    rng = np.random.default_rng(11)
    scale, weight, bias = rng.uniform(0.5, 2.0, (2, 2, 2)), rng.normal(0.5, 0.5, (4, 8)), rng.normal(0, 0.1, 4)
    nodes = {
        "input": nir.Input(np.array([2, 4, 4])),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "scale": nir.Scale(scale=scale),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        "fc": nir.Affine(weight=weight, bias=bias),
        "lif": _plain_lif((4,)),
        "output": nir.Output(np.array([4])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(nodes)), type_check=False)
    spec = read_nir(graph, dt=DT, time_steps=STEPS).spec
    assert len(spec.connections) == 1 and isinstance(spec.connections[0].synapse, Dense)
    inputs = _spikes(12, (2, 4, 4), rate=0.7)
    pooled = functional.avg_pool2d(torch.from_numpy(inputs[:, 0]), 2).numpy() * scale
    voltages, spikes = _euler_chain(pooled.reshape(STEPS, -1) @ weight.T + bias, nodes["lif"])
    result = simulate(spec, inputs, record=["lif.v", "lif.spikes"])
    np.testing.assert_allclose(result.records["lif.v"][:, 0], voltages, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.records["lif.spikes"][:, 0], spikes)
    assert 0 < spikes.sum() < spikes.size


def test_if_integrates_dt_times_r_times_its_input() -> None:
    rng = np.random.default_rng(15)
    weight, r = rng.normal(0.5, 0.5, (4, 3)), rng.uniform(200.0, 600.0, 4)  # dt·R ≈ 0.2 … 0.6
    nodes = {
        "input": nir.Input(np.array([3])),
        "fc": nir.Linear(weight=weight),
        "if": nir.IF(r=r, v_threshold=_vec(4, THRESHOLD), v_reset=_vec(4, 0.0)),
        "output": nir.Output(np.array([4])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(nodes)), type_check=False)
    spec = read_nir(graph, dt=DT, time_steps=STEPS).spec
    inputs = _spikes(16, 3, rate=0.7)
    v, voltages, spikes = np.zeros(4), [], []
    for x in inputs[:, 0]:
        v = v + DT * r * (weight @ x)
        fired = v > THRESHOLD
        v = np.where(fired, 0.0, v)
        voltages.append(v.copy())
        spikes.append(fired.astype(np.uint8))
    result = simulate(spec, inputs, record=["if.v", "if.spikes"])
    np.testing.assert_allclose(result.records["if.v"][:, 0], np.array(voltages), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.records["if.spikes"][:, 0], np.array(spikes))
    assert 0 < np.sum(spikes) < np.size(spikes)


def test_conv1d_reads_as_a_conv_over_one_row() -> None:
    rng = np.random.default_rng(13)
    kernel, bias = rng.normal(0.6, 0.6, (3, 2, 3)), np.array([0.05, 0.0, -0.05])
    nodes = {
        "input": nir.Input(np.array([2, 8])),
        "conv": nir.Conv1d(input_shape=8, weight=kernel, stride=1, padding=1, dilation=1, groups=1, bias=bias),
        "lif": _plain_lif((3, 8)),
        "output": nir.Output(np.array([3, 8])),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(nodes)), type_check=False)
    spec = read_nir(graph, dt=DT, time_steps=STEPS).spec
    assert spec.populations["lif"].shape == (3, 1, 8)
    inputs = _spikes(14, (2, 8), rate=0.6)
    drive = functional.conv1d(torch.from_numpy(inputs[:, 0]), torch.from_numpy(kernel), torch.from_numpy(bias),
                              padding=1).numpy()
    voltages, spikes = _euler_chain(drive.reshape(STEPS, -1), nodes["lif"])
    result = simulate(spec, inputs, record=["lif.v", "lif.spikes"])
    np.testing.assert_allclose(result.records["lif.v"][:, 0], voltages, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.records["lif.spikes"][:, 0], spikes)
    assert 0 < spikes.sum() < spikes.size


# ------------------------------------------------------------------------------------------ round trips
def _assert_same_spec(a: NetSpec, b: NetSpec) -> None:
    """Same structure; arrays and reals equal to float precision (dt/τ is rounded on the way)."""
    assert_specs_close(a, b, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("build", [_feedforward, _recurrent, _conv_net, lambda: (_single_lif("subtract"), {})],
                         ids=["feedforward", "recurrent", "conv", "subtract"])
def test_export_then_import_gives_the_same_netspec(build, tmp_path) -> None:
    graph, _ = build()
    spec = read_nir(graph, dt=DT, time_steps=STEPS).spec
    nir.write(tmp_path / "theirs.nir", graph)  # the graph as its tool would ship it, nested subgraphs included
    _assert_same_spec(spec, read_nir(tmp_path / "theirs.nir", dt=DT, time_steps=STEPS).spec)
    path = tmp_path / "net.nir"
    write_nir(spec, path, dt=DT)
    _assert_same_spec(spec, read_nir(path, dt=DT, time_steps=STEPS).spec)
    _assert_same_spec(spec, read_nir(str(path), dt=DT, time_steps=STEPS).spec)


def _native_spec() -> NetSpec:
    """A NetSpec made here: CUBA hidden layer with a bias, a subtracting LIF fed through a Scale, an IF, LI readout."""
    rng = np.random.default_rng(9)
    populations = {
        "h": CubaNeurons(rng.normal(0.0, 0.1, 5), 1.0, current_decay=0.5, voltage_decay=0.25),
        "s": PotentialLIFNeurons(np.zeros(5), 0.8, 0.125, 0.1, -0.2, "subtract"),  # a Scale carries no bias
        "i": PotentialLIFNeurons(rng.normal(0.0, 0.1, 5), 1.5, 0.0, 0.0, 0.0, "reset"),
        "o": LeakyIntegrator(rng.normal(0.0, 0.1, 2), current_decay=0.5, voltage_decay=0.125),
    }
    connections = (
        Connection(INPUT, "h", Dense(rng.normal(0.5, 0.5, (5, 4))), 0),
        Connection("h", "s", Sparse(rng.normal(1.0, 0.1, 5), np.arange(5), np.arange(5), (5, 5)), 1),
        Connection("s", "i", Dense(rng.normal(0.5, 0.5, (5, 5))), 2),
        Connection("h", "h", Dense(rng.normal(0.0, 0.3, (5, 5))), 1),
        Connection("i", "o", Dense(rng.normal(0.0, 0.5, (2, 5))), 1),
    )
    readout = Readout("o", np.eye(2), np.zeros(2), quantity="potential")
    return NetSpec(Input((4,), "current"), populations, connections, readout, 7, {"method": "bptt", "data": "x"})


def test_a_lavaflow_netspec_round_trips_through_a_file(tmp_path) -> None:
    spec = _native_spec()
    with pytest.raises(NetSpecError, match="delay"):  # NIR edges carry no delay
        write_nir(spec, tmp_path / "net.nir", dt=DT)
    connections = tuple(dataclasses.replace(c, delay_steps=min(c.delay_steps, 1)) for c in spec.connections)
    spec = dataclasses.replace(spec, connections=connections)
    write_nir(spec, tmp_path / "net.nir", dt=DT)
    imported = read_nir(tmp_path / "net.nir", dt=DT, time_steps=7)
    _assert_same_spec(spec, imported.spec)
    assert imported.neuron_model == "CubaLIF+LIF+IF+CubaLI" and imported.reset_mode == "mixed"
    graph = to_nir(spec, dt=DT)
    assert isinstance(graph.nodes["o"], nir.CubaLI) and isinstance(graph.nodes["conn1"], nir.Scale)
    assert isinstance(graph.nodes["i"], nir.IF) and graph.nodes["s"].metadata == {"reset_mode": "subtract"}


# ------------------------------------------------------------------------------------------ bad graphs
def _replace(graph: nir.NIRGraph, **nodes: object) -> nir.NIRGraph:
    return nir.NIRGraph(nodes={**graph.nodes, **nodes}, edges=list(graph.edges), type_check=False)


def test_bad_graphs_name_the_node_and_the_fix(tmp_path) -> None:
    graph, p = _feedforward()
    cases = {
        "fc1.*Threshold.*not import": _replace(graph, fc1=nir.Threshold(threshold=np.ones(6))),
        "fc2.*takes 5 inputs": _replace(graph, fc2=nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))),
        "fc1.*weight holds 1 NaN": _replace(graph, fc1=nir.Affine(weight=np.where(p["w1"] == p["w1"][0, 0], np.nan,
                                                                                  p["w1"]), bias=p["b1"])),
        "lif1.*dt .* longer than tau": _replace(graph, lif1=nir.LIF(**{k: _vec(6, v) for k, v in {
            "tau": 5e-4, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0}.items()})),
        "lif2.*tau differs between neurons": _replace(graph, lif2=nir.LIF(
            tau=np.array([4e-3, 4e-3, 5e-3]), r=_vec(3, 1), v_leak=_vec(3, 0), v_threshold=_vec(3, 1),
            v_reset=_vec(3, 0))),
    }
    for pattern, bad in cases.items():
        with pytest.raises(NetSpecError, match=pattern):
            read_nir(bad, dt=DT)
    recurrent, _ = _recurrent()
    recurrent.nodes["rsyn"].nodes["w_rec"].bias[:] = 0.1
    with pytest.raises(NetSpecError, match=r"rsyn\.lif.*bias through its synaptic current"):
        read_nir(recurrent, dt=DT)
    read_nir(recurrent, dt=TAU_SYN)  # exact where dt = τ_syn: no synaptic memory
    li = _replace(graph, lif1=nir.LI(tau=_vec(6, TAU), r=_vec(6, 1), v_leak=_vec(6, 0)))
    with pytest.raises(NetSpecError, match=r"lif1.*never spikes"):
        read_nir(li, dt=DT)
    not_nir = tmp_path / "net.nir"
    not_nir.write_bytes(b"not an HDF5 file")
    with pytest.raises(NetSpecError, match="not a readable NIR graph"):
        read_nir(not_nir, dt=DT)
    with pytest.raises(NetSpecError, match="dt must be positive"):
        read_nir(graph, dt=0.0)


def test_li_output_is_read_as_its_potential() -> None:
    graph, _ = _feedforward()
    li = nir.LI(tau=_vec(3, TAU), r=_vec(3, R), v_leak=_vec(3, 0.0))
    spec = read_nir(_replace(graph, lif2=li), dt=DT, time_steps=STEPS).spec
    assert isinstance(spec.populations["lif2"], LeakyIntegrator) and spec.readout.quantity == "potential"
    inputs = _spikes(2, 4)
    result = simulate(spec, inputs, record=["lif2.v"])
    np.testing.assert_allclose(result.logits, result.records["lif2.v"][-1], rtol=0, atol=1e-12)


def test_write_refuses_kinds_without_a_nir_counterpart_and_writes_nothing(tmp_path) -> None:
    spec = _native_spec()
    populations = {**spec.populations, "s": SoftResetNeurons(np.zeros(5), 1.0)}
    connections = tuple(dataclasses.replace(c, delay_steps=min(c.delay_steps, 1)) for c in spec.connections)
    bad = dataclasses.replace(spec, populations=populations, connections=connections)
    path = tmp_path / "net.nir"
    with pytest.raises(NetSpecError, match="population 's' is of kind 'soft_reset'"):
        write_nir(bad, path, dt=DT)
    assert not path.exists() and not list(tmp_path.iterdir())
