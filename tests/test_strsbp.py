"""ST-RSBP (pipeline.strsbp, models.rsnn) against independent computations.

- S-PSPs: the closed form e = A·Q against a step-by-step numpy replay of the unit membrane response with the post
  neuron's resets and held steps; the T-PSP identity Σ_j w_ij·e_ij = Σ_m v_i(t_m) on the reference simulator's
  own u and v records.
- The network: the torch RSNN and models.reference.simulate of its NetSpec give the same spikes.
- The gradient: on a tiny RSNN (dense, recurrent and laterally inhibited output layers) ST-RSBP's gradient equals
  central finite differences of the spike-train level model it differentiates, written here in numpy; the batched
  transposed solve equals per-sample dense solves; a batch of N equals N batches of 1; the P' table's sparse mean
  kernel equals the dense kernel averaged over the same trains.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as functional

from lavaflow.models.netspec import Sparse
from lavaflow.models.reference import simulate
from lavaflow.models.rsnn import RSNN, RSNNArchitecture, RSNNLayer, reservoir_mask, rsnn_netspec
from lavaflow.pipeline import strsbp

TAU_M, TAU_S, REFRACTORY = 16.0, 4.0, 1


def tiny_network(seed: int = 3, topology: str = "dense", layers: tuple[str, ...] = ("5", "r4"),
                 lateral: float = 0.3) -> RSNN:
    """An RSNN whose every neuron fires on rate-0.4 input over 40 steps (weights shifted positive)."""
    architecture = RSNNArchitecture(6, tuple(RSNNLayer.parse(text) for text in layers), 3,
                                    (1.5,) * (len(layers) + 1), tau_m=TAU_M, tau_s=TAU_S,
                                    refractory_steps=REFRACTORY, lateral_inhibition=lateral, topology=topology)
    network = RSNN(architecture, torch.Generator().manual_seed(seed), 1.0, torch.float64)
    with torch.no_grad():
        for population in network.populations:
            population.weight.mul_(0.8).add_(0.5)
            if population.recurrent_weight is not None:
                population.recurrent_weight.mul_(0.5)
    return network


def rate_input(time_steps: int, batch: int, size: int, seed: int = 3, rate: float = 0.4) -> torch.Tensor:
    return (torch.rand(time_steps, batch, size, generator=torch.Generator().manual_seed(seed)) < rate).double()


def replay_effects(pre: np.ndarray, delay: int, post: np.ndarray) -> np.ndarray:
    """e (B, N, M) by stepping each pair's unit response q: integrate unless held, read and reset at a post spike."""
    time_steps, batch, n_pre = pre.shape
    current_keep, voltage_keep, decay = 1 - 1 / TAU_S, 1 - 1 / TAU_M, 1 / TAU_S
    effect = np.zeros((batch, post.shape[2], n_pre))
    for b in range(batch):
        for i in range(post.shape[2]):
            trace, response, held = np.zeros(n_pre), np.zeros(n_pre), 0
            for t in range(time_steps):
                trace = current_keep * trace + (pre[t - delay, b] if t >= delay else 0.0)
                if held > 0:
                    held -= 1
                else:
                    response = voltage_keep * response + decay * trace
                if post[t, b, i]:
                    effect[b, i] += response
                    response, held = np.zeros(n_pre), REFRACTORY
    return effect


def random_post_trains(rng: np.random.Generator, time_steps: int, batch: int, size: int) -> np.ndarray:
    """0/1 trains whose spikes are at least R + 1 steps apart (what the neuron can produce)."""
    trains = np.zeros((time_steps, batch, size))
    for b in range(batch):
        for i in range(size):
            t = int(rng.integers(0, 6))
            while t < time_steps:
                trains[t, b, i] = 1.0
                t += REFRACTORY + 1 + int(rng.integers(0, 8))
    return trains


