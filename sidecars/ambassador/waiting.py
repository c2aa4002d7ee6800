"""Requests waiting for a member under its connection limit, looked at every few milliseconds
while any wait: no wake-up call on the hot path where a member frees a slot."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

POLL = 0.005  # seconds between looks while something waits


class Waiter(Protocol):
    def resume(self) -> bool:
        """Try again: True when it got a member or waits no more."""

    def expire(self) -> None:
        """Its wait is over without a member."""


class Waiting:
    """First come, first served: a look stops at the first waiter still without a member."""

    def __init__(self) -> None:
        self.queue: deque[tuple[Waiter, float]] = deque()
        self.gone: set[Waiter] = set()  # left while queued: dropped at the next look
        self._task: asyncio.Task[None] | None = None

    def add(self, waiter: Waiter, deadline: float) -> None:
        self.queue.append((waiter, deadline))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())

    def discard(self, waiter: Waiter) -> None:
        """`waiter` (queued) waits no more: it leaves at the next look, even from behind one
        still without a member."""
        self.gone.add(waiter)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        queue, gone = self.queue, self.gone
        while queue:
            await asyncio.sleep(POLL)
            now = loop.time()
            blocked = False
            for _ in range(len(queue)):
                waiter, deadline = queue.popleft()
                if gone and waiter in gone:
                    gone.discard(waiter)
                    continue
                if not blocked and waiter.resume():
                    continue
                blocked = True
                if deadline <= now:
                    waiter.expire()
                else:
                    queue.append((waiter, deadline))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
