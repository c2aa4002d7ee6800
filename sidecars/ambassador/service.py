"""ambassador assembly: listeners from settings or a file, live reload, readiness, /upstreams."""

from __future__ import annotations

import asyncio
import os
import signal

from sidecars.ambassador import spec as specs
from sidecars.ambassador.config import Config
from sidecars.ambassador.discovery import Resolver, system_resolve
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.running import Running
from sidecars.ambassador.spec import ListenerSpec
from sidecars.runtime import ConfigError, Runtime, Sidecar, admin
from sidecars.runtime.tasks import beat, spawn

READY_EVERY = 0.25  # seconds between readiness evaluations


class Ambassador:
    """Runs every declared listener; reloads the config file on change or SIGHUP."""

    def __init__(self, config: Config, rt: Runtime, resolve: Resolver = system_resolve) -> None:
        try:
            self.specs = specs.from_settings(config)
        except ValueError as exc:
            raise ConfigError(str(exc).split("\n")) from None
        self.config, self.rt, self.resolve = config, rt, resolve
        self.running: dict[str, Running] = {}
        self.retiring: set[asyncio.Task[None]] = set()
        self.metrics = Metrics(rt.registry, lambda: [r.cluster for r in self.running.values()])
        self.reload_wanted = asyncio.Event()
        rt.admin_app.add("/upstreams", self._upstreams)

    def _upstreams(self) -> admin.Reply:
        return admin.json_reply(
            {"listeners": [r.listener.snapshot() for r in self.running.values()]}
        )

    async def run(self, stopping: asyncio.Event) -> int:
        loop = asyncio.get_running_loop()
        for spec in self.specs:
            if not await self._start(spec):
                await self._stop_all(loop.time())
                return 1
        if not self.specs:
            self.rt.log.warning("no upstreams configured: nothing to proxy until a restart")
        self.rt.log.info(
            "listening",
            extra={"listeners": [r.listener.snapshot()["listen"] for r in self.running.values()]},
        )
        loop.add_signal_handler(signal.SIGHUP, self.reload_wanted.set)
        background = [
            spawn("readiness", self._readiness(), beat_every=READY_EVERY),
            spawn("reloads", self._reloads()),
        ]
        if self.config.config:
            background.append(spawn("config file watch", self._watch_file(self.config.config)))
        try:
            await stopping.wait()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        # Finish before the runtime's own limit so that a clean drain exits 0.
        await self._stop_all(loop.time() + self.config.shutdown_timeout * 0.9)
        return 0

    async def _start(self, spec: ListenerSpec) -> bool:
        running = Running(spec, self.metrics, self.rt.log, self.resolve)
        host, port = spec.settings.listen
        try:
            await running.start()
        except OSError as exc:
            self.rt.log.error(
                "listener %s cannot listen on %s:%d: %s",
                spec.name,
                host,
                port,
                exc.strerror or exc,
                extra={"listener": spec.name},
            )
            await running.stop(0.0)
            return False
        self.running[spec.name] = running
        return True

    async def _stop_all(self, deadline: float) -> None:
        await asyncio.gather(*(r.stop(deadline) for r in self.running.values()))
        await asyncio.gather(*self.retiring, return_exceptions=True)
        self.running.clear()

    async def _readiness(self) -> None:
        while True:
            if not self.specs:
                self.rt.readiness.set(False, "no upstreams configured (AMBASSADOR_UPSTREAMS)")
            elif not self.running:
                self.rt.readiness.set(False, "no listener")
            elif not any(r.cluster.available() for r in self.running.values()):
                self.rt.readiness.set(False, "no healthy member in any cluster")
            else:
                self.rt.readiness.set(True)
            beat()
            await asyncio.sleep(READY_EVERY)

    async def _watch_file(self, path: str) -> None:
        stamp = _stat(path)
        while True:
            await asyncio.sleep(self.config.file_interval)
            now = _stat(path)
            if now != stamp:
                stamp = now
                self.reload_wanted.set()

    async def _reloads(self) -> None:
        while True:
            await self.reload_wanted.wait()
            self.reload_wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Re-read the config file and apply it; a bad file is refused and the old one kept."""
        if not self.config.config:
            self.rt.log.info("reload asked, but no config file is set: nothing to do")
            return False
        try:
            new = specs.load_file(self.config.config, self.config)
        except ValueError as exc:
            self.metrics.reloads.labels("error").inc()
            self.rt.log.error(
                "config reload refused, keeping the running config: %s",
                str(exc).replace("\n", "; "),
            )
            return False
        ok = await self._apply(new)
        self.metrics.reloads.labels("success" if ok else "error").inc()
        self.rt.log.info("config reloaded", extra={"listeners": [s.name for s in new], "ok": ok})
        return ok

    async def _apply(self, new: list[ListenerSpec]) -> bool:
        loop = asyncio.get_running_loop()
        wanted = {s.name: s for s in new}
        drain_until = loop.time() + self.config.shutdown_timeout
        for name in list(self.running):
            old = self.running[name]
            spec = wanted.get(name)
            same_place = spec is not None and (
                spec.settings.listen == old.spec.settings.listen
                and spec.settings.mode == old.spec.settings.mode
            )
            if spec is not None and same_place:
                await old.reconfigure(spec)
                continue
            # Gone or moved: stop accepting now, let its connections finish in the background.
            del self.running[name]
            old.listener.stop_accepting()
            task = spawn(f"drain of listener {name}", old.stop(drain_until), finite=True)
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)
        ok = True
        for name, spec in wanted.items():
            if name not in self.running:
                ok = await self._start(spec) and ok
        return ok


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


SIDECAR = Sidecar(
    name="ambassador",
    summary="Give the app one localhost address for an external cluster, balanced and healthy.",
    config=Config,
    admin_port=9182,
    build=Ambassador,
)
