"""Shared fixtures. Tests find the offline data in $LAVAFLOW_DATA_DIR, falling back to ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if "LAVAFLOW_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LAVAFLOW_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture
def shared_data() -> Path:
    """The offline data folder (FSDD, a real N-MNIST recording); skips when it is absent."""
    path = Path(os.environ.get("LAVAFLOW_DATA_DIR", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"offline data folder {path} is absent (set LAVAFLOW_DATA_DIR)")
    return path
