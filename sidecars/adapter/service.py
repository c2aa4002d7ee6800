"""adapter assembly: settings -> service wired into the shared runtime."""

from __future__ import annotations

import asyncio

from sidecars.adapter.config import Config
from sidecars.runtime import Runtime, Sidecar


class Adapter:
    """Placeholder service: the translation modes are built in the adapter issue."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        self.config, self.rt = config, rt

    async def run(self, stopping: asyncio.Event) -> int:
        self.rt.readiness.set(True)
        await stopping.wait()
        return 0


SIDECAR = Sidecar(
    name="adapter",
    summary="Serve /health for a monitoring system from the app's /metrics, and the reverse.",
    config=Config,
    admin_port=9183,
    build=Adapter,
)