@pytest.mark.parametrize("delay", [0, 1])
def test_closed_form_effects_equal_step_by_step_replay(delay):
    rng = np.random.default_rng(delay)
    pre = (rng.random((50, 2, 5)) < 0.3).astype(np.float64)
    post = random_post_trains(rng, 50, 2, 4)
    post[:, 1, 0] = 0.0  # a silent post neuron: e = 0
    architecture = tiny_network().architecture
    effect = strsbp.effects(torch.from_numpy(pre), delay, torch.from_numpy(post), architecture).numpy()
    np.testing.assert_allclose(effect, replay_effects(pre, delay, post), rtol=1e-12, atol=1e-12)
    assert np.all(effect[1, 0] == 0)


def test_t_psp_equals_the_sum_of_voltages_at_spikes_in_the_reference_simulator():
    network = tiny_network()
    inputs = rate_input(40, 3, 6)
    spec = rsnn_netspec(network, input_shape=(6,), encoding="rate", time_steps=40)
    result = simulate(spec, inputs.numpy(), record=("hidden1.u", "hidden1.v", "hidden1.spikes", "hidden0.spikes"))
    u, v, spikes = (result.records[f"hidden1.{name}"] for name in ("u", "v", "spikes"))
    before_reset = (1 - 1 / TAU_M) * np.concatenate([np.zeros_like(v[:1]), v[:-1]]) + u  # not held at a spike
    voltage_sum = (before_reset * spikes).sum(0)
    below = torch.from_numpy(result.records["hidden0.spikes"].astype(np.float64))
    own = torch.from_numpy(spikes.astype(np.float64))
    population = network.populations[1]
    psp = torch.einsum("ij,bij->bi", population.weight.detach(), strsbp.effects(below, 1, own, network.architecture))
    psp += torch.einsum("ij,bij->bi", population.loop_weight().detach(),
                        strsbp.effects(own, 1, own, network.architecture))
    assert spikes.sum() > 20
    np.testing.assert_allclose(psp.numpy(), voltage_sum, rtol=1e-10, atol=1e-10)
    assert np.all(voltage_sum[spikes.sum(0) > 0] > 0)


@pytest.mark.parametrize("topology", ["grid", "dense"])
def test_torch_rsnn_and_reference_simulator_give_the_same_spikes(topology):
    network = tiny_network(seed=5, topology=topology, layers=("6", "r25", "4"))
    inputs = rate_input(60, 4, 6, seed=5)
    spikes = network.simulate(inputs)
    spec = rsnn_netspec(network, input_shape=(6,), encoding="rate", time_steps=60)
    names = list(spec.populations)
    result = simulate(spec, inputs.numpy(), record=[f"{name}.spikes" for name in names])
    for name, ours in zip(names, spikes, strict=True):
        np.testing.assert_array_equal(result.records[f"{name}.spikes"], ours.numpy(), err_msg=name)
    assert all(float(s.sum()) > 0 for s in spikes)
    counts = spikes[-1].sum(0).numpy()
    np.testing.assert_allclose(result.logits, counts, rtol=1e-12)  # the readout gives spike counts
    loop = [c for c in spec.connections if c.source == c.target == "hidden1"]
    assert len(loop) == 1 and loop[0].delay_steps == 1
    assert isinstance(loop[0].synapse, Sparse) == (topology == "grid")


@pytest.mark.parametrize("refractory", [0, 2])
def test_simulate_equals_stepping_the_kinds_own_step(refractory):
    """RSNN.simulate's fused step against models.kinds.cuba_refractory's step, on a net where many neurons and
    inputs stay silent (where the trainer skips rows and columns): the same spikes, exactly."""
    from lavaflow.models.kinds.cuba_refractory import CubaRefractoryState, cuba_refractory_step

    architecture = RSNNArchitecture(30, (RSNNLayer(20), RSNNLayer(25, True)), 4, (1.5, 1.5, 1.5), tau_m=TAU_M,
                                    tau_s=TAU_S, refractory_steps=refractory, topology="grid")
    network = RSNN(architecture, torch.Generator().manual_seed(7), 1.0, torch.float64)
    inputs = rate_input(60, 5, 30, seed=7, rate=0.5)
    inputs[:, :, ::3] = 0.0  # silent inputs
    spikes = network.simulate(inputs)
    below = inputs
    for index, population in enumerate(network.populations):
        drive = below @ (population.weight.detach() / TAU_S).T
        if index > 0:
            drive = torch.cat([torch.zeros_like(drive[:1]), drive[:-1]])
        loop = population.loop_weight()
        state = CubaRefractoryState(*(torch.zeros_like(drive[0]) for _ in range(3)))
        previous, expected = torch.zeros_like(drive[0]), []
        for t in range(60):
            current = drive[t] if loop is None else drive[t] + previous @ (loop.detach() / TAU_S).T
            previous, state = cuba_refractory_step(current, state, architecture.params(index))
            expected.append(previous)
        np.testing.assert_array_equal(spikes[index].numpy(), torch.stack(expected).numpy(), err_msg=str(index))
        below = spikes[index]
    counts = spikes[1].sum(0)
    assert float(counts.sum()) > 0 and bool((counts == 0).any())  # some fire, some stay silent


