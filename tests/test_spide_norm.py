"""SPIDE with BatchNorm on the input layer (``model.batch_norm``): the update that reaches F, b, γ and β is
BatchNorm's own backward applied to SPIDE's local error (checked against torch's batch_norm under autograd); the
stored statistics are the exact training-set ones; evaluation and the NetSpec fold them into F and b (checked with
the reference simulator); the Lava graph refuses it where it has none; a digits run through the shared loop
learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as functional
import yaml

from lavaflow.models.errors import ConfigError
from lavaflow.models.neurons import mean_input
from lavaflow.models.spide_network import Conv
from lavaflow.pipeline.config import PRESET_DIR, TrainConfig, build_dataclass
from lavaflow.pipeline.spide import METHOD, SPIDEConfig, build, to_netspec

D = 2.0  # θ − u_rest: the 1/D of SPIDE's update

NETWORKS = {
    "dense": (["fc 12"], "fc", (1, 4, 4)),
    "conv": (["conv 3 k3 p1", "conv 4 k3 s2 p1"], "convT k3 s2 p1 op1", (1, 6, 6)),
}


def make(name, *, dropout=0.0, seed=0):
    layers, feedback, input_shape = NETWORKS[name]
    config = SPIDEConfig(layers=tuple(layers), feedback=feedback, init="kaiming", dropout=dropout, batch_norm=True,
                         backward_steps=60)
    model = build(config, input_shape, 3, 20, torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():  # γ and β away from 1 and 0, so that a wrong fold shows
        generator = torch.Generator().manual_seed(seed + 7)
        model.network.input_norm.weight.copy_(0.5 + torch.rand(model.network.input_norm.weight.shape,
                                                               generator=generator, dtype=torch.float64))
        model.network.input_norm.bias.copy_(0.3 * torch.randn(model.network.input_norm.bias.shape,
                                                              generator=generator, dtype=torch.float64))
    return model, config, input_shape


def constant_input(input_shape, batch, steps, seed=1, gain=2.0):
    images = gain * torch.rand((batch, *input_shape), generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64)
    return images.unsqueeze(0).expand(steps, batch, *input_shape)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_input_update_is_batch_norms_backward_of_the_local_error(name):
    model, config, input_shape = make(name, dropout=0.2)
    network = model.network
    model.train()
    model.record = []
    inputs = constant_input(input_shape, batch=9, steps=20)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    functional.cross_entropy(model(inputs), labels).backward()
    step = model.record[0]
    weight, bias, norm = network.weights[0], network.biases[0], network.input_norm
    assert float(step.backward.betas[0].abs().sum()) > 0
    # Independent: torch's batch_norm (training mode, autograd through its batch statistics) on the drive F·x̄ + b,
    # paired with SPIDE's per-sample error at layer 0's current, gate ⊙ β / D, at the loop's scale.
    error = step.gates[0] * step.backward.betas[0] / D / config.loss_scale
    leaves = [t.detach().clone().requires_grad_(True) for t in (weight, bias, norm.weight, norm.bias)]
    drive = network.edges[0].operator.apply(mean_input(inputs, 1.0, torch.float64), leaves[0], leaves[1])
    normalised = functional.batch_norm(drive, None, None, leaves[2], leaves[3], training=True, eps=norm.eps)
    (normalised * error).sum().backward()
    for parameter, leaf in zip((weight, bias, norm.weight, norm.bias), leaves, strict=True):
        torch.testing.assert_close(parameter.grad, leaf.grad, rtol=1e-9, atol=1e-12)
    assert float(norm.weight.grad.abs().sum()) > 0 and float(weight.grad.abs().sum()) > 0
    # The centring BatchNorm's backward applies: the bias gets (up to rounding) nothing through the batch mean.
    assert float(bias.grad.abs().max()) < 1e-10 * float(weight.grad.abs().max())


@pytest.mark.parametrize("name", list(NETWORKS))
def test_refresh_stores_the_exact_training_set_statistics(name):
    model, _, input_shape = make(name)
    batches = [constant_input(input_shape, batch=size, steps=20, seed=seed) for seed, size in ((1, 5), (2, 8))]
    model.refresh_statistics(iter(batches))
    network = model.network
    with torch.no_grad():
        drive = torch.cat([network.edges[0].operator.apply(b[0], network.weights[0], network.biases[0])
                           for b in batches])
    dims = (0, 2, 3) if isinstance(network.edges[0].operator, Conv) else (0,)
    torch.testing.assert_close(network.input_norm.running_mean, drive.mean(dims), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(network.input_norm.running_var, drive.var(dims, unbiased=True), rtol=1e-10,
                               atol=1e-12)
    assert METHOD.refresh_statistics is not None


@pytest.mark.parametrize("name", list(NETWORKS))
def test_evaluation_and_netspec_fold_the_statistics_into_the_input_layer(name):
    from lavaflow.models.reference import simulate

    model, config, input_shape = make(name)
    model.refresh_statistics(iter([constant_input(input_shape, batch=16, steps=20, seed=5)]))
    model.eval()
    network = model.network
    inputs = constant_input(input_shape, batch=4, steps=20, seed=3)
    with torch.no_grad():
        logits = model(inputs)
    norm = network.input_norm
    scale = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach()
    spec = to_netspec(model, config, input_shape, "current", 20)
    synapse = spec.connections[0].synapse
    folded = network.weights[0].detach() * scale.reshape(-1, *[1] * (network.weights[0].dim() - 1))
    np.testing.assert_allclose(synapse.weight, folded.numpy(), rtol=1e-12, atol=1e-14)
    result = simulate(spec, inputs.numpy())
    np.testing.assert_allclose(result.logits, logits.numpy(), rtol=1e-10, atol=1e-10)
    assert sum(float(c.sum()) for c in result.counts.values()) > 0


# ---------------------------------------------------------------------------------------------- the Lava graph
def test_lava_graph_refuses_batch_norm_where_it_has_none():
    """The fused float graph trains BatchNorm on a dense F (its parity with the torch SPIDE: tests/test_spide_lava.py);
    lava-fixed, a conv F and the plain graph refuse it with the fix, and a model without its training-set moments
    is told to compute them."""
    from lavaflow.pipeline.lava.spide_graph import SPIDELavaGraph, check_lava_spide

    model, _, input_shape = make("dense")
    with pytest.raises(ConfigError, match=r"batch_norm.*lava-fixed.*--backend lava-float or --backend torch"):
        check_lava_spide(model, "lava-fixed")
    conv, _, _ = make("conv")
    with pytest.raises(ConfigError, match=r"batch_norm.*a conv F"):
        check_lava_spide(conv, "lava-float")
    with pytest.raises(Exception, match="refresh_statistics"):
        SPIDELavaGraph(model, forward_steps=8, batch_size=4, momentum=0.9, weight_decay=0.0)
    model.refresh_statistics(iter([constant_input(input_shape, batch=10, steps=1)]))
    with pytest.raises(ConfigError, match=r"batch_norm.*plain SPIDE graph.*fused"):
        SPIDELavaGraph(model, forward_steps=8, batch_size=4, momentum=0.9, weight_decay=0.0, fused=False)


def test_pooling_first_layer_is_refused():
    with pytest.raises(ConfigError, match="batch_norm"):
        build(SPIDEConfig(layers=("pool 2", "fc 4"), feedback="none", batch_norm=True), (1, 4, 4), 3, 5,
              torch.Generator().manual_seed(0))


def test_learns_digits_through_the_shared_loop(tmp_path):
    from lavaflow.models import netspec
    from lavaflow.models.reference import simulate
    from lavaflow.pipeline.rundir import RunDir
    from lavaflow.pipeline.training import train

    values = yaml.safe_load((PRESET_DIR / "spide-digits.yaml").read_text())
    model_config = build_dataclass(SPIDEConfig, {**values.pop("model"), "layers": ["fc 50"], "batch_norm": True,
                                                 "data_init": False}, "model")
    config = TrainConfig(method="spide", data="digits", threads=1, model=vars(model_config),
                         **{**values, "epochs": 4, "milestones": ()})
    metrics = train(config, model_config, METHOD, RunDir.create(tmp_path / "run"))
    assert metrics["test_accuracy"] >= 0.9, metrics
    # The run's NetSpec (BatchNorm folded with the stored statistics) reproduces the trained model's logits.
    from lavaflow.pipeline.data import load_data

    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert float(checkpoint["model"]["network.input_norm.running_var"].min()) > 0
    model = build(model_config, (1, 8, 8), 10, config.time_steps, torch.Generator().manual_seed(0))
    model.load_state_dict(checkpoint["model"])
    model.eval().double()
    _, test_set, _ = load_data("digits", time_steps=config.time_steps, limit=40)
    images = torch.stack([test_set[index][0] for index in range(40)]).double()
    inputs = images.unsqueeze(0).expand(config.time_steps, *images.shape)
    with torch.no_grad():
        logits = model(inputs)
    spec = netspec.NetSpec.load(tmp_path / "run" / "netspec.npz")
    result = simulate(spec, inputs.numpy())
    assert (result.logits.argmax(1) == logits.numpy().argmax(1)).mean() >= 0.95
    np.testing.assert_allclose(result.logits, logits.numpy(), rtol=1e-4, atol=1e-4)
