"""Hybrid conversion + STDB (pipeline.stdb, models.vgg): threshold balancing against a recount from the reference
simulator's recorded spikes, the STDB surrogate and its Δt bookkeeping against hand-computed values, the converted
net against its ANN within a derived bound, the NetSpec against the torch SNN (and Lava float), the pool folds
against pool-then-layer, and resuming the stages in one run dir."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as functional

from lavaflow.models.errors import ConfigError
from lavaflow.models.reference import simulate
from lavaflow.models.vgg import (
    LayerState,
    SNNNeuron,
    VGGArchitecture,
    VGGTwins,
    fold_pool_into_conv,
    fold_pool_into_dense,
    spiking_step,
)
from lavaflow.pipeline import stdb
from lavaflow.pipeline.config import TrainConfig
from lavaflow.pipeline.rundir import RunDir

TINY = VGGArchitecture((3, "A", 4, "A"), (5,), conv_dropout=0.0, classifier_dropout=0.0)  # 8×8 → 4×4 → 2×2


def twins(kind: str = "soft_reset", architecture: VGGArchitecture = TINY, seed: int = 0,
          leak: float = 1.0) -> VGGTwins:
    """A float64 eval-mode twin whose weights are large enough to make every layer fire."""
    model = VGGTwins(architecture, (1, 8, 8), 10, SNNNeuron(kind, leak), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for linear in (*model.hidden, model.output):
            linear.weight.mul_(30.0)
    return model.double().eval()


def rate_input(time_steps: int, batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, 8, 8, generator=generator, dtype=torch.float64)
    return (torch.rand(time_steps, batch, 1, 8, 8, generator=generator, dtype=torch.float64) < images).double()


# ------------------------------------------------------------------------------------------ folds
def test_pool_folds_equal_pool_then_layer() -> None:
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(3, 4, 8, 8, generator=generator) < 0.4).double()
    kernel = torch.randn(5, 4, 3, 3, generator=generator, dtype=torch.float64)
    expected = functional.conv2d(functional.avg_pool2d(spikes, 2), kernel, padding=1)
    folded, stride, padding = fold_pool_into_conv(kernel.numpy(), (1, 1), 2)
    assert folded.shape == (5, 4, 6, 6) and stride == (2, 2) and padding == (2, 2)
    got = functional.conv2d(spikes, torch.from_numpy(folded), stride=stride, padding=padding)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weight = torch.randn(7, 4 * 4 * 4, generator=generator, dtype=torch.float64)
    expected = functional.avg_pool2d(spikes, 2).flatten(1) @ weight.T
    dense = fold_pool_into_dense(weight.numpy(), (4, 8, 8), 2)
    torch.testing.assert_close(spikes.flatten(1) @ torch.from_numpy(dense).T, expected, rtol=1e-12, atol=1e-12)


def test_odd_pool_is_refused() -> None:
    with pytest.raises(ConfigError, match="even size"):  # 6 → 3, then a pool over 3 rows would drop one
        VGGTwins(VGGArchitecture((3, "A", 4, "A")), (1, 6, 6), 10, SNNNeuron(), torch.Generator())


# ------------------------------------------------------------------------------------------ threshold balancing
def _layer_currents(spec, inputs: np.ndarray, spikes: dict[str, np.ndarray], layer: int) -> np.ndarray:
    """Layer ``layer``'s input current at every step, recomputed from the NetSpec's synapses: the input of step t
    for the first layer, the source's recorded spikes of step t − 1 (zero at t = 0) for the others."""
    connection = spec.connections[layer]
    if layer == 0:
        source = inputs.reshape(inputs.shape[0], inputs.shape[1], -1)
    else:
        recorded = spikes[connection.source].astype(np.float64)
        source = np.concatenate([np.zeros_like(recorded[:1]), recorded[:-1]])
    synapse = connection.synapse
    flat = torch.from_numpy(source.reshape(-1, source.shape[-1]))
    if hasattr(synapse, "input_shape"):
        images = flat.reshape(-1, *synapse.input_shape)
        out = functional.conv2d(images, torch.from_numpy(synapse.weight), stride=synapse.stride,
                                padding=synapse.padding)
    else:
        out = flat @ torch.from_numpy(synapse.weight).T
    return out.reshape(-1).numpy()


