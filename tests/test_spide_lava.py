"""SPIDE's training as one Lava graph (pipeline/lava/spide_graph.py, processes/spide/) against the torch SPIDE
(pipeline/spide.py): one batch's gradients and optimiser step, float and fixed point, single- and multi-layer."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline.lava.spide_graph import SPIDELavaGraph
from lavaflow.pipeline.spide import SPIDEConfig, build, spide_update

INPUTS, CLASSES, STEPS = 10, 4, 8
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
NETWORKS = {
    "single": dict(layers=("fc 24",), feedback="fc"),
    "multi": dict(layers=("fc 20", "fc 15"), feedback="fc"),
    "feedforward": dict(layers=("fc 18", "fc 12"), feedback="none"),
    # model.loop_norm_bound: the in-loop edge 0 → 1 capped too (its raw weight 3× its bound: the cap binds)
    "loop-capped": dict(layers=("fc 20", "fc 15"), feedback="fc", loop_bound=4.0),
}
# Conv, pooling and transposed-conv edges: a LeNet-like conv → pool
# with a stride-2 transposed-conv feedback, ConvNet-F's strided conv with its convT feedback (in-loop cap binding),
# and a same-size conv feedback (stride 1, padding 1). F's weights ×3 so that every layer
# fires within the 8 steps (at the default init the deeper layers stay nearly silent and learn nothing).
CONV_NETWORKS = {
    "conv-pool": dict(layers=("conv 4 k3 p1", "pool 2"), feedback="convT k2 s2", input_shape=(2, 4, 4), gain=3.0),
    "convnet-f": dict(layers=("conv 4 k3 p1", "conv 6 k3 s2 p1"), feedback="convT k3 s2 p1 op1",
                      input_shape=(1, 6, 6), loop_bound=1.5, gain=3.0),
    "conv-feedback": dict(layers=("conv 3 k3 p1", "conv 5 k3 p1"), feedback="conv k3 p1",
                          input_shape=(2, 5, 5), gain=3.0),
}


def _model(layers: tuple[str, ...], feedback: str, seed: int = 1, bound: float = 2.0, loop_bound: float | None = None,
           input_shape: tuple[int, ...] = (INPUTS,), gain: float = 1.0, batch_norm: bool = False):
    config = SPIDEConfig(layers=layers, feedback=feedback, backward_steps=20, loss_scale=100.0,
                         feedback_norm_bound=bound, loop_norm_bound=loop_bound, batch_norm=batch_norm)
    model = build(config, input_shape, CLASSES, STEPS, torch.Generator().manual_seed(seed)).double()
    network = model.network
    if batch_norm:  # γ, β away from 1, 0 (a wrong fold shows); statistics of 40 random "training" samples
        generator = torch.Generator().manual_seed(seed + 7)
        with torch.no_grad():
            network.input_norm.weight.uniform_(0.5, 1.5, generator=generator)
            network.input_norm.bias.normal_(0.0, 0.3, generator=generator)
        training = torch.rand((40, *input_shape), generator=generator, dtype=torch.float64)
        model.refresh_statistics(iter([training.unsqueeze(0)]))  # T = 1: x̄ is the input itself
    with torch.no_grad():
        network.weights[network._weight_index[0]].mul_(gain)
    for number, edge in enumerate(network.edges):
        if loop_bound is not None and edge.source >= 0 and number != network.feedback_edge:
            raw = network.weights[network._weight_index[number]]
            with torch.no_grad():  # built at its bound; raw weights beyond it make the cap bind from the first batch
                raw.mul_(3.0)
            assert float(raw.norm()) > 2.5 * loop_bound
    return model


def _cap_factor(network, number: int) -> float:
    """min(1, c/‖W‖_F) of a capped edge's raw weight (1 for an uncapped edge), computed here from torch."""
    bound = network.norm_bounds[number]
    if bound is None:
        return 1.0
    return min(1.0, bound / float(network.weights[network._weight_index[number]].detach().norm()))


