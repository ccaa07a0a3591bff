"""Atomic file writes: a crash or Ctrl-C leaves the previous file intact, never half a file.

The temporary file is created with mode 0666 filtered by the user's umask (as ``open()`` would), not mkstemp's
0600, so that files in a run dir get the same permissions as the figures and anything else the user writes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def _create_temporary(path: Path) -> tuple[int, Path]:
    """An exclusive new file beside ``path``; the kernel applies the umask to mode 0666."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
