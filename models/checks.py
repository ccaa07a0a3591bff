"""Value checks shared by the NetSpec records, the neuron kinds and the FixedNetSpec (one place, no casting).

They live apart from models.netspec so that a neuron kind's module (models.kinds) can validate its node without
importing the NetSpec that lists it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from lavaflow.models.errors import LavaflowError, NetSpecError


def check_array(name: str, value: object, ndim: int) -> np.ndarray:
    """Validate without casting: a float ndarray of the given rank with finite values."""
    if not isinstance(value, np.ndarray):
        raise NetSpecError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise NetSpecError(f"{name}: expected {ndim} dimensions, got shape {value.shape}")
    if value.dtype.kind != "f":
        raise NetSpecError(f"{name}: expected a floating-point array, got dtype {value.dtype}")
    if not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.isfinite(value).sum())
        raise NetSpecError(f"{name}: {bad} non-finite value(s) (NaN or inf); the training run diverged")
    return value


def check_real(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    error: type[LavaflowError] = NetSpecError,
) -> float:
    """``value`` as a float if it is a finite real number in [low, high] (numpy scalars included), else ``error``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise error(f"{name}: expected a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise error(f"{name}: expected a finite number in [{low:g}, {high:g}], got {number:g}")
    return number


def check_integer(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    error: type[LavaflowError] = NetSpecError,
) -> int:
    """``value`` as an int if it is an integer in [low, high] (numpy integers included; not 2.0, not True)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise error(f"{name}: expected an integer, got {value!r} ({type(value).__name__})")
    if not low <= int(value) <= high:
        raise error(f"{name}: expected an integer in [{low:g}, {high:g}], got {int(value)}")
    return int(value)


def store_real(node: object, name: str, low: float = -math.inf, high: float = math.inf) -> None:
    """Check a float field of a frozen node and store it as a Python float (a numpy scalar would not serialise)."""
    object.__setattr__(node, name, check_real(name, getattr(node, name), low, high))


def store_integer(record: object, attribute: str, label: str, low: float = -np.inf, high: float = np.inf) -> int:
    """Check an integer field of a frozen record and store it as a Python int (a numpy scalar would not save)."""
    value = check_integer(label, getattr(record, attribute), low, high)
    object.__setattr__(record, attribute, value)
    return value


def check_population_shape(bias: np.ndarray, shape: tuple[int, ...]) -> None:
    """A population's (C, H, W) ``shape``, if given, must hold one neuron per bias entry."""
    if shape and int(np.prod(shape)) != bias.shape[0]:
        raise NetSpecError(f"population shape {shape} does not hold {bias.shape[0]} neurons")