def _batch(samples: int, seed: int, shape: tuple[int, ...] = (INPUTS,)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.rint(rng.random((samples, *shape)) * 256).clip(0, 255) / 256, rng.integers(0, CLASSES, samples)


def _torch_step(model, optimizer, inputs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The shared loop's train_step on the torch SPIDE: its gradients (before the step)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    x = torch.from_numpy(inputs).unsqueeze(0).expand(STEPS, *inputs.shape)
    F.cross_entropy(model(x), torch.from_numpy(labels)).backward()
    gradients = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    optimizer.step()
    return gradients


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    scale = max(float(np.abs(expected).max()), 1e-300)
    assert float(np.abs(actual - expected).max()) <= 1e-5 * scale, what


GRAPHS = {"fused": True, "plain": False}
ALL_NETWORKS = {**NETWORKS, **CONV_NETWORKS}
CASES = [(name, kind) for name in ALL_NETWORKS for kind in GRAPHS]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("name", "graph_kind"), CASES)
def test_float_graph_update_equals_torch_spide(name: str, graph_kind: str) -> None:
    """Two batches (the second padded in the fused model: 5 of 8 samples), each trained in the Lava graph and by
    the torch SPIDE with torch's SGD: the graph's gradients, weights, biases and readout agree within 1e-5 relative
    after each. The plain graph runs each sample in its own window (3 per Lava run, so a mini-batch spans runs)
    and steps once per mini-batch, on the summed update."""
    model = _model(**ALL_NETWORKS[name])
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    with SPIDELavaGraph(model, forward_steps=STEPS, batch_size=8, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                        capacity=2 if GRAPHS[graph_kind] else 3, fused=GRAPHS[graph_kind]) as graph:
        network = model.network
        expected_processes = 2 if GRAPHS[graph_kind] else 1 + 2 * len(network.layer_shapes) + len(network.edges)
        assert len(graph.runtime.leaf_processes()) == expected_processes  # the graph asked for, not the other
        for samples, seed in ((8, 10), (5, 11)):
            inputs, labels = _batch(samples, seed, network.input_shape)
            result = graph.train_batch(inputs, labels, LEARNING_RATE)
            lava_gradients, lava_parameters = graph.gradients(), graph.parameters()
            expected = _torch_step(model, optimizer, inputs, labels)
            for key, value in lava_gradients.items():
                _assert_close(value, expected[key], f"gradient of {key}")
                # every weight learns: a test whose gradients are zero could not fail
                assert "weights" not in key or np.count_nonzero(expected[key]) > 0, f"{key}'s gradient is zero"
            parameters = dict(model.named_parameters())
            for key, value in lava_parameters.items():
                _assert_close(value, parameters[key].detach().numpy(), f"{key} after the step")
            assert len(result.predictions) == samples


@pytest.mark.timeout(300)
def test_float_graph_update_with_batch_norm_equals_torch_spide() -> None:
    """BatchNorm on F (model.batch_norm; the fused float graph): two batches (the second padded, 5 of 8 samples,
    which its statistics leave out) trained in the graph and by the torch SPIDE with torch's SGD: every gradient
    (F, b, γ, β), every parameter after the step and the exported statistics (exact, from the training set's
    moments, for the stepped F and b) agree within 1e-5 relative. BatchNorm centres F·x̄ + b, so b's gradient and
    value stay at rounding level in both."""
    from lavaflow.models.input_norm import dense_statistics

    model = _model(**NETWORKS["multi"], batch_norm=True)
    network = model.network
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    with SPIDELavaGraph(model, forward_steps=STEPS, batch_size=8, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                        capacity=2) as graph:
        for samples, seed in ((8, 10), (5, 11)):
            inputs, labels = _batch(samples, seed)
            graph.train_batch(inputs, labels, LEARNING_RATE)
            lava_gradients, lava_parameters = graph.gradients(), graph.parameters()
            expected = _torch_step(model, optimizer, inputs, labels)
            assert {"network.input_norm.weight", "network.input_norm.bias"} <= set(lava_gradients)
            rounding = 1e-12 * float(np.abs(expected["network.weights.0"]).max())
            for key, value in lava_gradients.items():
                if key == "network.biases.0":
                    assert max(float(np.abs(value).max()), float(np.abs(expected[key]).max())) <= rounding
                    continue
                _assert_close(value, expected[key], f"gradient of {key}")
                assert np.count_nonzero(expected[key]) > 0, key
            state = {key: value.detach().numpy() for key, value in model.state_dict().items()}
            mean, variance = dense_statistics(network.weights[0], network.biases[0], model.input_moments)
            state["network.input_norm.running_mean"], state["network.input_norm.running_var"] = (
                mean.numpy(), variance.numpy())
            for key, value in lava_parameters.items():
                if key == "network.biases.0":
                    assert float(np.abs(value - state[key]).max()) <= 1e-15, key
                    continue
                _assert_close(value, state[key], f"{key} after the step")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch-norm"])
def test_evaluation_window_equals_torch_forward(batch_norm: bool) -> None:
    """Mode EVALUATE runs the forward phase only: the readout's loss and predictions are the torch model's (with
    BatchNorm on F, both fold the exact training-set statistics into F and b)."""
    model = _model(**NETWORKS["multi"], batch_norm=batch_norm)
    inputs, labels = _batch(7, 3)
    with SPIDELavaGraph(model, forward_steps=STEPS, batch_size=7, momentum=MOMENTUM,
                        weight_decay=WEIGHT_DECAY) as graph:
        result = graph.evaluate(inputs, labels)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs).unsqueeze(0).expand(STEPS, *inputs.shape))
    np.testing.assert_array_equal(result.predictions, logits.argmax(1).numpy())
    expected = float(F.cross_entropy(logits, torch.from_numpy(labels), reduction="sum"))
    assert result.loss_sum == pytest.approx(expected, rel=1e-10)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("name", "graph_kind"), [case for case in CASES if case[0] != "feedforward"])
