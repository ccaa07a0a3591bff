"""SPIDE's data-dependent initialisation (``model.data_init``, pipeline.spide.standardise_input_edge): the input
edge's current is standardised per unit over the first training batch, the torch and Lava trainers start from the
same weights, a run without it is unchanged, and a resumed run keeps its checkpoint's weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as functional

from lavaflow.models.errors import ConfigError, LavaflowError
from lavaflow.pipeline import spide_lava, training
from lavaflow.pipeline.config import TrainConfig
from lavaflow.pipeline.data import load_data
from lavaflow.pipeline.rundir import RunDir
from lavaflow.pipeline.spide import METHOD, SPIDEConfig, build, initialise, standardise_input_edge

TOLERANCE = 1e-5  # float32 weights: the standardised statistics hold to rounding


def _model(layers: tuple[str, ...], input_shape: tuple[int, ...], *, leak: float = 1.0, data_init: bool = True):
    config = SPIDEConfig(layers=layers, feedback="none" if len(layers) > 1 else "fc", leak=leak, data_init=data_init)
    return build(config, input_shape, 3, 6, torch.Generator().manual_seed(3))


def _images(batch: int, shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    """Non-negative intensities with a per-sample offset, so that the currents have a mean to remove."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *shape), generator=generator) * 0.5 + torch.rand((batch, 1, 1, 1), generator=generator)


def _currents(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, conv: dict | None) -> torch.Tensor:
    """F·x + b in float64, per unit on dim 1: written out here, not through the network's operator."""
    weight, bias, x = weight.double(), bias.double(), x.double()
    if conv is None:
        return x.flatten(1) @ weight.T + bias
    return functional.conv2d(x, weight, bias, **conv)