def test_compact_spike_train_products_equal_the_dense_ones(monkeypatch):
    """SpikeTrainProduct skips silent post rows and pre columns per sample: its e and Σ_b scale_b·e_b equal the
    plain batched A·Q and its einsum, in both branches (compact and one batched matmul)."""
    rng = np.random.default_rng(5)
    pre = (rng.random((50, 4, 9)) < 0.3).astype(np.float64)
    pre[:, :, :4] = 0.0
    pre[:, 2] = 0.0  # a sample without input
    pre[-1, 1, 4] = 1.0
    pre[:-1, 1, 4] = 0.0  # only a last-step spike: nothing reaches through a delay of 1
    post = random_post_trains(rng, 50, 4, 6)
    post[:, :, ::2] = 0.0
    architecture = tiny_network().architecture
    pre_t, post_t = torch.from_numpy(pre), torch.from_numpy(post)
    kernel = strsbp.readout_kernel(post_t, REFRACTORY, 1 / TAU_M)
    scale = torch.from_numpy(rng.normal(size=(4, 6)))
    for delay in (0, 1):
        responses = strsbp.unit_responses(pre_t, delay, 1 / TAU_S, 1 / TAU_M)
        dense = (kernel @ responses).numpy()
        np.testing.assert_allclose(dense, replay_effects(pre, delay, post), rtol=1e-12, atol=1e-12)
        product = strsbp.TrainFilters(architecture).product(pre_t, delay, post_t)
        assert not bool(product.cols[:, :4].any()) and not bool(product.rows[:, ::2].any())
        assert bool(product.cols[1, 4]) == (delay == 0)
        for fraction in (1.0, 0.0):  # every product compact, none compact
            monkeypatch.setattr(strsbp, "COMPACT_FRACTION", fraction)
            np.testing.assert_allclose(product.dense().numpy(), dense, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(product.weighted_sum(scale).numpy(),
                                       np.einsum("bi,bij->ij", scale.numpy(), dense), rtol=1e-13, atol=1e-15)


def test_gradients_with_silent_neurons_do_not_depend_on_the_compact_products(monkeypatch):
    """The whole spike-train level gradient on a network with silent neurons and inputs, with every product
    compacted and with none: equal to rounding."""
    architecture = RSNNArchitecture(30, (RSNNLayer(20), RSNNLayer(25, True)), 4, (1.5, 1.5, 1.5), tau_m=TAU_M,
                                    tau_s=TAU_S, refractory_steps=REFRACTORY, lateral_inhibition=0.3)
    network = RSNN(architecture, torch.Generator().manual_seed(7), 1.0, torch.float64)
    inputs = rate_input(60, 5, 30, seed=7, rate=0.5)
    inputs[:, :, ::3] = 0.0
    spikes = network.simulate(inputs)
    assert all(bool((s.sum(0) == 0).any()) and float(s.sum()) > 0 for s in spikes[:2])
    table = strsbp.effect_table(60, TAU_M, TAU_S, REFRACTORY, draws=100)
    config = strsbp.STRSBPConfig(tau_m=TAU_M, tau_s=TAU_S, refractory_steps=REFRACTORY, desired_rate=0.2)
    upstream = torch.from_numpy(np.random.default_rng(0).normal(size=(5, 4)))
    labels = torch.tensor([0, 1, 2, 3, 0])
    results = {}
    for fraction in (1.0, 0.0):
        monkeypatch.setattr(strsbp, "COMPACT_FRACTION", fraction)
        results[fraction] = strsbp.spike_train_gradients(network, inputs, spikes, upstream, config, table, labels)
    for compact, plain in zip(results[1.0], results[0.0], strict=True):
        for name in ("weight", "loop_weight", "below"):
            if getattr(plain, name) is not None:
                expected = getattr(plain, name).numpy()
                assert np.abs(expected).max() > 0
                np.testing.assert_allclose(getattr(compact, name).numpy(), expected, rtol=1e-12,
                                           atol=1e-14 * np.abs(expected).max(), err_msg=name)


def test_reservoir_mask_follows_the_distance_rule():
    masks = torch.stack([reservoir_mask(400, "grid", torch.Generator().manual_seed(s)) for s in range(3)]).double()
    assert 0.02 < float(masks.mean()) < 0.2  # sparse: about 3-4 % of pairs
    coordinates = torch.tensor([[a, b, c] for a in range(5) for b in range(5) for c in range(16)], dtype=torch.float64)
    far = torch.cdist(coordinates, coordinates) > 3.5  # exp(-d²/4) < 0.05
    assert float(masks[:, far].mean()) < 0.01 < float(masks[:, ~far].mean())


def sensitivity_numpy(weight: np.ndarray, pre_counts: np.ndarray, post_counts: np.ndarray,
                      table: strsbp.EffectTable, threshold: float) -> np.ndarray:
    """S (B, N) = (1/ν)·Σ_j w_ij·P'_{o_j}(o_i), pair by pair."""
    pairs = table.derivative(pre_counts[:, None, :], post_counts[:, :, None])
    return (weight[None] * pairs).sum(-1) / threshold


def ratios_numpy(effect: np.ndarray, pre_counts: np.ndarray, post_counts: np.ndarray) -> np.ndarray:
    active = (pre_counts[:, None, :] > 0) & (post_counts[:, :, None] > 0)
    return np.where(active, effect / np.maximum(pre_counts[:, None, :], 1), 0.5)


def model_tables(network: RSNN, inputs: torch.Tensor, spikes: list[torch.Tensor],
                 table: strsbp.EffectTable) -> list[dict]:
    """Per population, the numpy tables of the spike-train level model at the simulated operating point."""
    trains = [inputs.numpy(), *(s.numpy() for s in spikes)]
    layers = []
    for k, population in enumerate(network.populations):
        pre, post = trains[k], trains[k + 1]
        threshold = network.architecture.thresholds[k]
        weight = population.weight.detach().numpy()
        loop = population.loop_weight()
        loop = None if loop is None else loop.detach().numpy()
        pre_counts, post_counts = pre.sum(0), post.sum(0)
        effect = replay_effects(pre, 0 if k == 0 else 1, post)
        layer = {"effect": effect, "ratio": ratios_numpy(effect, pre_counts, post_counts), "threshold": threshold,
                 "counts": post_counts, "loop": loop,
                 "sensitivity": sensitivity_numpy(weight, pre_counts, post_counts, table, threshold)}
        psp = np.einsum("ij,bij->bi", weight, effect)
        if loop is not None:
            layer["loop_effect"] = replay_effects(post, 1, post)
            layer["loop_ratio"] = ratios_numpy(layer["loop_effect"], post_counts, post_counts)
            layer["sensitivity"] += sensitivity_numpy(loop, post_counts, post_counts, table, threshold)
            psp += np.einsum("ij,bij->bi", loop, layer["loop_effect"])
        layer["offset"] = psp / threshold - post_counts  # makes the measured counts the model's solution
        layers.append(layer)
    return layers


def model_counts(layers: list[dict], weights: list[np.ndarray], loops: list[np.ndarray | None]) -> np.ndarray:
    """Output counts (B, C) of the linearised spike-train level model for the given weights:

    o_i = (1/ν)·[Σ_j w_ij·(e_ij + r_ij·Δo_j) + Σ_p w^r_ip·(e_ip + r_ip·Δo_p)] + S_i·Δo_i − offset_i,
    Δ = o − o⁰, solved exactly per sample (a linear system where the layer has a loop)."""
    below_change = None
    for layer, weight, loop in zip(layers, weights, loops, strict=True):
        threshold, counts = layer["threshold"], layer["counts"]
        batch, size = counts.shape
        effective = layer["effect"] if below_change is None else \
            layer["effect"] + layer["ratio"] * below_change[:, None, :]
        right = np.einsum("ij,bij->bi", weight, effective) / threshold - layer["offset"] - counts
        change = np.zeros((batch, size))
        for b in range(batch):
            matrix = np.eye(size) - np.diag(layer["sensitivity"][b])
            rhs = right[b].copy()
            if loop is not None:
                matrix -= loop * layer["loop_ratio"][b] / threshold
                rhs += (loop * layer["loop_effect"][b]).sum(1) / threshold
            change[b] = np.linalg.solve(matrix, rhs)
        below_change = change
    return layers[-1]["counts"] + below_change


def test_spike_train_gradient_equals_finite_differences_of_the_spike_train_level_model():
    network = tiny_network()
    inputs = rate_input(40, 3, 6)
    spikes = network.simulate(inputs)
    assert all(bool((s.sum(0) > 0).all()) for s in spikes)  # every neuron fires: no silent-neuron shortcuts
    table = strsbp.effect_table(40, TAU_M, TAU_S, REFRACTORY, draws=200)
    config = strsbp.STRSBPConfig(tau_m=TAU_M, tau_s=TAU_S, refractory_steps=REFRACTORY, recurrent_solve="exact")
    upstream = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 3)))
    ours = strsbp.spike_train_gradients(network, inputs, spikes, upstream, config, table)

    layers = model_tables(network, inputs, spikes, table)
    for layer in layers:  # the clamp of M's diagonal is not what is tested here
        assert np.all(np.abs(1 - layer["sensitivity"]) > 0.05)
    weights = [p.weight.detach().numpy().copy() for p in network.populations]
    loops = [None if p.loop_weight() is None else p.loop_weight().detach().numpy().copy()
             for p in network.populations]

    def objective() -> float:
        return float((upstream.numpy() * model_counts(layers, weights, loops)).sum())

    assert abs(objective() - float((upstream * spikes[-1].sum(0)).sum())) < 1e-9  # o⁰ solves the model
    step = 1e-6
    for k, population in enumerate(network.populations):
        targets = [(weights[k], ours[k].weight.numpy(), np.ones_like(weights[k], dtype=bool))]
        if population.recurrent_weight is not None:
            targets.append((loops[k], ours[k].loop_weight.numpy(), population.recurrent_mask.numpy()))
        for array, gradient, mask in targets:
            numeric = np.zeros_like(array)
            for index in zip(*np.nonzero(mask), strict=True):
                saved = array[index]
                array[index] = saved + step
                up = objective()
                array[index] = saved - step
                down = objective()
                array[index] = saved
                numeric[index] = (up - down) / (2 * step)
            assert np.abs(numeric).max() > 1e-3
            np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-7 * np.abs(numeric).max())


