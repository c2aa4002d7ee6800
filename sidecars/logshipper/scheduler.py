"""One loop drives every file: file events, periodic polls and rescans, and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from watchfiles import awatch

from sidecars.logshipper.batching import Budget
from sidecars.logshipper.opening import fixed_root
from sidecars.logshipper.tailer import Tailer
from sidecars.runtime.tasks import beat, spawn


def watch_roots(patterns: tuple[str, ...]) -> list[str]:
    """Existing directories to watch for the globs: each one's fixed part, not recursively.
    A recursive watch walks the app's tree following every directory symlink, in the event
    loop's thread (a chain of directories each linking twice to the next took minutes at 18
    levels): files below a `**` are found by rescans and their growth by polls instead."""
    return sorted({root for root in map(fixed_root, patterns) if os.path.isdir(root)})


class Scheduler:
    """Runs the tailer: no task or fd per file, just this loop, woken by watchfiles events,
    by room in the budget, or by the poll interval; it rescans the globs every
    `rescan_interval` (events can be missed: network filesystems, overflowing queues)."""

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
        self._roots: list[str] = []
        self._watch_stop: asyncio.Event | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._old_watchers: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping`: read what changed, keep memory within the budget."""
        next_tick = 0.0
        stop_waiter = asyncio.create_task(self._wake_on(stopping))
        try:
            while not stopping.is_set():
                beat()
                mono = time.monotonic()
                if mono >= self._rescan_due:
                    self.tailer.scan()
                    self._rescan_due = mono + self.rescan_interval
                    self._update_watch()
                if mono >= next_tick:
                    self.tailer.tick()
                    next_tick = mono + self.poll_interval
                if self.budget.full:
                    await self._wait(self._budget_room(), next_tick)
                    self._wake.clear()
                    continue
                more = self.tailer.read_pass(time.time(), lambda: self.budget.full)
                if more:
                    # work left (or the budget filled up: the top of the loop waits for room)
                    await asyncio.sleep(0)  # let senders and the admin server run
                    continue
                wake_at = min(next_tick, self._rescan_due)
                await self._wait(self._wake.wait(), wake_at)
                self._wake.clear()
        finally:
            stop_waiter.cancel()
            await self._stop_watch()

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

    def _update_watch(self) -> None:
        roots = watch_roots(self.tailer.patterns)
        if roots == self._roots and self._watch_task is not None:
            return
        self._roots = roots
        if self._watch_stop is not None:
            self._watch_stop.set()
        if self._watch_task is not None:
            self._old_watchers.add(self._watch_task)
            self._watch_task.add_done_callback(self._old_watchers.discard)
        if not roots:
            self._watch_task = None
            return
        self._watch_stop = asyncio.Event()
        watch = self._watch(roots, self._watch_stop)
        self._watch_task = spawn("file events", watch, finite=True)

    async def _watch(self, roots: list[str], stop: asyncio.Event) -> None:
        try:
            async for changes in awatch(
                *roots,
                watch_filter=None,
                debounce=20,
                step=20,
                stop_event=stop,
                recursive=False,
                ignore_permission_denied=True,
            ):
                for _, path in changes:
                    self.on_change(path)
        except Exception as exc:  # noqa: BLE001 - events are an optimisation; polling remains
            self.log.warning(
                "file events unavailable; relying on polling",
                extra={"error": str(exc), "roots": roots},
            )

    async def _stop_watch(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
        tasks = {*self._old_watchers, *([self._watch_task] if self._watch_task else [])}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
