"""`--device cuda` trains the run `--device cpu` trains: every method, one seed, the exported NetSpecs compared.

Inputs are encoded from CPU generators and moved to the device (data.encoders), so both runs see the same spikes
and differ only by float rounding (float64 for ST-RSBP, float32 elsewhere). The comparison runs only where torch
sees a GPU: CI has none and skips it; run `pytest tests/test_cuda.py` on a GPU machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lavaflow.models.netspec import NetSpec
from lavaflow.pipeline.bptt import slayer_kernels_for_visible_gpus

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
from spec_helpers import assert_specs_close
from train_helpers import lavaflow

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = ["--data", "digits", "--limit", "60", "--batch-size", "20", "--epochs", "1", "--threads", "1"]
PRESETS = "pipeline/configs"
RUNS = {  # name: (arguments, YAML laid over the preset)
    "ide": (["--method", "ide"], None),
    "spide": (["--method", "spide"], None),  # the digits preset: BatchNorm folded into the input edge at export
    "spide-convnetf": (["--method", "spide", "--config", f"{PRESETS}/spide-digits-convnetf.yaml"], None),  # convT
    # dropout off: CUDA draws its masks from the GPU's generator, not the CPU's; 2 ANN epochs instead of 30
    "stdb": (["--method", "stdb"], "model: {conv_dropout: 0.0, classifier_dropout: 0.0, ann_epochs: 2}\n"),
    "strsbp": (["--method", "strsbp"], None),
    "bptt": (["--method", "bptt"], None),
}
RELATIVE_TOLERANCE = 1e-3  # of each array's largest entry; measured ≤ 4e-7 after a full digits epoch (H200)


def _train(tmp_path: Path, name: str, device: str) -> Path:
    arguments, overrides = RUNS[name]
    if overrides is not None:
        (tmp_path / "overrides.yaml").write_text(overrides)
        arguments = [*arguments, "--config", tmp_path / "overrides.yaml"]
    out = tmp_path / f"{name}-{device}"
    result = lavaflow("train", *arguments, *SMALL, "--device", device, "--out", out)
    assert result.returncode == 0, f"{name} on {device}:\n{result.stderr[-3000:]}"
    return out / "netspec.npz"


@needs_cuda
@pytest.mark.parametrize("name", list(RUNS))
def test_cuda_trains_and_exports_what_the_cpu_does(tmp_path: Path, name: str) -> None:
    cpu, cuda = (NetSpec.load(_train(tmp_path, name, device)) for device in ("cpu", "cuda"))
    # thresholds from data (STDB's balancing) round differently too: reals within the tolerance, the rest equal
    assert_specs_close(cpu, cuda, rel=RELATIVE_TOLERANCE, abs=1e-12, per_array_scale=True, where=name)


def test_slayer_compiles_for_the_visible_gpus_not_for_lava_dls_fixed_8_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """lava-dl sets "8.0" on every GPU of capability ≥ 8; a Hopper (9.0) then has no kernel image to run."""
    from lava.lib.dl.slayer import jitconfig

    monkeypatch.setattr(jitconfig, "TORCH_CUDA_ARCH_LIST", "8.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: [(9, 0), (8, 6), (9, 0)][index])
    slayer_kernels_for_visible_gpus()
    assert jitconfig.TORCH_CUDA_ARCH_LIST == "8.6;9.0"


def test_without_a_gpu_slayers_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from lava.lib.dl.slayer import jitconfig

    monkeypatch.setattr(jitconfig, "TORCH_CUDA_ARCH_LIST", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    slayer_kernels_for_visible_gpus()
    assert jitconfig.TORCH_CUDA_ARCH_LIST is None
