"""logshipper assembly: settings -> service wired into the shared runtime."""

from __future__ import annotations

import asyncio

from sidecars.logshipper.config import Config
from sidecars.runtime import Runtime, Sidecar


class Shipper:
    """Placeholder service: the tail -> bulk pipeline is built in the logshipper issue."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        self.config, self.rt = config, rt

    async def run(self, stopping: asyncio.Event) -> int:
        self.rt.readiness.set(True)
        await stopping.wait()
        return 0


SIDECAR = Sidecar(
    name="logshipper",
    summary="Tail log files on the pod's shared volume and ship every record to Elasticsearch.",
    config=Config,
    admin_port=9181,
    build=Shipper,
)