def test_batched_transposed_solve_equals_per_sample_dense_solves():
    network = tiny_network(seed=4, layers=("7", "r12"))
    inputs = rate_input(40, 5, 6, seed=4)
    spikes = network.simulate(inputs)
    table = strsbp.effect_table(40, TAU_M, TAU_S, REFRACTORY, draws=200)
    population = network.populations[1]
    weight, loop = population.weight.detach(), population.loop_weight().detach()
    threshold = network.architecture.thresholds[1]
    tables = strsbp.layer_tables(spikes[0], 1, spikes[1], weight, loop, threshold, network.architecture, table)
    grad = torch.from_numpy(np.random.default_rng(1).normal(size=(5, 12)))
    exact = strsbp.layer_backward(tables, grad, weight, loop, threshold, solve="exact")
    diagonal = strsbp.layer_backward(tables, grad, weight, loop, threshold, solve="diagonal")

    w, lw = weight.numpy(), loop.numpy()
    expected_below, expected_weight, expected_loop = np.zeros((5, 7)), np.zeros_like(w), np.zeros_like(lw)
    approximate_weight = np.zeros_like(w)
    for b in range(5):  # the reference's way: X = M⁻¹R, one dense solve per sample
        matrix = np.eye(12) - np.diag(tables.sensitivity[b].numpy()) - lw * tables.loop_ratio[b].numpy() / threshold
        assert np.all(np.abs(np.diag(matrix)) > 1e-3)
        sensitivity_of_below = np.linalg.solve(matrix, w * tables.ratio[b].numpy())
        expected_below[b] = grad[b].numpy() / threshold @ sensitivity_of_below
        beta = np.linalg.solve(matrix.T, grad[b].numpy())
        expected_weight += np.outer(beta, 1) * tables.effect[b].numpy() / threshold
        expected_loop += np.outer(beta, 1) * tables.loop_effect[b].numpy() / threshold
        approximate_weight += (grad[b].numpy() / np.diag(matrix))[:, None] * tables.effect[b].numpy() / threshold
    np.testing.assert_allclose(exact.below.numpy(), expected_below, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(exact.weight.numpy(), expected_weight, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(exact.loop_weight.numpy(), expected_loop, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(diagonal.weight.numpy(), approximate_weight, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(diagonal.below.numpy(), expected_below, rtol=1e-9, atol=1e-12)  # exact in both
    assert not np.allclose(diagonal.weight.numpy(), expected_weight)


@pytest.mark.parametrize("loss", ["spike_count", "cross_entropy"])
def test_batch_of_n_equals_n_batches_of_one(loss):
    config = strsbp.STRSBPConfig(layers=("5", "r4"), thresholds=(1.5, 1.5, 1.5), tau_m=TAU_M, tau_s=TAU_S,
                                 refractory_steps=REFRACTORY, lateral_inhibition=0.3, topology="dense", loss=loss,
                                 desired_rate=0.2, undesired_rate=0.05, margin_rate=0.01, table_draws=200)
    module = strsbp.build(config, (6,), 3, 40, torch.Generator().manual_seed(3))
    module.rsnn = tiny_network()  # the same weights, made to fire
    module.rsnn.populations.double()
    module.train()
    inputs, targets = rate_input(40, 4, 6), torch.tensor([0, 2, 1, 2])

    def gradients(index: slice) -> list[torch.Tensor]:
        module.zero_grad()
        functional.cross_entropy(module(inputs[:, index]), targets[index]).backward()
        return [p.grad.clone() for p in module.trainable()]

    whole = gradients(slice(None))
    single = [gradients(slice(b, b + 1)) for b in range(4)]
    for k, gradient in enumerate(whole):
        np.testing.assert_allclose(gradient.numpy(), np.mean([s[k].numpy() for s in single], axis=0),
                                   rtol=1e-9, atol=1e-12)
    assert all(float(g.abs().max()) > 0 for g in whole)


def test_labels_come_back_from_the_cross_entropy_gradient_even_when_softmax_saturates():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 500.0], [1.0, 1.0, 1.0], [-200.0, 0.0, 200.0]])
    targets = torch.tensor([1, 2, 0, 0])
    logits.requires_grad_(True)
    functional.cross_entropy(logits, targets).backward()
    assert strsbp.labels_from_gradient(logits.grad, logits.detach()).tolist() == targets.tolist()


def test_silent_label_neuron_gets_injected_spikes_and_others_are_kept():
    output = torch.zeros(40, 2, 3, dtype=torch.float64)
    output[5, 1, 2] = 1.0
    patched = strsbp.inject_label_spikes(output, torch.tensor([0, 2]), desired_rate=0.1)
    assert patched[:, 0, 0].nonzero().flatten().tolist() == [10, 20, 30]
    assert torch.equal(patched[:, 1], output[:, 1]) and torch.equal(patched[:, 0, 1:], output[:, 0, 1:])


def test_table_mean_kernel_equals_the_dense_kernel_averaged_over_the_same_trains():
    rng = np.random.default_rng(2)
    times = strsbp._random_spike_times(rng, 4, 30, 40, REFRACTORY + 1)
    assert np.all(np.diff(times, axis=1) >= REFRACTORY + 1)
    trains = np.zeros((40, 30, 1))
    np.put_along_axis(trains[:, :, 0].T, times, 1.0, axis=1)
    dense = strsbp.readout_kernel(torch.from_numpy(trains), REFRACTORY, 1 / TAU_M)[:, 0].mean(0).numpy()
    np.testing.assert_allclose(strsbp.mean_readout_kernel(times, 40, REFRACTORY, 1 / TAU_M), dense, rtol=1e-12)


def test_effect_table_matches_the_reference_file_for_the_image_settings():
    """The reference ships p_Tau_64_400-100.txt; its first row is about [-6.2e-8, 1.5e-5, -1.3e-3, 4.4e-2, 0.21]
    (spec A.4.2): our table for T = 400, τ_m = 64, τ_s = 8, R = 2 agrees within its Monte-Carlo noise."""
    table = strsbp.effect_table(400, 64.0, 8.0, 2, draws=300)
    np.testing.assert_allclose(table.coefficients[0], [-6.2e-8, 1.5e-5, -1.3e-3, 4.4e-2, 0.21], rtol=0.1)
    np.testing.assert_allclose(table.coefficients[9], 10 * table.coefficients[0], rtol=1e-9)  # linear in n


def test_training_loop_writes_a_run_whose_netspec_predicts_as_the_torch_network(tmp_path, monkeypatch):
    from lavaflow.models.netspec import NetSpec
    from lavaflow.pipeline.config import resolve_config
    from lavaflow.pipeline.data import encode, load_data
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.training import train

    flags = {"epochs": 3, "limit": 200, "time_steps": 30, "batch_size": 20, "learning_rate": 0.01,
             "model": {"layers": ["48", "r25"], "thresholds": [3.0, 3.0, 3.0], "table_draws": 100}}
    config, model_config, method = resolve_config("strsbp", "digits", flags=flags)
    assert config.encoding == "rate" and model_config.regularizer_lambda == 0  # from the digits preset
    run_dir = RunDir.create(tmp_path / "run")
    metrics = train(config, model_config, method, run_dir)
    assert metrics["method"] == "strsbp" and metrics["epochs"] == 3 and metrics["test_accuracy"] > 0.4
    spec = NetSpec.load(run_dir.file(RunDir.NETSPEC))
    network = method.build(model_config, (1, 8, 8), 10, 30, torch.Generator())
    network.load_state_dict(run_dir.load_checkpoint()["model"])
    network.eval()
    _, test, _ = load_data("digits", time_steps=30, limit=40)
    images = torch.stack([test[i][0] for i in range(40)])
    inputs = encode(images, "rate", 30, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(simulate(spec, inputs.numpy()).predictions, network(inputs).argmax(1).numpy())


def test_rsnn_runs_in_lava_float_spike_for_spike_and_fixed_point_bit_for_bit():
    from lavaflow.deploy.quantize import quantize
    from lavaflow.pipeline.lava.run import run_lava

    network = tiny_network(seed=5, topology="grid", layers=("6", "r25"))
    inputs = rate_input(40, 3, 6, seed=5).numpy()
    spec = rsnn_netspec(network, input_shape=(6,), encoding="rate", time_steps=40)
    names = tuple(f"{name}.spikes" for name in spec.populations)
    reference = simulate(spec, inputs, record=names)
    lava = run_lava(spec, inputs, backend="lava-float", batch_size=3, record=names, timeout_s=300)
    for name in names:  # Lava records samples first
        np.testing.assert_array_equal(lava.records[name], reference.records[name].transpose(1, 0, 2), err_msg=name)
    assert reference.records["hidden1.spikes"].sum() > 0
    fixed, _ = quantize(spec)
    fixed_reference = simulate(fixed, inputs)
    fixed_lava = run_lava(fixed, inputs, backend="lava-fixed", batch_size=3, timeout_s=300)
    np.testing.assert_array_equal(fixed_lava.counts["output"], fixed_reference.counts["output"])
