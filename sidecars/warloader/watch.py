"""--watch: keep installing new versions as path sources change and URL sources move on."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from sidecars.runtime.tasks import spawn
from sidecars.warloader.sources import Source

if TYPE_CHECKING:
    from sidecars.warloader.install import Installer
    from sidecars.warloader.service import Loader


DEBOUNCE = 0.4  # s: a tree being copied raises a burst of events; install once after it


async def run(loader: Loader, installer: Installer, stopping: asyncio.Event) -> None:
    """Until `stopping`: watch files' directories (not recursive), directories (recursive),
    and poll them and URLs; each change re-runs that source's install, a no-op when nothing
    differs."""
    paths = [s for s in loader.sources if not s.is_url]
    # no thread (and its memory) for a loader that polls URL sources only
    is_dir = (
        await asyncio.to_thread(lambda: [os.path.isdir(s.location) for s in paths]) if paths else []
    )
    files = [s for s, d in zip(paths, is_dir, strict=True) if not d]
    dirs = [s for s, d in zip(paths, is_dir, strict=True) if d]
    urls = [s for s in loader.sources if s.is_url]
    loader.log.info(
        "watching sources for changes",
        extra={"files": len(files), "directories": len(dirs), "urls": len(urls)},
    )
    tasks = []
    if files:
        tasks.append(spawn("file watch", _watch(loader, installer, files, False, stopping)))
    if dirs:
        tasks.append(spawn("directory watch", _watch(loader, installer, dirs, True, stopping)))
    for src in urls:
        poll = _poll(loader, installer, src, stopping)
        tasks.append(spawn(f"poll of {installer.target(src)}", poll))
    await asyncio.gather(*tasks)


def _root(src: Source, recursive: bool) -> str:
    return src.location if recursive else os.path.dirname(os.path.abspath(src.location))


async def _watch(
    loader: Loader,
    installer: Installer,
    sources: list[Source],
    recursive: bool,
    stopping: asyncio.Event,
) -> None:
    """Install a source again when a file event names something under its root, and every
    `poll_interval` without one (a no-op for an unchanged source); then also watch again a
    replaced or remounted directory. While inotify refuses (a limit reached) only the polls
    remain, announced by one warning per new error."""
    # here: a loader watching URL sources only is spared ctypes
    from sidecars.runtime.fileevents import DirWatch, WatchError

    roots = sorted({_root(s, recursive) for s in sources})
    touched: set[str] = set()
    changed = asyncio.Event()

    def on_change(path: str) -> None:
        touched.add(path)
        changed.set()

    def on_overflow() -> None:  # events were dropped: every source again
        touched.update(roots)
        changed.set()

    watch = DirWatch(on_change, on_overflow, recursive=recursive)
    error: str | None = None
    try:
        while not stopping.is_set():
            try:
                # newly watched roots (all at first): changes before the watch raised no event
                touched.update(watch.sync(roots))
                if error is not None:
                    error = None
                    loader.log.info("watching %s again", ", ".join(roots))
            except WatchError as exc:
                if str(exc) != error:
                    error = str(exc)
                    loader.log.warning(
                        "cannot watch %s: %s; polling every %gs",
                        ", ".join(roots),
                        exc,
                        loader.config.poll_interval,
                    )
            if touched:
                await _pause(DEBOUNCE, stopping)
                changed.clear()
                seen = set(touched)
                touched.clear()
                for src in sources:
                    root = _root(src, recursive)
                    if any(t == root or t.startswith(root + os.sep) for t in seen):
                        await loader.load_one(installer, src, quiet=True)
                continue  # sync first: a directory replaced meanwhile is watched again
            if not changed.is_set():
                await _pause(loader.config.poll_interval, stopping, changed)
                if not changed.is_set():  # a poll: bind mounts, network filesystems miss events
                    touched.update(roots)
    finally:
        watch.close()


async def _pause(seconds: float, stopping: asyncio.Event, *more: asyncio.Event) -> None:
    """`seconds`, or less if `stopping` (or any of `more`) is set meanwhile."""
    waits = [asyncio.ensure_future(e.wait()) for e in (stopping, *more)]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _poll(loader: Loader, installer: Installer, src: Source, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            async with asyncio.timeout(loader.config.poll_interval):
                await stopping.wait()
            return
        except TimeoutError:
            await _until_stopped(loader, installer, src, stopping)


async def _until_stopped(
    loader: Loader, installer: Installer, src: Source, stopping: asyncio.Event
) -> None:
    """Load `src`, but a stop calls the download off at once: a server may take its time (or
    drip forever), and the bytes received are kept for the next start to resume."""
    load = asyncio.ensure_future(loader.load_one(installer, src, quiet=True))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({load, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not load.done():
            load.cancel()
            await asyncio.wait([load])
            loader.log.info(
                "stopped the download of %s in progress; the next start resumes it",
                installer.target(src),
                extra={"artifact": installer.target(src)},
            )
