"""A real sidecar process with one fault injected by monkeypatching, in this test file only:
`python faulty_sidecar.py <fault> <trigger file>`. The patched code behaves as shipped until the
trigger file exists, so a test sees the sidecar healthy first and can time the failure."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn


def _armed(trigger: str) -> Callable[[], bool]:
    return lambda: os.path.exists(trigger)


def _fault() -> ValueError:
    return ValueError("injected fault")


def ambassador(fault: str, armed: Callable[[], bool]) -> NoReturn:
    from sidecars.ambassador.health import HealthChecker
    from sidecars.ambassador.service import SIDECAR

    shipped = HealthChecker.round

    async def round(self: HealthChecker) -> None:
        if armed():
            if fault == "health-raises":
                raise _fault()
            await asyncio.Event().wait()  # health-hangs: the round never ends
        await shipped(self)

    HealthChecker.round = round  # type: ignore[method-assign]
    SIDECAR.main([])


def logshipper(fault: str, armed: Callable[[], bool]) -> NoReturn:
    from sidecars.logshipper.scheduler import Scheduler
    from sidecars.logshipper.service import SIDECAR
    from sidecars.logshipper.tailer import Tailer

    shipped_tick, shipped_wait = Tailer.tick, Scheduler._wait

    def tick(self: Tailer) -> None:
        if armed() and fault == "reader-raises":
            raise _fault()
        shipped_tick(self)

    async def wait(self: Scheduler, what: Any, until: float) -> None:
        if armed() and fault == "reader-hangs":
            await asyncio.Event().wait()
        await shipped_wait(self, what, until)

    Tailer.tick = tick  # type: ignore[method-assign]
    Scheduler._wait = wait  # type: ignore[method-assign]
    SIDECAR.main([])


def warloader(fault: str, armed: Callable[[], bool]) -> NoReturn:
    from sidecars.warloader import watch
    from sidecars.warloader.service import SIDECAR

    shipped = watch._root

    def root(src: Any, recursive: bool) -> str:
        if armed() and fault == "watch-raises":
            raise _fault()
        return shipped(src, recursive)

    watch._root = root
    SIDECAR.main([])


def adapter(fault: str, armed: Callable[[], bool]) -> NoReturn:
    from sidecars.adapter.service import SIDECAR, Adapter

    shipped = Adapter._routes

    def routes(self: Adapter) -> Any:
        if armed() and fault == "start-raises":
            raise _fault()
        return shipped(self)

    Adapter._routes = routes  # type: ignore[method-assign]
    SIDECAR.main([])


if __name__ == "__main__":
    sidecar, fault = sys.argv[1].split(":", 1)
    run = {"adapter": adapter, "ambassador": ambassador, "logshipper": logshipper}
    run.get(sidecar, warloader)(fault, _armed(sys.argv[2]))
