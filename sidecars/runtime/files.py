"""Durable small-file writes shared by the sidecars: checkpoints, install records, markers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename into it), not only the files' data."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_fully(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a single write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, data: bytes, mode: int = 0o600, tmp: Path | None = None) -> None:
    """Replace `path` with `data` so that a crash at any moment leaves the old or the new
    content, never a mix: temp file, fsync, rename, fsync of the directory. Blocking."""
    tmp = tmp or path.with_name(path.name + ".tmp")
    # a fresh file: whatever is at the temp name (a planted symlink, a leftover) is removed,
    # never followed or written through
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        write_fully(fd, data)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full volume: give its space back
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
