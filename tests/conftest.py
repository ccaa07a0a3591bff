"""Shared fixtures and suite-wide settings.

Tests find the offline data in $LAVAFLOW_DATA_DIR, falling back to ../shared/data.

Threads: one BLAS/OpenMP thread per process unless the caller chose otherwise. The suite runs many small tensors
and forks Lava processes; on a shared, loaded CI box torch's default threads make training several times slower
(threads spin waiting for cores), and forked Lava processes would each inherit that pool. Set before torch or
numpy is imported, so that they read it; subprocesses (the CLI, torchrun) inherit it.

Hypothesis: no deadline (a loaded machine must not fail a correct test), derandomized and without an example
database, so every run of the suite tries the same examples (set HYPOTHESIS_PROFILE=explore for random ones).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if "LAVAFLOW_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LAVAFLOW_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(scope="session", autouse=True)
def torch_threads() -> None:
    """torch in this process uses the thread count the environment asks for (1 unless set otherwise), even if
    something imported torch before this file set the variable."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


@pytest.fixture
def shared_data() -> Path:
    """The offline data folder (FSDD, a real N-MNIST recording); skips when it is absent."""
    path = Path(os.environ.get("LAVAFLOW_DATA_DIR", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"offline data folder {path} is absent (set LAVAFLOW_DATA_DIR)")
    return path
