"""One loop drives every file: file events, periodic polls and rescans, and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from sidecars.logshipper.batching import Budget
from sidecars.logshipper.opening import fixed_root
from sidecars.logshipper.tailer import Tailer
from sidecars.runtime.tasks import beat

if TYPE_CHECKING:
    from sidecars.runtime.fileevents import DirWatch

OVERFLOW_LOG_EVERY = 60.0  # s: a flood of events may overflow the kernel's queue again and again


def watch_roots(patterns: tuple[str, ...]) -> list[str]:
    """Directories to watch for the globs: each one's fixed part, not recursively (a missing
    one is awaited in its parent). A recursive watch would walk the app's tree in the event
    loop's thread (a chain of directories each linking twice to the next took minutes at 18
    levels): files below a `**` are found by rescans and their growth by polls instead."""
    return sorted(set(map(fixed_root, patterns)))


class Scheduler:
    """Runs the tailer: no task or fd per file, just this loop, woken by file events
    (inotify), by room in the budget, or by the poll interval; it rescans the globs every
    `rescan_interval` (events can be missed: network filesystems), and at once, with a poll
    of every file, when the kernel's event queue overflowed."""

    def __init__(
        self,
        tailer: Tailer,
        budget: Budget,
        log: logging.Logger,
        *,
        poll_interval: float,
        rescan_interval: float,
    ) -> None:
        self.tailer = tailer
        self.budget = budget
        self.log = log
        self.poll_interval = poll_interval
        self.rescan_interval = rescan_interval
        self._wake = asyncio.Event()
        self._rescan_due = 0.0
        self._tick_due = 0.0
        self._watch: DirWatch | None = None
        self._watch_error: str | None = None  # the last one logged: one line per new error
        self._overflow_logged = -OVERFLOW_LOG_EVERY

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping`: read what changed, keep memory within the budget."""
        stop_waiter = asyncio.create_task(self._wake_on(stopping))
        try:
            while not stopping.is_set():
                beat()
                mono = time.monotonic()
                if mono >= self._rescan_due:
                    self.tailer.scan()
                    self._rescan_due = mono + self.rescan_interval
                    self._update_watch()
                if mono >= self._tick_due:
                    self.tailer.tick()
                    self._tick_due = mono + self.poll_interval
                if self.budget.full:
                    await self._wait(self._budget_room(), self._tick_due)
                    self._wake.clear()
                    continue
                more = self.tailer.read_pass(time.time(), lambda: self.budget.full)
                if more:
                    # work left (or the budget filled up: the top of the loop waits for room)
                    await asyncio.sleep(0)  # let senders and the admin server run
                    continue
                wake_at = min(self._tick_due, self._rescan_due)
                await self._wait(self._wake.wait(), wake_at)
                self._wake.clear()
        finally:
            stop_waiter.cancel()
            if self._watch is not None:
                self._watch.close()

    async def _wake_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self._wake.set()

    async def _budget_room(self) -> None:
        """Room in the budget, or any wake-up (stopping included)."""
        room = asyncio.ensure_future(self.budget.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({room, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
            wake.cancel()

    async def _wait(self, what: object, until: float) -> None:
        timeout = max(0.0, until - time.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await what  # type: ignore[misc]

    def wake(self) -> None:
        self._wake.set()

    def on_change(self, path: str) -> None:
        if not self.tailer.mark(path):
            self._rescan_due = min(self._rescan_due, time.monotonic() + 0.05)
        self._wake.set()

    def on_overflow(self) -> None:
        """Events were dropped: rescan the globs and poll every file now."""
        mono = time.monotonic()
        self._rescan_due = self._tick_due = mono
        self._wake.set()
        if mono - self._overflow_logged >= OVERFLOW_LOG_EVERY:
            self._overflow_logged = mono
            self.log.warning("file events overflowed; rescanning and polling every file")

    def _update_watch(self) -> None:
        """Watch the roots as they are now (a replaced directory is watched again); when
        inotify refuses (a limit reached), one warning per new error: polls keep reading."""
        roots = watch_roots(self.tailer.patterns)
        if self._watch is None:
            if not roots:
                return
            from sidecars.runtime.fileevents import DirWatch  # ctypes: only once there is a root

            self._watch = DirWatch(self.on_change, self.on_overflow)
        from sidecars.runtime.fileevents import WatchError

        try:
            self._watch.sync(roots)
        except WatchError as exc:
            if str(exc) != self._watch_error:
                self._watch_error = str(exc)
                self.log.warning(
                    "file events unavailable; relying on polling",
                    extra={"error": str(exc), "roots": roots},
                )
            return
        if self._watch_error is not None:
            self._watch_error = None
            self.log.info("file events available again", extra={"roots": roots})