@pytest.mark.parametrize(("statistic", "percentile"), [("max", 100.0), ("percentile", 90.0)])
def test_threshold_balancing_sets_the_measured_statistic_times_the_scale(statistic: str, percentile: float) -> None:
    model = twins()
    inputs = rate_input(12, 6)
    scale = 0.7
    found = stdb.balance_thresholds(model, inputs, statistic=statistic, percentile=percentile, scale=scale)
    np.testing.assert_allclose(model.thresholds.numpy(), scale * np.array(found), rtol=1e-15)
    # Recount independently: the reference simulator runs the NetSpec with the unscaled thresholds (what the
    # search saw for the layers before each one), and each layer's currents are rebuilt from recorded spikes.
    with torch.no_grad():
        model.thresholds.copy_(torch.tensor(found, dtype=torch.float64))
    spec = model.to_netspec("rate", 12)
    names = model.layer_names()
    result = simulate(spec, inputs.numpy(), record=[f"{name}.spikes" for name in names])
    spikes = {name: result.records[f"{name}.spikes"] for name in names}
    for layer, name in enumerate(names):
        currents = _layer_currents(spec, inputs.numpy(), spikes, layer)
        positive = currents[currents > 0]
        assert positive.size > 0, f"{name} must receive input for the test to mean anything"
        expected = currents.max() if statistic == "max" else np.percentile(positive, percentile)
        np.testing.assert_allclose(found[layer], expected, rtol=1e-9, err_msg=name)


# ------------------------------------------------------------------------------------------ STDB surrogate
@pytest.mark.parametrize(("kind", "expected_spikes"), [
    ("soft_reset", [0, 1, 0, 0, 1, 1]),  # v: .6, 1.2→.2, .8, .8, 2.0→1.0, 1.3→.3 (fires at v ≥ θ, subtracts θ)
    ("cuba", [0, 1, 0, 0, 1, 0]),  # v: .6, 1.2→0, .6, .6, 1.8→0, .3 (fires at v > θ, resets to 0)
])
def test_stdb_surrogate_and_its_dt_bookkeeping_equal_hand_computed_values(kind: str,
                                                                         expected_spikes: list[int]) -> None:
    threshold, alpha, beta = 2.0, 0.3, 0.01
    currents = [torch.tensor([[2 * c]], dtype=torch.float64, requires_grad=True)
                for c in (0.6, 0.6, 0.6, 0.0, 1.2, 0.3)]  # in units of θ = 2
    weights = [1.0, 2.0, 3.0, 5.0, 7.0, 11.0]
    state = LayerState((1, 1), currents[0].detach(), kind)
    neuron = SNNNeuron(kind, 1.0, alpha, beta)
    spikes, deltas = [], []
    for current in currents:
        deltas.append(float(state.since))
        spikes.append(spiking_step(state, current, threshold, 0.0, neuron))
    assert [int(s) for s in spikes] == expected_spikes
    # Δt: silent for the first two steps (999, 1000), then steps since the last spike.
    assert deltas == [999.0, 1000.0, 1.0, 2.0, 3.0, 1.0]
    sum(w * s for w, s in zip(weights, spikes, strict=True)).sum().backward()
    surrogate = [alpha * math.exp(-beta * d) / threshold for d in deltas]  # ds_t/dv_t
    # IF with a detached reset: v_t = Σ_{τ≤t} I_τ − (reset, no gradient), so dL/dI_τ = Σ_{t≥τ} w_t·g_t; a reset to
    # zero (cuba) also cuts the path from I_τ to every step after a spike at u ≥ τ.
    for tau, current in enumerate(currents):
        expected, alive = 0.0, True
        for t in range(tau, len(currents)):
            if alive:
                expected += weights[t] * surrogate[t]
            if kind == "cuba" and expected_spikes[t]:
                alive = False
        assert current.grad is not None
        np.testing.assert_allclose(float(current.grad), expected, rtol=1e-12, err_msg=f"step {tau}")


