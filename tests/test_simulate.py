"""``lavaflow simulate``: which samples it measures, which keys it writes, its files, early checks and progress."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lavaflow.models.netspec import INPUT, Connection, Dense, Input, NetSpec, Readout, SoftResetNeurons
from lavaflow.pipeline import simulate
from lavaflow.pipeline.cli import EXIT_USER_ERROR, main
from lavaflow.pipeline.rundir import RunDir

EVALUATION_SET = 60  # the run's --limit: training measured test_accuracy on these 60 test samples


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small IDE run on digits; each test works on its own copy."""
    run = tmp_path_factory.mktemp("simulate") / "run"
    assert main(["train", "--method", "ide", "--data", "digits", "--epochs", "1", "--limit", str(EVALUATION_SET),
                 "--out", str(run)]) == 0
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_default_backends_measure_the_runs_evaluation_set(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(run)]) == 0
    out = capsys.readouterr().out
    values = metrics(run)
    for backend in ("torch", "lava-float", "lava-fixed"):
        assert values[f"simulate_samples_{backend}"] == EVALUATION_SET  # not the whole 360-sample test split
        assert values[f"spike_agreement_{backend}"] == 1.0
        assert backend in out
    assert "loihi2" not in out
    assert f"{EVALUATION_SET} test samples, the run's evaluation set" in out
    # the reference runs the trainer's semantics: on the same samples it reproduces training's own figure
    assert values["test_accuracy_torch"] == pytest.approx(values["test_accuracy"], abs=1e-9)


def test_a_limit_that_selects_another_subset_keeps_the_evaluation_figures(run: Path) -> None:
    assert main(["simulate", str(run), "--backend", "torch"]) == 0
    before = metrics(run)
    assert main(["simulate", str(run), "--backend", "torch", "--limit", "5"]) == 0
    after = metrics(run)
    for key in ("test_accuracy_torch", "simulate_samples_torch", "spike_agreement_torch", "spikes_per_sample"):
        assert after[key] == before[key], key
    assert after["simulate_samples_torch_first5"] == 5
    assert {"test_accuracy_torch_first5", "spike_agreement_torch_first5", "samples_per_second_torch_first5",
            "spikes_per_sample_first5"} <= set(after)
    # a limit that selects the evaluation set itself writes the plain keys
    assert main(["simulate", str(run), "--backend", "torch", "--limit", str(EVALUATION_SET)]) == 0
    assert f"test_accuracy_torch_first{EVALUATION_SET}" not in metrics(run)


def test_plots_per_backend_and_the_quantization_report_are_files(run: Path) -> None:
    assert main(["simulate", str(run), "--backend", "torch", "--backend", "lava-fixed", "--limit", "8"]) == 0
    for backend in ("torch", "lava-fixed"):
        for kind in ("raster", "firing_rates"):
            png = run / "plots" / f"{kind}_{backend}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    report = (run / simulate.QUANTIZATION_REPORT).read_text()
    assert "connection 0 (input → layer0).weight" in report and "input: payload" in report


