"""Files that hold customer data: readable by their owner only, whatever the umask."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

OWNER_ONLY = 0o600


def private_open(path: Path, encoding: str = "utf-8") -> IO[str]:
    """`path` opened for writing (emptied first), created or tightened to owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY)
    os.fchmod(fd, OWNER_ONLY)  # an older file keeps its mode otherwise
    return os.fdopen(fd, "w", encoding=encoding, newline="")


def private_file(path: Path) -> None:
    """Create `path` empty and owner-only if it does not exist (a database file, say)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, OWNER_ONLY)
    os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or not at all (written aside, synced, then renamed), owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def content_path(root: Path, sha256: str) -> Path:
    """Where a content-addressed store under `root` keeps the bytes of digest `sha256`."""
    return root / sha256[:2] / sha256
