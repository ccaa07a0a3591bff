"""Third-party chatter is dropped at its source, and only the known lines: everything else still reaches the user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lavaflow.pipeline import quiet


def test_only_the_known_lines_of_a_noisy_import_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "noisy_library_for_test.py").write_text(
        "import sys\n"
        "print('WARNING: optional toolbox could not be found!')\n"
        "print('a line the user must still see')\n"
        "print('No CUDA runtime is found, using CUDA_HOME=x', file=sys.stderr)\n"
        "print('an error the user must still see', file=sys.stderr)\n"
        "VALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(quiet.NOISY_IMPORTS, "noisy_library_for_test",
                        ("WARNING: optional toolbox", "No CUDA runtime is found"))
    monkeypatch.delitem(sys.modules, "noisy_library_for_test", raising=False)
    quiet.silence_import_noise()
    quiet.silence_import_noise()  # idempotent
    assert sum(isinstance(finder, quiet._QuietFinder) for finder in sys.meta_path) == 1
    import noisy_library_for_test

    assert noisy_library_for_test.VALUE == 42
    captured = capsys.readouterr()
    assert captured.out == "a line the user must still see\n"
    assert captured.err == "an error the user must still see\n"


def test_the_memory_benchmark_prints_no_profiler_lines() -> None:
    code = ("import torch; from lavaflow.pipeline.benchmarks.ide_memory import _peak_memory_bytes; "
            "x = torch.ones(8, 8, requires_grad=True); "
            "print(_peak_memory_bytes(lambda: (x @ x).sum().backward(), torch.device('cpu')) > 0)")
    env = {key: value for key, value in os.environ.items() if key != "KINETO_LOG_LEVEL"}  # as a user starts
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert "STAGE" not in result.stderr and "Completed Stage" not in result.stderr, result.stderr