def test_a_network_lava_cannot_take_fails_before_the_reference_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = RunDir.create(tmp_path / "delayed")
    two_layers = NetSpec(  # a 65-step delay: the Lava export takes 1..64 steps (Loihi 2's synaptic delays)
        Input((4,), "current"),
        {"h": SoftResetNeurons(np.zeros(3), 1.0), "p": SoftResetNeurons(np.zeros(2), 1.0)},
        (Connection(INPUT, "h", Dense(np.full((3, 4), 0.3)), delay_steps=0),
         Connection("h", "p", Dense(np.full((2, 3), 0.5)), delay_steps=65)),
        Readout("p", np.eye(2), np.zeros(2)),
        time_steps=4,
    )
    run_dir.save_netspec(two_layers)

    def slow_part(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reference simulation started before the export check")

    monkeypatch.setattr(simulate, "reference", slow_part)
    monkeypatch.setattr(simulate, "load_data", slow_part)
    assert main(["simulate", str(run_dir.path), "--backend", "lava-fixed"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "delay of 65 steps" in err and "--backend torch" in err and "Traceback" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _tiny_spec() -> NetSpec:
    return NetSpec(
        Input((4,), "current"),
        {"p": SoftResetNeurons(np.zeros(3), 1.0)},
        (Connection(INPUT, "p", Dense(np.full((3, 4), 0.3)), delay_steps=0),),
        Readout("p", np.eye(3), np.zeros(3)),
        time_steps=4,
    )


def test_many_samples_show_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    inputs = np.random.default_rng(0).random((4, 1200, 4))
    result = simulate.reference(_tiny_spec(), inputs, batch_size=500, description="torch: reference")
    assert result.predictions.shape == (1200,)
    assert "torch: reference" in terminal.getvalue() and "/1200" in terminal.getvalue()  # the bar was drawn


def test_lava_runs_in_chunks_and_keeps_the_sample_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many samples run as several Lava runs (so progress can move); results come back in order."""
    from lavaflow.pipeline.lava import run as lava_run

    calls: list[int] = []

    def fake_run_lava(spec: NetSpec, inputs: np.ndarray, **kwargs: object) -> lava_run.LavaResult:
        calls.append(inputs.shape[1])
        first = inputs[0, :, 0]
        return lava_run.LavaResult({"p": np.stack([first] * 3, axis=1)}, np.zeros((len(first), 3)),
                                 np.zeros((len(first), 3)), first.astype(np.int64), seconds=1.0, run_seconds=0.5)

    monkeypatch.setattr(lava_run, "run_lava", fake_run_lava)
    monkeypatch.setitem(simulate.LAVA_CHUNK, True, 10)
    inputs = np.broadcast_to(np.arange(25.0)[None, :, None], (4, 25, 4))
    counts, logits, predictions, seconds = simulate._lava(_tiny_spec(), inputs, "lava-float", fused=True)
    assert calls == [10, 10, 5]
    assert predictions.tolist() == list(range(25)) and counts[:, 0].tolist() == list(range(25))
    assert logits.shape == (25, 3) and seconds == 3.0


def test_a_potential_readout_agrees_by_its_logits_not_by_its_absent_output_spikes() -> None:
    """stdb's readout reads a potential, so its source never spikes: equal (zero) output counts would make agreement
    a check that cannot fail. Agreement compares the logits there, to 1e-9 relative; spike counts otherwise."""
    from types import SimpleNamespace

    from lavaflow.models.reference import SimulationResult

    silent = np.zeros((3, 4), dtype=np.int64)
    reference_logits = np.array([[1.0, -2.0], [0.5, 0.25], [3.0, 3.0]])
    oracle = SimulationResult({"out": silent}, np.zeros((3, 4)), reference_logits, np.zeros(3, dtype=np.int64), {})
    potential = SimpleNamespace(readout=SimpleNamespace(quantity="potential", source="out"))
    logits = reference_logits.copy()
    logits[1, 0] += 1e-6  # one sample off in its sixth digit
    logits[2, 1] += 1e-12  # summation order: still equal
    assert simulate.agreement(potential, silent, logits, oracle).tolist() == [True, False, True]
    rate = SimpleNamespace(readout=SimpleNamespace(quantity="rate", source="out"))
    counts = silent.copy()
    counts[0, 2] = 1
    assert simulate.agreement(rate, counts, logits, oracle).tolist() == [False, True, True]  # counts decide


def test_simulate_help_teaches_defaults_keys_and_files(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("default: torch lava-float lava-fixed", "test_accuracy_<backend>", "_first<n>",
                   "raster_<backend>.png", "firing_rates_<backend>.png", "quantization.txt", "evaluation set"):
        assert phrase in text, phrase


def test_without_backend_choice_a_network_lava_cannot_take_runs_on_torch_alone(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lavaflow.deploy import lowering
    from lavaflow.models.errors import NetSpecError

    def too_big(spec: NetSpec) -> None:
        raise NetSpecError("conv (64, 64, 5, 5) on (64, 14, 14) unrolls to 12544 × 12544 weights")

    monkeypatch.setattr(lowering, "check_lava_export", too_big)
    assert main(["simulate", str(run), "--limit", "5"]) == 0
    captured = capsys.readouterr()
    assert "running torch only" in captured.err and "12544 × 12544" in captured.err
    assert "torch" in captured.out and "lava-fixed" not in captured.out
    assert main(["simulate", str(run), "--limit", "5", "--backend", "lava-fixed"]) == EXIT_USER_ERROR  # asked for


def test_the_samples_are_encoded_exactly_as_trainings_evaluation_encodes_them(tmp_path: Path) -> None:
    """Rate spikes are random: same samples, generator and batches as training's evaluate, or other inputs."""
    import torch
    from torch.utils.data import DataLoader

    from lavaflow.pipeline import training
    from lavaflow.pipeline.data import Encoding, load_data

    seed, time_steps, batch_size, limit = 5, 4, 16, 40
    spec = NetSpec(
        Input((1, 8, 8), "rate"),
        {"p": SoftResetNeurons(np.zeros(10), 1.0)},
        (Connection(INPUT, "p", Dense(np.full((10, 64), 0.1)), delay_steps=0),),
        Readout("p", np.eye(10), np.zeros(10)),
        time_steps=time_steps,
        metadata={"data": "digits"},
    )
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            seen.append(inputs.clone())
            return torch.zeros(inputs.shape[1], 10)

    _, test_set, _ = load_data("digits", time_steps=time_steps, limit=limit, seed=seed)
    training.evaluate(Recorder(), DataLoader(test_set, batch_size=batch_size), Encoding.RATE, time_steps, "cpu",
                      seed)
    config = {"data": "digits", "seed": seed, "limit": limit, "test_batch_size": batch_size}
    samples = simulate._samples(RunDir(tmp_path), spec, config, {"test_samples": limit}, limit=None, data=None,
                                data_dir=None)
    assert samples.suffix == ""
    np.testing.assert_array_equal(samples.data.inputs, torch.cat(seen, dim=1).numpy())
    np.testing.assert_array_equal(samples.data.targets, test_set.tensors[1].numpy())


def test_a_run_dir_being_written_is_not_simulated(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (run / "metrics.json").read_bytes()
    with RunDir(run).lock():  # as a training still running in it holds it
        assert main(["simulate", str(run), "--backend", "torch"]) == EXIT_USER_ERROR
    assert "another lavaflow process" in capsys.readouterr().err
    assert (run / "metrics.json").read_bytes() == before
    assert main(["simulate", str(run), "--backend", "torch", "--limit", "3"]) == 0  # released


def test_large_networks_are_simulated_in_smaller_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A conv-sized network (here 200,000 neurons) goes 32 samples at a time, so its progress bar moves."""
    from lavaflow.models import reference as reference_module

    sizes: list[int] = []

    def recording(spec: NetSpec, inputs: np.ndarray, **kwargs: object) -> object:
        sizes.append(inputs.shape[1])
        return reference_module.simulate(spec, inputs, **kwargs)

    monkeypatch.setattr(simulate, "simulate", recording)
    big = NetSpec(Input((4,), "current"), {"p": SoftResetNeurons(np.zeros(200_000), 1.0)},
                  (Connection(INPUT, "p", Dense(np.full((200_000, 4), 0.3)), delay_steps=0),),
                  Readout("p", np.ones((3, 200_000)), np.zeros(3)), time_steps=4)
    result = simulate.reference(big, np.ones((4, 70, 4)))
    assert sizes == [32, 32, 6] and result.predictions.shape == (70,)
    sizes.clear()
    simulate.reference(_tiny_spec(), np.ones((4, 700, 4)))
    assert sizes == [512, 188]


@pytest.mark.parametrize("batch_size", [2.5, 0, "8"])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(batch_size: object) -> None:
    from lavaflow.models.errors import ConfigError

    spec = NetSpec(
        Input((3,), "current"),
        {"out": SoftResetNeurons(np.zeros(2), threshold=1.0)},
        [Connection(INPUT, "out", Dense(np.ones((2, 3))), 0)],
        Readout("out", np.eye(2), np.zeros(2)),
        time_steps=2,
    )
    with pytest.raises(ConfigError, match="batch_size"):
        simulate.reference(spec, np.zeros((2, 1, 3)), batch_size=batch_size)


def test_a_trained_run_driven_by_your_input_records_what_the_reference_computes(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--input on a run trained here: lava-fixed quantises as for data set samples; (T, n) traces, T of the file."""
    from lavaflow.deploy.quantize import exact_input_range, quantize
    from lavaflow.models.reference import simulate as reference_simulate

    spec = RunDir(run).load_netspec()
    time_steps = spec.time_steps + 3
    image = np.random.default_rng(0).integers(0, 17, spec.input.size) / 16  # digits' intensities lie on a 1/16 grid
    currents = np.repeat(image[None], time_steps, axis=0)
    np.save(tmp_path / "image.npy", currents)
    names = [f"{name}.{variable}" for name in spec.populations for variable in ("v", "spikes")]
    assert main(["simulate", str(run), "--backend", "lava-fixed", "--input", str(tmp_path / "image.npy"),
                 "--record", ",".join(names)]) == 0
    assert "equal to the reference simulator's" in capsys.readouterr().out
    inputs = currents.reshape(time_steps, 1, *spec.input.shape)
    fixed, _ = quantize(dataclasses.replace(spec, time_steps=time_steps), input_range=exact_input_range(inputs[0]))
    expected = reference_simulate(fixed, inputs, record=names).records
    with np.load(run / "records" / "lava-fixed.npz") as archive:
        assert sorted(archive.files) == sorted(names)
        for name in names:
            assert archive[name].shape == (time_steps, spec.populations[name.split(".")[0]].size)
            np.testing.assert_array_equal(archive[name], expected[name][:, 0], err_msg=name)
    assert sum(expected[name].sum() for name in names if name.endswith(".spikes")) > 0
    assert "test_accuracy_lava-fixed" not in metrics(run)  # one input is no accuracy


def test_another_encoder_or_steps_on_a_trained_run_writes_keys_that_say_so(run: Path) -> None:
    assert main(["simulate", str(run), "--backend", "torch", "--steps", "3", "--limit", "5"]) == 0
    assert main(["simulate", str(run), "--backend", "torch", "--steps", "3"]) == 0
    values = metrics(run)
    assert values["simulate_samples_torch_T3_first5"] == 5
    assert values["simulate_samples_torch_T3"] == EVALUATION_SET
    assert "test_accuracy_torch" not in values  # the evaluation set's own figure is not overwritten
