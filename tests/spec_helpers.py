"""NetSpec comparison for the tests (not a test module: no test_ prefix)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def assert_specs_close(a: object, b: object, *, rel: float, abs: float, per_array_scale: bool = False,
                       where: str = "spec") -> None:
    """Same records, containers and types; integers and strings equal; reals and float arrays within rel/abs.

    ``per_array_scale``: a float array's tolerance is ``rel`` times its largest entry (weights trained on two devices
    carry the same absolute rounding in their small entries as in their large ones).
    """
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_specs_close(getattr(a, f.name), getattr(b, f.name), rel=rel, abs=abs,
                               per_array_scale=per_array_scale, where=f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype.kind == b.dtype.kind, where
        if a.dtype.kind != "f":
            np.testing.assert_array_equal(b, a, err_msg=where)
        elif per_array_scale:
            scale = max(float(np.abs(a).max()), 1e-12) if a.size else 1.0
            np.testing.assert_allclose(b, a, rtol=0, atol=rel * scale, err_msg=where)
        else:
            np.testing.assert_allclose(b, a, rtol=rel, atol=abs, err_msg=where)
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_specs_close(a[key], b[key], rel=rel, abs=abs, per_array_scale=per_array_scale,
                               where=f"{where}.{key}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_specs_close(x, y, rel=rel, abs=abs, per_array_scale=per_array_scale, where=f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
