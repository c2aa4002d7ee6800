"""Timeouts fired by a periodic sweep: no timer handle is made and cancelled per connection or
request, which on the hot path costs more than the rare timeout it guards against."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sidecars.runtime.tasks import spawn

T = TypeVar("T", bound=Hashable)


class Deadlines(Generic[T]):
    """Entries with a deadline (loop time); `fire(entry)` is called for each one past it, within
    an eighth of `timeout()` (at least 10 ms, at most 1 s) late. An entry leaves when it fires or
    when `discard` takes it out."""

    def __init__(self, timeout: Callable[[], float], fire: Callable[[T], None]) -> None:
        self.timeout, self.fire = timeout, fire
        self.entries: dict[T, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str = "timeouts") -> None:
        self._task = spawn(name, self._sweep())

    def add(self, entry: T, deadline: float) -> None:
        self.entries[entry] = deadline

    def discard(self, entry: T) -> None:
        entries = self.entries
        if entry in entries:  # (compiled, `in` and `del` are direct calls, `pop` a method lookup)
            del entries[entry]

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, max(0.01, self.timeout() / 8)))
            now, entries = loop.time(), self.entries
            for entry, deadline in list(entries.items()):
                # an earlier fire in this sweep may have taken (or re-added) this entry
                if deadline <= now and entries.get(entry) == deadline:
                    del entries[entry]
                    self.fire(entry)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