def test_fixed_graph_update_within_one_weight_step(name: str, graph_kind: str) -> None:
    """lava-fixed: weights on the 2^−q grid, g rounded to 2^−q/D, integer spike counts. Its gradients equal the
    torch SPIDE's backward phase and update run on the same grid values and the same rounded g (exactly, up to
    float64 summation order), and after the step each weight lies within half a weight LSB of torch's SGD step."""
    bits = 10
    unit = 2.0**bits
    model = _model(**ALL_NETWORKS[name], bound=0.6)  # a small cap so that the capped feedback's rounding matters
    with torch.no_grad():
        for parameter in model.network.parameters():
            if parameter is not model.network.readout.weight and parameter is not model.network.readout.bias:
                parameter.copy_(torch.round(parameter * unit) / unit)
    inputs, labels = _batch(6, 5, model.network.input_shape)
    with SPIDELavaGraph(model, forward_steps=STEPS, backend="lava-fixed", batch_size=6, momentum=MOMENTUM,
                        weight_decay=WEIGHT_DECAY, fraction_bits=bits, fused=GRAPHS[graph_kind]) as graph:
        graph.train_batch(inputs, labels, LEARNING_RATE)
        lava_gradients, lava_parameters = graph.gradients(), graph.parameters()

    network, config = model.network, model.config
    model.train()
    operators = network.batch_operators(6)
    weights = list(operators.weights)
    for number, bound in enumerate(network.norm_bounds):
        if bound is not None:  # the graph rounds a capped weight onto the grid
            weights[number] = torch.round(weights[number].detach() * unit) / unit
    operators = operators._replace(weights=tuple(weights))
    x = torch.from_numpy(inputs).unsqueeze(0).expand(STEPS, *inputs.shape)
    phase = network.forward_phase(x, operators)
    rates = phase.rates[-1].clone().requires_grad_(True)
    loss = F.cross_entropy(network.readout(rates.flatten(1)), torch.from_numpy(labels))
    (grad_rates,) = torch.autograd.grad(loss, rates)
    grid = network.neuron.subtraction * unit
    injection = torch.round(config.loss_scale * grad_rates * grid) / grid
    record = spide_update(network, phase, operators, injection, config.backward_steps, config.backward_neuron)
    assert any(float(b.abs().sum()) > 0 for b in record.backward.spike_counts)
    state = dict(model.named_parameters())
    for number in range(len(network.edges)):
        weight_update, bias_update = record.updates[number]
        if weight_update is None:  # pooling: nothing to learn
            continue
        key = f"network.weights.{network._weight_index[number]}"
        gradient = (weight_update / config.loss_scale * _cap_factor(network, number)).numpy()
        np.testing.assert_allclose(lava_gradients[key], gradient, rtol=0, atol=1e-12 * max(1, np.abs(gradient).max()))
        stepped = state[key].detach().numpy() - LEARNING_RATE * (gradient + WEIGHT_DECAY * state[key].detach().numpy())
        assert np.abs(lava_parameters[key] - stepped).max() <= 0.5 / unit + 1e-12
        assert np.all(lava_parameters[key] * unit == np.rint(lava_parameters[key] * unit)), "off the weight grid"
        if bias_update is not None:
            bias_key = f"network.biases.{network._bias_index[number]}"
            bias_gradient = (bias_update / config.loss_scale).numpy()
            np.testing.assert_allclose(lava_gradients[bias_key], bias_gradient, rtol=0, atol=1e-12)


