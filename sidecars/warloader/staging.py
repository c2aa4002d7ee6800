"""Staged entries in the destination (temp files, stage dirs, records) and worker threads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sidecars.warloader import fsops, state
from sidecars.warloader.copier import Progress
from sidecars.warloader.errors import UnsafeArchive, dest_error

T = TypeVar("T")


def create_temp(dest: Path, name: str) -> Path:
    """A new empty temp file for `name`, created exclusively in the destination."""
    tmp = fsops.temp_path(dest, name, "tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None
    return tmp


def create_stage(dest: Path, name: str) -> Path:
    """A new private staging directory for `name` in the destination."""
    stage = fsops.temp_path(dest, name, "stage")
    try:
        stage.mkdir(mode=0o700)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None
    return stage


def chmod_fsync(tmp: Path, fd: int, modes: fsops.Modes | None) -> None:
    """Give the staged file its final mode/owner (if `modes`), then persist it."""
    try:
        if modes is not None:
            fsops.apply_modes(tmp, modes)
    except OSError as exc:
        raise dest_error(exc, str(tmp.parent)) from None
    fsync(fd, tmp)


def fsync(fd: int, tmp: Path) -> None:
    """fsync a staged file; a failure is the destination's."""
    try:
        os.fsync(fd)
    except OSError as exc:
        raise dest_error(exc, str(tmp.parent)) from None


def write_record(dest: Path, record: state.Record) -> None:
    """Write the install record; a failure is the destination's."""
    try:
        state.write(dest, record)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None


def check_zip(path: Path, name: str) -> None:
    """A .war/.jar/.zip must at least have a readable central directory."""
    import zipfile  # only here: a plain copy of other files never needs it

    try:
        with zipfile.ZipFile(path):
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
