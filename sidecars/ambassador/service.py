"""ambassador assembly: settings -> service wired into the shared runtime."""

from __future__ import annotations

import asyncio

from sidecars.ambassador.config import Config
from sidecars.runtime import Runtime, Sidecar


class Ambassador:
    """Placeholder service: listeners and balancing are built in the ambassador issue."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        self.config, self.rt = config, rt

    async def run(self, stopping: asyncio.Event) -> int:
        self.rt.readiness.set(True)
        await stopping.wait()
        return 0


SIDECAR = Sidecar(
    name="ambassador",
    summary="Give the app one localhost address for an external cluster, balanced and healthy.",
    config=Config,
    admin_port=9182,
    build=Ambassador,
)