def test_fixed_point_refuses_pooling_by_other_than_powers_of_two() -> None:
    """lava-fixed pools by 2^n only: 1/9 is not exact on the fixed-point grid."""
    odd = _model(layers=("conv 2 k3 p1", "pool 3"), feedback="convT k3 s3", input_shape=(1, 6, 6))
    with pytest.raises(ConfigError, match=r"pools by \[3\]"):
        SPIDELavaGraph(odd, forward_steps=5, backend="lava-fixed", batch_size=2, momentum=0.9, weight_decay=0.0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("graph_kind", list(GRAPHS))
def test_in_loop_caps_hold_in_the_graph_after_large_steps(graph_kind: str) -> None:
    """model.loop_norm_bound in the graph over three large SGD steps (lr 5): the effective weights the graph steps
    with (W·min(1, c/‖W‖_F), from the raw Vars it exports) stay within each capped edge's bound and equal the torch
    model's effective weights after the same steps."""
    model = _model(**NETWORKS["loop-capped"])
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0, momentum=MOMENTUM)
    with SPIDELavaGraph(model, forward_steps=STEPS, batch_size=8, momentum=MOMENTUM, weight_decay=0.0,
                        fused=GRAPHS[graph_kind]) as graph:
        for seed in (20, 21, 22):
            inputs, labels = _batch(8, seed)
            graph.train_batch(inputs, labels, 5.0)
            _torch_step(model, optimizer, inputs, labels)
        parameters = graph.parameters()
    network = model.network
    grew = 0
    for number, bound in enumerate(network.norm_bounds):
        if bound is None:
            continue
        raw = parameters[f"network.weights.{network._weight_index[number]}"]
        effective = raw * min(1.0, bound / float(np.linalg.norm(raw)))
        assert float(np.linalg.norm(effective)) <= bound * (1 + 1e-12)
        grew += float(np.linalg.norm(raw)) > bound
        torch_effective = network.batch_operators(1).weights[number].detach().numpy()
        _assert_close(effective, torch_effective, f"edge {number}'s effective weight")
    assert grew >= 1, "no cap binds: the test would prove nothing"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("layers", ["dense", "conv", "dense-batch-norm"])
def test_trainer_writes_a_run_dir_whose_checkpoint_is_the_graph(tmp_path, layers: str) -> None:
    """Two epochs on 256 digits (batches of 32) in the graph: the run dir holds config, checkpoint, history,
    NetSpec, metrics and plots; the checkpoint's torch model (weights read from the graph) gives the test accuracy
    the graph measured. Dense, conv → average pooling with a transposed-conv feedback (a pooling edge has no
    parameters to export), and dense with BatchNorm on F (γ, β and the exact statistics come from the graph)."""
    from lavaflow.pipeline.config import TrainConfig
    from lavaflow.pipeline.data import load_data
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.spide_lava import train_spide_lava

    model_config = (SPIDEConfig(layers=("fc 64",), feedback="fc", backward_steps=30,
                                batch_norm=layers == "dense-batch-norm") if layers.startswith("dense") else
                    SPIDEConfig(layers=("conv 8 k3 p1", "pool 2"), feedback="convT k2 s2", init="kaiming",
                                data_init=True, backward_steps=30))
    config = TrainConfig(method="spide", data="digits", epochs=2, batch_size=32, time_steps=10, optimizer="sgd",
                         learning_rate=0.1, momentum=0.9, weight_decay=5e-6, encoding="current", limit=256,
                         model=dataclasses.asdict(model_config))
    run_dir = RunDir.create(tmp_path / "run")
    metrics = train_spide_lava(config, model_config, run_dir)
    for name in (RunDir.CONFIG, RunDir.CHECKPOINT, RunDir.HISTORY, RunDir.NETSPEC, RunDir.METRICS):
        assert run_dir.file(name).is_file(), name
    assert (run_dir.plots / "training.png").is_file()
    assert metrics["method"] == "spide" and metrics["backend"] == "lava-float" and metrics["epochs"] == 2
    state = run_dir.load_checkpoint()
    _, test_set, info = load_data("digits", time_steps=10, limit=256, seed=0)
    model = build(model_config, info.input_shape, 10, 10, torch.Generator().manual_seed(0))
    model.load_state_dict(state["model"])
    model.eval()
    images = torch.stack([test_set[i][0] for i in range(len(test_set))])
    labels = torch.tensor([int(test_set[i][1]) for i in range(len(test_set))])
    with torch.no_grad():
        logits = model(images.unsqueeze(0).expand(10, *images.shape))
    accuracy = float((logits.argmax(1) == labels).float().mean())
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1.5 / len(labels))  # float32 vs float64: ≤ 1 flip
    assert metrics["test_accuracy"] > 0.3  # it learned something in two epochs (chance: 0.1)
    assert state["optimizer"]["state"], "the graph's momentum buffers are in the checkpoint"
    if layers == "dense-batch-norm":
        assert not torch.equal(state["model"]["network.input_norm.weight"], torch.ones(64))  # γ learned
        assert float(state["model"]["network.input_norm.running_var"].min()) > 0


