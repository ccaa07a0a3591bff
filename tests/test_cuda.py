"""`--device cuda` trains the run `--device cpu` trains: every method, one seed, the exported NetSpecs compared.

Inputs are encoded from CPU generators and moved to the device (data.encoders), so both runs see the same spikes
and differ only by float rounding (float64 for ST-RSBP, float32 elsewhere). The comparison runs only where torch
sees a GPU: CI has none and skips it; run `pytest tests/test_cuda.py` on a GPU machine.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lavaflow.pipeline.bptt import slayer_kernels_for_visible_gpus

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite imports test files by path (importlib mode)
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


def _assert_close(a: object, b: object, where: str) -> None:
    """JSON values (the NetSpec header: shapes, names, thresholds) equal, floats within the tolerance."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12), f"{where}: {a} vs {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


@needs_cuda
@pytest.mark.parametrize("name", list(RUNS))
def test_cuda_trains_and_exports_what_the_cpu_does(tmp_path: Path, name: str) -> None:
    with np.load(_train(tmp_path, name, "cpu")) as cpu, np.load(_train(tmp_path, name, "cuda")) as cuda:
        assert sorted(cpu.files) == sorted(cuda.files)
        for key in cpu.files:
            a, b = cpu[key], cuda[key]
            if key == "__header__":  # JSON text: thresholds from data (STDB's balancing) may round differently
                _assert_close(json.loads(a.tobytes()), json.loads(b.tobytes()), f"{name} header")
                continue
            assert a.shape == b.shape, key
            if a.dtype.kind == "f" and a.size:
                scale = max(float(np.abs(a).max()), 1e-12)
                difference = float(np.abs(a - b).max())
                assert difference <= RELATIVE_TOLERANCE * scale, f"{name} {key}: {difference:.3g} of {scale:.3g}"
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{name} {key}")

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