def test_voltage_surrogate_reaches_silent_neurons_and_equals_hand_computed_values() -> None:
    """surrogate "voltage" (training from scratch): ds/dv = α·max(0, 1 − |v − θ|/θ)/θ at each step's pre-reset v,
    nonzero for a neuron that never fired, where STDB's is ~1e-5."""
    threshold, alpha = 2.0, 0.3
    fractions = (0.6, 0.6, 0.6, 0.0, 1.2, 0.3)  # currents in units of θ = 2
    currents = [torch.tensor([[2 * c]], dtype=torch.float64, requires_grad=True) for c in fractions]
    weights = [1.0, 2.0, 3.0, 5.0, 7.0, 11.0]
    state = LayerState((1, 1), currents[0].detach(), "soft_reset")
    neuron = SNNNeuron("soft_reset", 1.0, alpha, 0.01, "voltage")
    spikes = [spiking_step(state, current, threshold, 0.0, neuron) for current in currents]
    assert [int(s) for s in spikes] == [0, 1, 0, 0, 1, 1]
    before_reset = [2 * v for v in (0.6, 1.2, 0.8, 0.8, 2.0, 1.3)]  # v/θ before each step's reset (see above)
    surrogate = [alpha * max(0.0, 1 - abs(v - threshold) / threshold) / threshold for v in before_reset]
    assert surrogate[0] > 0.05  # silent so far, and still a gradient
    sum(w * s for w, s in zip(weights, spikes, strict=True)).sum().backward()
    for tau, current in enumerate(currents):
        expected = sum(weights[t] * surrogate[t] for t in range(tau, len(currents)))
        np.testing.assert_allclose(float(current.grad), expected, rtol=1e-12, err_msg=f"step {tau}")
    with pytest.raises(ConfigError, match="surrogate"):
        stdb.STDBConfig(surrogate="sigmoid")


# ------------------------------------------------------------------------------------------ conversion
def test_converted_net_approaches_the_ann_within_the_derived_bound() -> None:
    """One spiking conv layer (pooled) into the output integrator, direct input, θ = the largest input (scale 1).

    With constant input I ≤ θ, an IF neuron that fires at v ≥ θ and subtracts θ spikes c = ⌊n·I/θ⌋ times in n
    steps (0 for I ≤ 0), so θ·c ∈ (n·I − θ, n·I]. The output integrator sees n = T − 1 steps of spikes (one step
    of delay), and the logits are (θ/T)·W_out·pool(c), the ANN's W_out·pool(ReLU(I)); each term differs by less
    than (I + θ)/T ≤ 2θ/T, hence |logit_k − ANN_k| < (2θ/T)·Σ_j |W_out[k, j]|, which shrinks as 1/T.
    """
    model = twins(architecture=VGGArchitecture((4, "A"), (), conv_dropout=0.0, classifier_dropout=0.0))
    images = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    stdb.balance_thresholds(model, images.unsqueeze(0).expand(3, *images.shape), scale=1.0)
    theta = float(model.thresholds[0])
    with torch.no_grad():
        ann = model.ann(images)
        bound_per_class = 2.0 * theta * model.output.weight.abs().sum(1)
        errors = {}
        for steps in (20, 400):
            logits = model(images.unsqueeze(0).expand(steps, *images.shape))
            errors[steps] = (logits - ann).abs()
            assert torch.all(errors[steps] < bound_per_class / steps + 1e-12), steps
    assert errors[400].max() < errors[20].max() / 5  # the error does shrink with T, not only its bound
    assert torch.equal(model(images.unsqueeze(0).expand(400, *images.shape)).argmax(1), ann.argmax(1))


