"""Staged entries in the destination (temp files, stage dirs, records) and worker threads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sidecars.warloader import beneath, fsops, state
from sidecars.warloader.copier import Progress
from sidecars.warloader.errors import DestinationError, UnsafeArchive, dest_error

T = TypeVar("T")


def create_temp(dfd: int, dest: Path, name: str) -> tuple[str, int]:
    """A new empty temp file for `name`, created exclusively in the destination; its name
    and a read-write descriptor."""
    tmp = fsops.temp_name(name, "tmp")
    try:
        return tmp, beneath.create_file(dfd, tmp)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None


def create_stage(dfd: int, dest: Path, name: str) -> tuple[str, int]:
    """A new private staging directory for `name` in the destination; its name and an open
    descriptor (everything inside is created relative to it)."""
    stage = fsops.temp_name(name, "stage")
    try:
        beneath.clear(dfd, stage)
        os.mkdir(stage, 0o700, dir_fd=dfd)
        return stage, beneath.open_at(dfd, stage, beneath.DIR_FLAGS)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None


def chmod_fsync(fd: int, dest: Path, modes: fsops.Modes | None) -> None:
    """Give the staged file its final mode/owner (if `modes`), then persist it."""
    try:
        if modes is not None:
            fsops.apply_modes(fd, modes)
        os.fsync(fd)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None


def write_record(dfd: int, dest: Path, record: state.Record) -> None:
    """Write the install record; a failure is the destination's."""
    try:
        state.write(dfd, record)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None


def open_staged(dfd: int, dest: Path, tmp: str) -> int:
    """Open our staged file again to read it (to unpack or check it)."""
    try:
        fd = beneath.open_regular(dfd, tmp, os.O_RDONLY)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None
    if fd is None:
        raise DestinationError(f"cannot read {dest / tmp}: replaced by something else meanwhile")
    return fd


def check_zip(fd: int, name: str, max_files: int) -> None:
    """A .war/.jar/.zip must at least have a readable central directory (of at most
    `max_files` entries: zipfile would hold them all in memory)."""
    import zipfile  # only here: a plain copy of other files never needs it

    from sidecars.warloader.zipdir import bound_zip_directory

    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            bound_zip_directory(f, max_files)
            with zipfile.ZipFile(f):
                pass
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"{name} is not a readable zip archive: {exc}") from None


async def thread(progress: Progress, fn: Callable[..., T], *args: object) -> T:
    """Run blocking work in a thread; on cancellation tell it to stop and wait for its cleanup."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        progress.abort.set()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what we report
        raise
