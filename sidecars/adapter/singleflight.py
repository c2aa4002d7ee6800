"""A short cache with single-flight: concurrent callers within the window share one call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Calls `produce` at most once per `ttl` seconds, however many callers ask at once.

    The shared call runs in a task this object owns: a caller that goes away (a probe that
    disconnects) does not cancel it for the others; `close()` cancels and awaits it."""

    def __init__(self, produce: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._produce, self._ttl = produce, ttl
        self._value: T | None = None
        self._at = -1e18
        self._task: asyncio.Task[T] | None = None
        self.calls = 0

    def fresh(self) -> T | None:
        """The cached value while it is within the window, else None (no call made)."""
        if self._value is not None and time.monotonic() - self._at < self._ttl:
            return self._value
        return None

    async def get(self) -> T:
        value = self.fresh()
        if value is not None:
            return value
        if self._task is None:
            self.calls += 1
            self._task = asyncio.create_task(self._run())
        return await asyncio.shield(self._task)

    async def _run(self) -> T:
        try:
            value = await self._produce()
            self._value, self._at = value, time.monotonic()
            return value
        finally:
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
