"""The demo's promise on digits: trained IDE and bptt networks survive the trip to Lava float and fixed point.

The fixture runs the demo itself (pipeline.demo.run_demo) with fewer epochs than `make demo`, so that the suite
stays quick on a loaded machine; what Lava has to reproduce does not depend on how long the networks trained.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from lavaflow.pipeline import demo as demo_module
from lavaflow.pipeline.cli import EXIT_USER_ERROR, main
from lavaflow.pipeline.config import resolve_config
from lavaflow.pipeline.demo import DEMO_BACKENDS, DEMO_DATA, DEMO_METHODS, run_demo

# Catches a hang, not slowness: the module takes ~15 s on an idle 2-core CPU, so this allows a machine 20× slower.
pytestmark = pytest.mark.timeout(300)
EPOCHS = {"ide": 8, "bptt": 10}  # the presets train 30 and 40; these reach ~97 % on seed 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], str]:
    """``run_demo`` with the demo's presets cut to EPOCHS: its run dirs, its rows and the table it printed."""
    out = tmp_path_factory.mktemp("demo")

    def briefly(method: str, data: str | None = None, file=None, flags: dict | None = None):
        return resolve_config(method, data, file, {**(flags or {}), "epochs": EPOCHS[method]})

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as printed:
        patch.setattr(demo_module, "resolve_config", briefly)
        rows = run_demo(out)
    return out, rows, printed.getvalue()


def test_demo_trains_ide_and_bptt(demo: tuple[Path, list[dict], str]) -> None:
    _, rows, table = demo
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == set(DEMO_METHODS) == {"ide", "bptt"}
    assert DEMO_DATA == "digits" and DEMO_BACKENDS == ("torch", "lava-float", "lava-fixed")
    assert by_method["ide"]["epochs"] == 8 and by_method["bptt"]["epochs"] == 10
    assert by_method["ide"]["test_accuracy"] >= 0.95  # measured 96.9 % (8 epochs)
    assert by_method["bptt"]["test_accuracy"] >= 0.95  # measured 96.7 % (10 epochs)
    assert "360 samples" in table and all(f"\n{method} " in table for method in DEMO_METHODS)


@pytest.mark.parametrize("method", ["ide", "bptt"])
def test_accuracy_survives_the_trip_to_lava(demo: tuple[Path, list[dict], str], method: str) -> None:
    out, _, _ = demo
    metrics = json.loads((out / method / "metrics.json").read_text())
    for backend in ("torch", "lava-float", "lava-fixed"):
        assert metrics[f"simulate_samples_{backend}"] == 360  # the whole digits test split
    # The reference simulator runs the NetSpec with the trainer's semantics: it reproduces the torch model.
    assert abs(metrics["test_accuracy_torch"] - metrics["test_accuracy"]) < 1e-9
    # The demo's promise: Lava float within 0.1 pp, Lava fixed within 0.3 pp of torch, every sample's spikes equal.
    assert abs(metrics["test_accuracy_lava-float"] - metrics["test_accuracy_torch"]) <= 0.001
    assert abs(metrics["test_accuracy_lava-fixed"] - metrics["test_accuracy_torch"]) <= 0.003
    assert metrics["spike_agreement_lava-float"] == 1.0  # spike for spike with the float reference
    assert metrics["spike_agreement_lava-fixed"] == 1.0  # bit for bit with the fixed-point reference
    # Equal spikes mean equal output spike counts; the network-wide count includes the output population's.
    assert metrics["output_spikes_per_sample_lava-float"] == metrics["output_spikes_per_sample_torch"]
    assert metrics["spikes_per_sample"] >= metrics["output_spikes_per_sample_torch"] > 0


def test_simulate_rejects_loihi2_without_lava_loihi(demo: tuple[Path, list[dict], str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out, _, _ = demo
    assert main(["simulate", str(out / "bptt"), "--backend", "loihi2"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "lava-loihi" in err and "Traceback" not in err


def test_simulate_needs_a_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(tmp_path), "--backend", "torch"]) == EXIT_USER_ERROR
    assert "not a lavaflow run dir" in capsys.readouterr().err
