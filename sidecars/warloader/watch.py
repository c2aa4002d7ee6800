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


ARMED_AFTER_MS = 1000  # with no event, awatch yields (empty) after this long


async def run(loader: Loader, installer: Installer, stopping: asyncio.Event) -> None:
    """Until `stopping`: watch files' directories (not recursive), directories (recursive),
    and poll URLs; each change re-runs that source's install, a no-op when nothing differs."""
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
    # here: a loader watching URL sources only is spared watchfiles' 1.2 MiB of memory
    import watchfiles

    roots = sorted({_root(s, recursive) for s in sources})
    while not stopping.is_set():
        armed = False
        try:
            async for changes in watchfiles.awatch(
                *roots,
                watch_filter=None,
                recursive=recursive,
                debounce=400,
                stop_event=stopping,
                yield_on_timeout=True,  # the first yield says the watch is armed
                rust_timeout=ARMED_AFTER_MS,
            ):
                if not armed:
                    armed = True
                    # a change made before the watch was armed raised no event: look once
                    for src in sources:
                        await loader.load_one(installer, src, quiet=True)
                touched = {os.path.dirname(p) if not recursive else p for _, p in changes}
                for src in sources:
                    root = _root(src, recursive)
                    if any(t == root or t.startswith(root + os.sep) for t in touched):
                        await loader.load_one(installer, src, quiet=True)
        except (OSError, RuntimeError) as exc:
            # a watched directory vanished (e.g. a volume remounted): retry after a pause
            loader.log.warning("cannot watch %s: %s", ", ".join(roots), exc)
            try:
                async with asyncio.timeout(loader.config.poll_interval):
                    await stopping.wait()
            except TimeoutError:
                pass


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
