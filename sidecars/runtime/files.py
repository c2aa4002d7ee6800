"""Durable small-file writes shared by the sidecars: checkpoints, install records, markers.
Paths are plain strings (or path-likes): no pathlib, which also imports urllib.parse and
ipaddress (0.9 MiB of an idle sidecar)."""

from __future__ import annotations

import contextlib
import os

StrPath = str | os.PathLike[str]


def fsync_dir(path: StrPath) -> None:
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


def write_atomic(path: StrPath, data: bytes, mode: int = 0o600, tmp: StrPath | None = None) -> None:
    """Replace `path` with `data` so that a crash at any moment leaves the old or the new
    content, never a mix: temp file, fsync, rename, fsync of the directory. Blocking."""
    path = os.fspath(path)
    tmp = tmp or path + ".tmp"
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
    fsync_dir(os.path.dirname(path) or ".")