# ------------------------------------------------------------------------------------------ NetSpec parity
@pytest.mark.parametrize("kind", ["soft_reset", "cuba"])
@pytest.mark.parametrize("encoding", ["rate", "current"])
def test_netspec_runs_the_same_spikes_and_logits_as_the_torch_snn(kind: str, encoding: str) -> None:
    model = twins(kind, leak=0.9 if kind == "soft_reset" else 1.0)
    time_steps = 10
    inputs = rate_input(time_steps, 5)
    if encoding == "current":
        inputs = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        inputs = inputs.unsqueeze(0).expand(time_steps, *inputs.shape).contiguous()
    stdb.balance_thresholds(model, inputs, scale=0.6)
    with torch.no_grad():
        torch_result = model.run(inputs, record=True)
    spec = model.to_netspec(encoding, time_steps)
    reference = simulate(spec, inputs.numpy())
    for name, counts in zip(model.layer_names(), torch_result.counts, strict=True):
        assert counts.sum() > 0, f"{name} must fire for the test to mean anything"
        np.testing.assert_array_equal(counts.numpy(), reference.counts[name], err_msg=name)
    np.testing.assert_allclose(torch_result.logits.numpy(), reference.logits, rtol=1e-9, atol=1e-12)


@pytest.mark.timeout(300)  # catches hangs only
@pytest.mark.parametrize(("backend", "fused"), [("lava-float", True), ("lava-float", False), ("lava-fixed", True)])
def test_hybrid_netspec_runs_in_lava_spike_exact(backend: str, fused: bool) -> None:
    """Every population's spikes and the output potential equal the reference's in the same precision (float, or
    the quantised network's integers), through the fused model and the plain graph of Lava Conv/Dense processes."""
    from lavaflow.deploy.quantize import quantize
    from lavaflow.pipeline.lava.run import run_lava

    model = twins()
    inputs = rate_input(8, 3)
    stdb.balance_thresholds(model, inputs, scale=0.6)
    spec = model.to_netspec("rate", 8)
    network = spec if backend == "lava-float" else quantize(spec)[0]
    record = [f"{name}.spikes" for name in model.layer_names()] + ["output.v"]
    reference = simulate(network, inputs.numpy(), record=record)
    result = run_lava(network, inputs.numpy(), backend=backend, fused=fused, batch_size=3 if fused else 1,
                      record=record)
    for name in record:
        expected = reference.records[name].transpose(1, 0, 2)
        if name.endswith(".spikes"):
            assert expected.sum() > 0, f"{name} must fire for the test to mean anything"
            np.testing.assert_array_equal(result.records[name], expected, name)
        else:
            np.testing.assert_allclose(result.records[name], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.logits, reference.logits, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------ energy
def test_energy_counts_fan_out_of_measured_spikes() -> None:
    model = twins()
    spec = model.to_netspec("rate", 4)
    outs = stdb.fan_outs(spec)
    # conv1 is 3×3 "same" on 8×8: a corner pixel reaches 4 output positions, an inner one 9, times 3 channels.
    assert outs[0].reshape(8, 8)[0, 0] == 4 * 3 and outs[0].reshape(8, 8)[3, 3] == 9 * 3
    counts = {name: np.ones(spec.populations[name].size) for name in model.layer_names()}
    events = np.zeros(spec.input.size)
    activity = stdb.energy(spec, counts, events, model.ann_macs())
    expected = sum(float(outs[i].sum()) for i in range(1, len(spec.connections)))
    assert activity["synaptic_operations_per_sample"] == expected
    assert activity["ann_macs_per_sample"] == 8 * 8 * 3 * 9 + 4 * 4 * 4 * 3 * 9 + 16 * 5 + 5 * 10


# ------------------------------------------------------------------------------------------ stages
def _tiny_run(epochs: int) -> tuple[TrainConfig, stdb.STDBConfig]:
    model_config = stdb.STDBConfig(features=(4, "A", 6), classifier=(8,), conv_dropout=0.1, classifier_dropout=0.1,
                                   ann_epochs=2, ann_learning_rate=0.05, balance_samples=16, balance_time_steps=6,
                                   long_time_steps=12, long_test_samples=20, threshold_scale=0.8)
    config = TrainConfig(method="stdb", data="digits", epochs=epochs, batch_size=20, time_steps=4, limit=40,
                         learning_rate=1e-3, model=dataclasses.asdict(model_config))
    return config, model_config


def test_without_an_ann_stage_the_same_snn_trains_from_random_weights(tmp_path) -> None:
    config, model_config = _tiny_run(epochs=1)
    model_config = dataclasses.replace(model_config, ann_epochs=0)
    config = dataclasses.replace(config, model=dataclasses.asdict(model_config))
    metrics = stdb.train(config, model_config, RunDir.create(tmp_path / "scratch"))
    assert metrics["ann_epochs"] == 0 and metrics["epochs"] == 1
    assert RunDir(tmp_path / "scratch").load_checkpoint()["stage"] == "stdb"


def test_stages_resume_in_one_run_dir_as_if_uninterrupted(tmp_path, monkeypatch) -> None:
    config, model_config = _tiny_run(epochs=2)
    whole = stdb.train(config, model_config, RunDir.create(tmp_path / "whole"))
    assert whole["epochs"] == 2 and whole["ann_epochs"] == 2
    for key in ("ann_test_accuracy", "converted_test_accuracy", "converted_long_test_accuracy", "test_accuracy",
                "spikes_per_sample", "synaptic_operations_per_sample", "neuron_updates_per_sample"):
        assert isinstance(whole[key], float), key
    # Interrupt at the conversion (after the ANN stage), then after one fine-tuning epoch; resume each time.
    run_dir = RunDir.create(tmp_path / "parts")
    real_convert = stdb._convert

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stdb, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stdb.train(config, model_config, run_dir)
    assert run_dir.load_checkpoint()["stage"] == "ann"
    monkeypatch.setattr(stdb, "_convert", real_convert)
    stdb.train(dataclasses.replace(config, epochs=1), model_config, run_dir, resume=True)
    assert run_dir.load_checkpoint()["stage"] == "stdb"
    parts = stdb.train(config, model_config, run_dir, resume=True)
    whole_state = RunDir(tmp_path / "whole").load_checkpoint()
    parts_state = run_dir.load_checkpoint()
    for key, value in whole_state["model"].items():
        assert torch.equal(value, parts_state["model"][key]), key
    for key in ("test_accuracy", "converted_test_accuracy", "spikes_per_sample", "netspec_sha256"):
        assert parts[key] == whole[key], key


@pytest.mark.parametrize("data", ["digits", "fashion-mnist"])
def test_presets_resolve(monkeypatch, data: str) -> None:
    from lavaflow.pipeline.config import resolve_config

    config, model_config, method = resolve_config("stdb", data)
    assert method is stdb.METHOD and config.model == dataclasses.asdict(model_config)
    model = stdb.build(model_config, (1, 28, 28) if data != "digits" else (1, 8, 8), 10, config.time_steps,
                       torch.Generator().manual_seed(0))
    assert model.num_spiking == len(model_config.classifier) + sum(f != "A" for f in model_config.features)


def test_a_finished_bench_run_is_reported_without_re_running(tmp_path) -> None:
    """bench stdb's runs take hours: one already trained to its end with the same config (model keys added since read
    as their defaults) is reported from its metrics; another config, or an unfinished run, is resumed."""
    from lavaflow.pipeline.benchmarks.stdb import _finished
    from lavaflow.pipeline.config import config_to_yaml, resolve_config
    from lavaflow.pipeline.training import trained_with

    config, _, _ = resolve_config("stdb", "fashion-mnist")
    run_dir = RunDir.create(tmp_path / "run")
    assert not trained_with(run_dir, config) and _finished(run_dir, config) is None
    text = config_to_yaml(config)
    assert "  surrogate: stdb\n" in text
    run_dir.write_config(text.replace("  surrogate: stdb\n", ""))  # written before model.surrogate existed
    assert trained_with(run_dir, config)
    assert not trained_with(run_dir, dataclasses.replace(config, learning_rate=1e-3))
    run_dir.update_metrics({"epochs": config.epochs - 1, "test_accuracy": 0.5})
    assert _finished(run_dir, config) is None  # not at its end yet
    run_dir.update_metrics({"epochs": config.epochs})
    assert _finished(run_dir, config) == {"epochs": config.epochs, "test_accuracy": 0.5}
    assert _finished(run_dir, dataclasses.replace(config, epochs=config.epochs + 2)) is None
