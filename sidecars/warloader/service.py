"""warloader assembly: settings -> service wired into the shared runtime."""

from __future__ import annotations

import asyncio

from sidecars.runtime import Runtime, Sidecar
from sidecars.warloader.config import Config


class Loader:
    """Placeholder service: installing sources is built in the warloader issue. As an init
    container it exits when done; with --watch it stays up until SIGTERM."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        self.config, self.rt = config, rt

    async def run(self, stopping: asyncio.Event) -> int:
        self.rt.readiness.set(True)
        if self.config.watch:
            await stopping.wait()
        return 0


SIDECAR = Sidecar(
    name="warloader",
    summary="Install artifacts (e.g. a WAR) into the pod's shared volume, atomically and verified.",
    config=Config,
    admin_port=9184,
    build=Loader,
)
