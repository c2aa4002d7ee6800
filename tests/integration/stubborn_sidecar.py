"""A sidecar built on the real runtime whose service ignores the stop request: it lets the
tests see the drain deadline and the second-signal exit, which no well-behaved sidecar shows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sidecars.runtime import CommonConfig, Runtime, Sidecar


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    pass


class Stubborn:
    def __init__(self, config: Config, rt: Runtime) -> None:
        self.rt = rt

    async def run(self, stopping: asyncio.Event) -> int:
        self.rt.readiness.set(True)
        await asyncio.sleep(3600)  # never looks at `stopping`
        return 0


SIDECAR = Sidecar(name="stubborn", summary="test", config=Config, admin_port=0, build=Stubborn)

if __name__ == "__main__":
    SIDECAR.main()
