"""Deadlines fired by a sweep: what is past its deadline fires once, what was discarded never."""

from __future__ import annotations

import asyncio

import pytest

from sidecars.ambassador.deadlines import Deadlines

pytestmark = pytest.mark.unit

TIMEOUT = 0.08  # the sweep runs every 10 ms (an eighth of this, at least 10 ms)


class Fired:
    """What fired, in order; `count(n)` waits (5 s at most) until n entries have."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.changed = asyncio.Event()

    def __call__(self, entry: str) -> None:
        self.entries.append(entry)
        self.changed.set()

    async def count(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.entries) < n:
                self.changed.clear()
                await self.changed.wait()


async def test_past_deadlines_fire_once_and_discarded_ones_never() -> None:
    fired = Fired()
    deadlines: Deadlines[str] = Deadlines(lambda: TIMEOUT, fired)
    deadlines.start()
    loop = asyncio.get_running_loop()
    try:
        now = loop.time()
        deadlines.add("late", now + TIMEOUT)
        deadlines.add("dropped", now + TIMEOUT)
        deadlines.add("later", now + 10 * TIMEOUT)
        deadlines.discard("dropped")
        await fired.count(1)
        assert fired.entries == ["late"]
        assert loop.time() >= now + TIMEOUT
        await fired.count(2)
        assert fired.entries == ["late", "later"]
        assert loop.time() >= now + 10 * TIMEOUT
        assert deadlines.entries == {}
        await asyncio.sleep(3 * TIMEOUT)  # nothing is left: nothing fires twice
        assert fired.entries == ["late", "later"]
    finally:
        await deadlines.close()


async def test_an_entry_pushed_back_during_a_sweep_waits_for_its_new_deadline() -> None:
    fired = Fired()
    loop = asyncio.get_running_loop()

    def fire(entry: str) -> None:
        fired(entry)
        if entry == "first":  # firing one entry re-arms another that is also due
            deadlines.add("second", loop.time() + 4 * TIMEOUT)

    deadlines: Deadlines[str] = Deadlines(lambda: TIMEOUT, fire)
    deadlines.start()
    try:
        now = loop.time()
        deadlines.add("first", now)
        deadlines.add("second", now)
        await fired.count(1)
        assert fired.entries == ["first"]
        assert "second" in deadlines.entries
        await fired.count(2)
        assert fired.entries == ["first", "second"]
        assert loop.time() >= now + 4 * TIMEOUT
    finally:
        await deadlines.close()
