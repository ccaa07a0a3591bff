"""Training configuration, resolved once: defaults < method defaults < preset < YAML file < command-line flags.

Presets are the method's recipe for a data set (``pipeline/configs/<method>-<data>.yaml``), used automatically.
The result is two frozen dataclasses, the shared ``TrainConfig`` and the method's own model config, written in
full to the run dir's ``config.yaml`` so that a run can be repeated from that file alone.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lavaflow.models.errors import ConfigError
from lavaflow.pipeline.methods import METHOD_MODULES, Method, get_method

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class TrainConfig:
    """Options of the shared training loop (pipeline.training); the method's network lives in ``model``.

    Every value is checked here, whoever builds the config (YAML, flags or library code): a wrong type or range
    is a ConfigError naming the key, never a TypeError deep in the loop. numpy integers count as integers.
    """

    method: str
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    test_batch_size: int = 256
    time_steps: int = 8
    encoding: str | None = None  # None: the data set's default ("current" for images, "events" otherwise)
    seed: int = 0
    device: str = "cpu"
    # CPU threads per worker. 1 by default: a run's numbers then do not depend on the machine (IDE's float sums
    # change with the thread count), and a worker never oversubscribes a busy machine (torch's default of a thread
    # per core ran 5-9x slower beside other CPU-heavy processes; on an idle 2-core CPU 2 threads are ~1.4x faster
    # for IDE on digits). 0: the available cores shared among this machine's workers.
    threads: int = 1
    optimizer: str = "adam"  # "adam" or "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()  # epochs at which the learning rate is multiplied by gamma
    # "step": ×gamma at each milestone; "cosine": from learning_rate down to 0 along half a cosine over all the
    # iterations of `epochs` (milestones and gamma then unused).
    schedule: str = "step"
    gamma: float = 0.1
    warmup_iterations: int = 0  # linear learning-rate warm-up over the first iterations
    data_dir: str | None = None
    limit: int | None = None  # use only the first N samples of each split (quick runs)
    # Training-time augmentation of image data (pipeline.data.augment; evaluation never augments): mirror each
    # image left-right with probability 0.5, and move it by up to augment_shift pixels down and across.
    augment_flip: bool = False
    augment_shift: int = 0
    model: dict[str, Any] = field(default_factory=dict)  # the method's model config, resolved

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, _coerce(f"config.{item.name}", getattr(self, item.name),
                                                        hints[item.name]))
        for name in ("epochs", "batch_size", "test_batch_size", "time_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config.{name} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"config.limit (--limit) must be at least 1 sample, got {self.limit}; leave it out to "
                              "use every sample")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"config.seed must be a non-negative integer below 2**63, got {self.seed}")
        if self.augment_shift < 0:
            raise ConfigError(f"config.augment_shift must be at least 0 pixels, got {self.augment_shift}")
        if self.threads < 0:
            raise ConfigError(f"config.threads (--threads) must be at least 1 (or 0 for automatic), got "
                              f"{self.threads}")
        if self.schedule not in ("step", "cosine"):
            raise ConfigError(f"config.schedule must be 'step' or 'cosine', got {self.schedule!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"config.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        floats = {"learning_rate": (self.learning_rate > 0, "positive"), "gamma": (self.gamma > 0, "positive"),
                  "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
                  "weight_decay": (self.weight_decay >= 0, "at least 0")}
        for name, (valid, bound) in floats.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and valid):
                raise ConfigError(f"config.{name} must be finite and {bound}, got {value}")
        if any(milestone < 0 for milestone in self.milestones) or self.warmup_iterations < 0:
            raise ConfigError(f"config.milestones and config.warmup_iterations must not be negative, got "
                              f"{list(self.milestones)} and {self.warmup_iterations}")
        device = self.device
        if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ConfigError(f"config.device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check a YAML/flag value against a dataclass field type; ints may stand for floats, lists for tuples.

    numpy scalars count as the Python numbers they hold; booleans are not numbers; a float where an integer is
    needed is refused (a batch of 2.5 samples is a mistake, not something to round).
    """
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
    is_bool = isinstance(value, (bool, np.bool_))
    if annotation is int and isinstance(value, numbers.Integral) and not is_bool:
        return int(value)
    if annotation is float and isinstance(value, numbers.Real) and not is_bool:
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 5e-4 as a string
        except ValueError:
            pass
    if annotation is bool and is_bool:
        return bool(value)
    if annotation is str and isinstance(value, str):
        return value
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation)
    raise ConfigError(f"{name} must be {kind or getattr(annotation, '__name__', annotation)}, got {value!r}")


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
    except (TypeError, ValueError) as error:  # a model config's own checks; ConfigError passes through
        if isinstance(error, ConfigError):
            raise
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
    method: str | None, data: str | None = None, file: str | Path | None = None, flags: dict[str, Any] | None = None
) -> tuple[TrainConfig, Any, Method]:
    """Merge the layers into (TrainConfig, model config, Method); ``flags`` holds only options given explicitly.

    The method comes from the flags, else the config file, else ``method``: a run's config.yaml names its method,
    so ``--config RUN/config.yaml`` alone repeats the run.
    """
    file_values = read_yaml(file) if file else {}
    method = (flags or {}).get("method") or file_values.get("method") or method
    if not method:
        raise ConfigError(f"no training method given: pass --method ({', '.join(METHOD_MODULES)}), or a --config "
                          "file with a `method:` key (as every run's config.yaml has)")
    if not isinstance(method, str):
        raise ConfigError(f"config.method must be a string ({', '.join(METHOD_MODULES)}), got {method!r}")
    registered = get_method(method)
    data = (flags or {}).get("data") or file_values.get("data") or data or "digits"
    if not isinstance(data, str):
        raise ConfigError(f"config.data must be a data set name, got {data!r}")
    values: dict[str, Any] = {"method": method, "data": data, **registered.training_defaults}
    preset = preset_path(method, data)
    if preset.is_file():
        values = _merge(values, read_yaml(preset))
    values = _merge(values, file_values)
    values = _merge(values, {k: v for k, v in (flags or {}).items() if v is not None})
    model_values = values.pop("model", {}) or {}
    if not isinstance(model_values, dict):
        raise ConfigError(f"config.model must be a mapping of the method's model keys, got {model_values!r}")
    model_config = build_dataclass(registered.model_config, model_values, "model")
    values["model"] = dataclasses.asdict(model_config)
    config = build_dataclass(TrainConfig, values, "config")
    check_device(config.device)
    return config, model_config, registered


def check_device(device: str) -> None:
    """Refuse a CUDA device this machine does not have, before any file is written."""
    if not device.startswith("cuda"):
        return
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if available == 0:
        raise ConfigError(f"device {device!r} (--device or config.device) asks for CUDA, but no CUDA device is "
                          "available on this machine; use --device cpu")
    if index >= available:
        raise ConfigError(f"device {device!r} (--device or config.device) does not exist: this machine has "
                          f"{available} CUDA device(s), cuda:0 to cuda:{available - 1}")


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
