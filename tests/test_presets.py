"""Every shipped preset (pipeline/configs/*.yaml) is a valid config for its method: a typo in a key or a value
out of range would otherwise surface only when someone runs that preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from lavaflow.pipeline.config import resolve_config
from lavaflow.pipeline.methods import METHOD_MODULES

PRESETS = sorted((Path(__file__).resolve().parents[1] / "pipeline" / "configs").glob("*.yaml"))


def test_the_presets_are_found() -> None:
    assert len(PRESETS) >= 10


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_each_preset_resolves_for_its_method(preset: Path) -> None:
    method = preset.stem.split("-")[0]
    assert method in METHOD_MODULES, f"{preset.name} does not start with a method name"
    config, model_config, registered = resolve_config(method, file=preset)
    assert registered.name == method
    assert config.epochs >= 1 and config.learning_rate > 0
    assert model_config is not None
