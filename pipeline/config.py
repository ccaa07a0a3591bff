"""Training configuration, resolved once: defaults < method defaults < preset < YAML file < command-line flags.

Presets are the method's recipe for a data set (``pipeline/configs/<method>-<data>.yaml``), used automatically.
The result is two frozen dataclasses, the shared ``TrainConfig`` and the method's own model config, written in
full to the run dir's ``config.yaml`` so that a run can be repeated from that file alone.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline.methods import Method, get_method

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class TrainConfig:
    """Options of the shared training loop (pipeline.training); the method's network lives in ``model``."""

    method: str
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    test_batch_size: int = 256
    time_steps: int = 8
    encoding: str | None = None  # None: the data set's default ("current" for images, "events" otherwise)
    seed: int = 0
    device: str = "cpu"
    optimizer: str = "adam"  # "adam" or "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()  # epochs at which the learning rate is multiplied by gamma
    gamma: float = 0.1
    warmup_iterations: int = 0  # linear learning-rate warm-up over the first iterations
    data_dir: str | None = None
    limit: int | None = None  # use only the first N samples of each split (quick runs)
    model: dict[str, Any] = field(default_factory=dict)  # the method's model config, resolved

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "test_batch_size", "time_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got {self.device!r}")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check a YAML/flag value against a dataclass field type; ints may stand for floats, lists for tuples."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        errors = []
        for option in typing.get_args(annotation):
            if option is type(None):
                continue
            try:
                return _coerce(name, value, option)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        (item,) = typing.get_args(annotation)[:1]
        return tuple(_coerce(name, v, item) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 5e-4 as a string
        except ValueError:
            pass
    if annotation in (int, str, bool) and isinstance(value, annotation) and not (
        annotation is int and isinstance(value, bool)
    ):
        return value
    raise ConfigError(f"{name} must be of type {getattr(annotation, '__name__', annotation)}, got {value!r}")


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate ``cls`` from a mapping, rejecting unknown keys with the list of valid ones."""
    valid = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(sorted(valid))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(f"{where}.{key}", value, hints[key]) for key, value in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return content


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if key == "model" and isinstance(value, dict):
            merged["model"] = {**merged.get("model", {}), **value}
        else:
            merged[key] = value
    return merged


def preset_path(method: str, data: str) -> Path:
    return PRESET_DIR / f"{method}-{data}.yaml"


def resolve_config(
    method: str, data: str | None = None, file: str | Path | None = None, flags: dict[str, Any] | None = None
) -> tuple[TrainConfig, Any, Method]:
    """Merge the layers into (TrainConfig, model config, Method); ``flags`` holds only options given explicitly."""
    file_values = read_yaml(file) if file else {}
    method = (flags or {}).get("method") or file_values.get("method") or method
    registered = get_method(method)
    data = (flags or {}).get("data") or file_values.get("data") or data or "digits"
    values: dict[str, Any] = {"method": method, "data": data, **registered.training_defaults}
    preset = preset_path(method, data)
    if preset.is_file():
        values = _merge(values, read_yaml(preset))
    values = _merge(values, file_values)
    values = _merge(values, {k: v for k, v in (flags or {}).items() if v is not None})
    model_values = values.pop("model", {}) or {}
    model_config = build_dataclass(registered.model_config, model_values, "model")
    values["model"] = dataclasses.asdict(model_config)
    return build_dataclass(TrainConfig, values, "config"), model_config, registered


def config_to_yaml(config: TrainConfig) -> str:
    """The fully resolved config, readable by ``--config`` to repeat the run."""
    values = dataclasses.asdict(config)
    values["milestones"] = list(config.milestones)
    return yaml.safe_dump(_plain(values), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