@pytest.mark.timeout(600)
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch-norm"])
def test_resumed_lava_training_ends_where_the_uninterrupted_one_does(tmp_path, batch_norm: bool) -> None:
    """One epoch, then --resume to two, gives the uninterrupted two epochs' checkpoint: the same weights and momentum
    buffers to the last bit (the checkpoint holds the graph's float64 values) and the same history, with dropout on
    (each batch's masks are keyed by its iteration number, not by how many batches this graph has run); with
    BatchNorm on F, its γ, β, their momentum buffers and the statistics too."""
    from lavaflow.pipeline.config import TrainConfig
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.spide_lava import train_spide_lava

    model_config = SPIDEConfig(layers=("fc 32",), feedback="fc", backward_steps=20, dropout=0.2,
                               batch_norm=batch_norm)
    config = TrainConfig(method="spide", data="digits", epochs=2, batch_size=32, time_steps=8, optimizer="sgd",
                         learning_rate=0.1, momentum=0.9, weight_decay=5e-6, encoding="current", limit=128,
                         milestones=(1,), model=dataclasses.asdict(model_config))
    through = RunDir.create(tmp_path / "through")
    train_spide_lava(config, model_config, through)
    resumed = RunDir.create(tmp_path / "resumed")
    train_spide_lava(dataclasses.replace(config, epochs=1), model_config, resumed)
    first = resumed.load_checkpoint()
    assert first["epoch"] == 1
    metrics = train_spide_lava(config, model_config, resumed, resume=True)
    expected, actual = through.load_checkpoint(), resumed.load_checkpoint()
    assert actual["epoch"] == expected["epoch"] == 2 and metrics["epochs"] == 2
    assert not torch.equal(first["model"]["network.weights.0"], actual["model"]["network.weights.0"])  # it trained
    assert ("network.input_norm.running_var" in expected["model"]) == batch_norm
    for key, value in expected["model"].items():
        floating = value.is_floating_point()  # BatchNorm's num_batches_tracked is an (unused) integer
        assert actual["model"][key].dtype == (torch.float64 if floating else value.dtype), key
        assert torch.equal(actual["model"][key], value), key
    buffers = [(state["momentum_buffer"], actual["optimizer"]["state"][index]["momentum_buffer"])
               for index, state in expected["optimizer"]["state"].items()]
    assert buffers and all(torch.equal(a, b) for a, b in buffers)
    assert actual["history"] == expected["history"]
    assert [row["epoch"] for row in resumed.read_history()] == [1, 2]