def _moments(currents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit (dense) or per channel over samples and positions (conv): mean and population sd."""
    dims = (0,) if currents.dim() == 2 else (0, 2, 3)
    return currents.mean(dims), currents.std(dims, correction=0)


CASES = {
    "dense": (("fc 12",), None),
    "conv": (("conv 5 k3 s2 p1", "fc 7"), dict(stride=2, padding=1)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("input_kind", ["current", "spikes"])
def test_the_input_current_has_mean_0_and_sd_1_per_unit(name: str, input_kind: str) -> None:
    layers, conv = CASES[name]
    shape = (1, 8, 8)
    model = _model(layers, shape)
    weight, bias = model.network.weights[0], model.network.biases[0]
    images = _images(40, shape)
    if input_kind == "current":
        inputs, mean_input = images.unsqueeze(0).expand(6, *images.shape), images
    else:  # time-varying input: the edge's presynaptic rate is the average over the T = 6 steps (λ = 1)
        spikes = (torch.rand((6, *images.shape), generator=torch.Generator().manual_seed(2)) < images / 1.5).float()
        inputs, mean_input = spikes, spikes.double().mean(0)
    old_weight, old_bias = weight.detach().clone(), bias.detach().clone()
    old_mean, old_sd = _moments(_currents(old_weight, old_bias, mean_input, conv))
    other = {key: value.clone() for key, value in model.state_dict().items()
             if key not in ("network.weights.0", "network.biases.0")}

    standardise_input_edge(model.network, inputs)

    mean, sd = _moments(_currents(weight.detach(), bias.detach(), mean_input, conv))
    assert float(mean.abs().max()) < TOLERANCE and float((sd - 1).abs().max()) < TOLERANCE, (mean, sd)
    # each unit's weights are the old ones over its old sd (direction kept), its bias (b − μ)/σ
    unit = (-1, *[1] * (weight.dim() - 1))
    torch.testing.assert_close(weight.detach().double(), old_weight.double() / old_sd.reshape(unit), rtol=1e-6,
                               atol=0)
    torch.testing.assert_close(bias.detach().double(), (old_bias.double() - old_mean) / old_sd, rtol=1e-6,
                               atol=1e-6)
    assert float(old_sd.min()) < 0.5 and float(old_mean.abs().max()) > 0.1  # the init really changed something
    for key, value in model.state_dict().items():  # only the input edge
        if key in other:
            assert torch.equal(value, other[key]), key


def test_a_unit_whose_current_never_varies_is_centred_not_scaled() -> None:
    model = _model(("fc 4",), (1, 2, 2))
    images = torch.ones((5, 1, 2, 2))  # the same image five times: every unit's current is constant
    weight = model.network.weights[0].detach().clone()
    standardise_input_edge(model.network, images.unsqueeze(0).expand(6, *images.shape))
    assert torch.equal(model.network.weights[0].detach(), weight)
    assert float(_currents(weight, model.network.biases[0].detach(), images, None).abs().max()) < TOLERANCE


def test_without_data_init_the_hook_changes_nothing() -> None:
    model = _model(("fc 12",), (1, 8, 8), data_init=False)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    images = _images(10, (1, 8, 8))
    initialise(model, images.unsqueeze(0).expand(6, *images.shape))
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="data_init"):
        SPIDEConfig(data_init="yes")  # type: ignore[arg-type]
    model = build(SPIDEConfig(layers=("pool 2", "fc 4"), feedback="none", data_init=True), (1, 4, 4), 3, 6,
                  torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="pooling"):
        initialise(model, torch.rand((6, 3, 1, 4, 4)))


# ---------------------------------------------------------------------------------------------- the trainers
def _config(epochs: int, data_init: bool, **overrides) -> tuple[TrainConfig, SPIDEConfig]:
    model_config = SPIDEConfig(layers=("fc 16",), feedback="fc", backward_steps=20, data_init=data_init)
    values = dict(method="spide", data="digits", epochs=epochs, batch_size=20, time_steps=4, optimizer="sgd",
                  learning_rate=0.1, momentum=0.9, weight_decay=5e-6, encoding="current", limit=60, seed=7,
                  threads=1, model=dataclasses.asdict(model_config))
    return TrainConfig(**{**values, **overrides}), model_config


class _FirstStepReachedError(Exception):
    """Raised where a trainer would take its first step: the test has the starting weights."""


def test_torch_and_lava_trainers_start_from_the_same_standardised_weights(monkeypatch, tmp_path) -> None:
    config, model_config = _config(1, True)
    started: dict[str, dict[str, torch.Tensor]] = {}

    def first_step(network, *args, **kwargs):
        started["torch"] = {key: value.clone() for key, value in network.state_dict().items()}
        raise _FirstStepReachedError

    class Graph:
        def __init__(self, model, **kwargs) -> None:
            started["lava"] = {key: value.clone() for key, value in model.state_dict().items()}
            raise _FirstStepReachedError

    monkeypatch.setattr(training, "train_step", first_step)
    monkeypatch.setattr(spide_lava, "SPIDELavaGraph", Graph)
    with pytest.raises(_FirstStepReachedError):
        training.train(config, model_config, METHOD, RunDir.create(tmp_path / "torch"))
    with pytest.raises(_FirstStepReachedError):
        spide_lava.train_spide_lava(config, model_config, RunDir.create(tmp_path / "lava"))

    assert started["torch"].keys() == started["lava"].keys()
    for key, value in started["torch"].items():
        assert torch.equal(value, started["lava"][key]), key
    # Independently: epoch 0's first batch is the first 20 of the sampler's shuffle (randperm seeded seed + 0);
    # over it the input current is standardised, and nothing else moved from the plain build.
    train_set, _, info = load_data("digits", time_steps=4, limit=60, seed=7)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed))[:20]
    images = torch.stack([train_set[int(i)][0] for i in order])
    weights = started["torch"]
    mean, sd = _moments(_currents(weights["network.weights.0"], weights["network.biases.0"], images, None))
    assert float(mean.abs().max()) < TOLERANCE and float((sd - 1).abs().max()) < TOLERANCE
    plain = build(dataclasses.replace(model_config, data_init=False), info.input_shape, info.num_classes, 4,
                  torch.Generator().manual_seed(config.seed)).state_dict()
    assert not torch.equal(plain["network.weights.0"], weights["network.weights.0"])
    for key, value in plain.items():
        if key not in ("network.weights.0", "network.biases.0"):
            assert torch.equal(value, weights[key]), key


def test_without_data_init_a_run_is_byte_identical_to_one_without_the_hook(tmp_path) -> None:
    config, model_config = _config(1, False)
    training.train(config, model_config, METHOD, RunDir.create(tmp_path / "hook"))
    no_hook = dataclasses.replace(METHOD, initialise=None)
    training.train(config, model_config, no_hook, RunDir.create(tmp_path / "plain"))
    for name in (RunDir.CHECKPOINT, RunDir.NETSPEC, RunDir.CONFIG):
        assert (tmp_path / "hook" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name


def test_a_resumed_run_keeps_its_weights_and_equals_an_uninterrupted_one(tmp_path) -> None:
    calls: list[int] = []

    def counted(model, inputs) -> None:
        calls.append(inputs.shape[1])
        initialise(model, inputs)

    method = dataclasses.replace(METHOD, initialise=counted)
    config, model_config = _config(2, True)
    training.train(config, model_config, method, RunDir.create(tmp_path / "once"))
    training.train(_config(1, True)[0], model_config, method, RunDir.create(tmp_path / "twice"))
    assert calls == [20, 20]
    training.train(config, model_config, method, RunDir.create(tmp_path / "twice"), resume=True)
    assert calls == [20, 20], "a resumed run initialises nothing"
    for name in (RunDir.CHECKPOINT, RunDir.NETSPEC, RunDir.CONFIG):
        assert (tmp_path / "twice" / name).read_bytes() == (tmp_path / "once" / name).read_bytes(), name


def test_a_run_written_before_data_init_existed_still_resumes(tmp_path) -> None:
    config, model_config = _config(1, False)
    run = tmp_path / "old"
    training.train(config, model_config, METHOD, RunDir.create(run))
    lines = (run / RunDir.CONFIG).read_text().splitlines(keepends=True)
    (run / RunDir.CONFIG).write_text("".join(line for line in lines if "data_init" not in line))
    metrics = training.train(_config(2, False)[0], model_config, METHOD, RunDir.create(run), resume=True)
    assert metrics["epochs"] == 2
    with pytest.raises(LavaflowError, match="data_init"):  # but a run of another initialisation is another network
        training.train(_config(3, True)[0], SPIDEConfig(**{**dataclasses.asdict(model_config), "data_init": True}),
                       METHOD, RunDir.create(run), resume=True)