@pytest.mark.timeout(300)
def test_dropout_masks_gate_the_forward_currents_backward_messages_and_update() -> None:
    """With dropout the graph draws one mask per edge and batch from numpy's generator (seeded by ``seed``); the
    torch SPIDE given those very masks computes the same gradients (mode GRADIENT: no step)."""
    model = _model(layers=("fc 20", "fc 15"), feedback="fc")
    network, config = model.network, model.config
    network.dropout = 0.3
    model.config = dataclasses.replace(config, dropout=0.3)
    inputs, labels = _batch(6, 8)
    with SPIDELavaGraph(model, forward_steps=STEPS, batch_size=6, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                        seed=123) as graph:
        graph.train_batch(inputs, labels, LEARNING_RATE, learn=False)
        lava_gradients = graph.gradients()
    rng, keep = np.random.default_rng((123, 0)), 0.7  # the graph's first batch: key 0
    masks = tuple(torch.from_numpy((rng.random((6, network.layer_shapes[edge.target][0])) < keep) / keep)
                  for edge in network.edges)
    model.train()
    operators = network.batch_operators(6)._replace(dropout=masks)
    x = torch.from_numpy(inputs).unsqueeze(0).expand(STEPS, *inputs.shape)
    phase = network.forward_phase(x, operators)
    rates = phase.rates[-1].clone().requires_grad_(True)
    loss = F.cross_entropy(network.readout(rates.flatten(1)), torch.from_numpy(labels))
    (grad_rates,) = torch.autograd.grad(loss, rates)
    record = spide_update(network, phase, operators, config.loss_scale * grad_rates, config.backward_steps,
                          config.backward_neuron)
    for number, (weight_update, _) in enumerate(record.updates):
        key = f"network.weights.{network._weight_index[number]}"
        expected = (weight_update / config.loss_scale).numpy() * _cap_factor(network, number)
        assert np.count_nonzero(expected) > 0
        _assert_close(lava_gradients[key], expected, f"gradient of {key} with dropout")


def _children() -> set[int]:
    """This process's live child processes (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] not in "ZX":
                found.add(int(entry))
    return found


@pytest.mark.timeout(300)
def test_a_failing_batch_kills_the_graph_and_leaves_no_process() -> None:
    """A batch the host side refuses (a label out of range makes SPIDEHost's model raise) ends the run with an
    error, and every OS process of the graph is gone afterwards (LavaRuntime's guarantee, here for this graph)."""
    import multiprocessing.resource_tracker
    import time

    from lavaflow.pipeline.lava.session import LavaRunError

    multiprocessing.resource_tracker.ensure_running()
    before = _children()
    model = _model(**NETWORKS["single"])
    inputs, labels = _batch(4, 1)
    with pytest.raises(LavaRunError):
        with SPIDELavaGraph(model, forward_steps=STEPS, batch_size=4, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                            timeout_s=120) as graph:
            graph.train_batch(inputs, labels + CLASSES, LEARNING_RATE)
    deadline = time.monotonic() + 60
    while not _children() <= before:
        assert time.monotonic() < deadline, f"Lava processes left behind: {_children() - before}"
        time.sleep(0.05)


def test_bench_compares_spide_with_ide_on_the_same_network() -> None:
    """`bench spide-lava` compares SPIDE and IDE on each network of NETWORKS: the presets (BatchNorm after F in
    both) and both without BatchNorm, nothing else changed; the table states SPIDE's signed distance per network."""
    from lavaflow.pipeline.benchmarks.spide_lava import NETWORKS, AccuracyRow, describe_accuracy
    from lavaflow.pipeline.config import resolve_config

    (_, spide_preset, ide_preset), (_, spide_plain, ide_plain) = NETWORKS
    configs = {}
    for name, method, model in (("spide", "spide", spide_preset), ("ide", "ide", ide_preset),
                                ("spide-plain", "spide", spide_plain), ("ide-plain", "ide", ide_plain)):
        configs[name] = resolve_config(method, "fashion-mnist", flags={"epochs": 1, "model": model})[1]
    assert configs["spide"].batch_norm and configs["ide"].batch_norm
    assert not configs["spide-plain"].batch_norm and not configs["ide-plain"].batch_norm
    assert dataclasses.replace(configs["ide-plain"], batch_norm=True) == configs["ide"]
    assert dataclasses.replace(configs["spide-plain"], batch_norm=True, data_init=False) == configs["spide"]
    pairs = ((AccuracyRow("SPIDE", "a", 1, 0.8550, 60.0), AccuracyRow("IDE", "a", 1, 0.8531, 20.0)),
             (AccuracyRow("SPIDE", "b", 1, 0.8365, 60.0), AccuracyRow("IDE", "b", 1, 0.8203, 20.0)))
    table = describe_accuracy(pairs)
    assert "SPIDE − IDE, a: +0.19 pp" in table and "SPIDE − IDE, b: +1.62 pp" in table
