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
            raise ConfigError(specs.brief(str(exc))) from None
        self.config, self.rt, self.resolve = config, rt, resolve
        self.running: dict[str, Running] = {}
        self.retiring: set[asyncio.Task[None]] = set()
        self.metrics = Metrics(
            rt.registry, lambda: [(r.spec.settings.mode, r.cluster) for r in self.running.values()]
        )
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
        try:
            self.running[spec.name] = await self._open(spec)
        except OSError as exc:
            self.rt.log.error("%s", exc, extra={"listener": spec.name})
            return False
        return True

    async def _open(self, spec: ListenerSpec) -> Running:
        """A started listener; OSError naming the listener and its address when it cannot
        listen (nothing is left behind then)."""
        running = Running(spec, self.metrics, self.rt.log, self.resolve)
        host, port = spec.settings.listen
        try:
            await running.start()
        except OSError as exc:
            await running.stop(0.0)
            raise OSError(
                f"listener {spec.name} cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        return running

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
            try:
                await self.reload()
            except Exception:  # a reload must never end reloading
                self.metrics.reloads.labels("error").inc()
                self.rt.log.exception("config reload failed, keeping the running config")

    async def reload(self) -> bool:
        """Re-read the config file and apply it as a whole; a file that cannot be applied in
        full is refused (one log line, counted) and the running config stays."""
        if not self.config.config:
            self.rt.log.info("reload asked, but no config file is set: nothing to do")
            return False
        try:
            new = specs.load_file(self.config.config, self.config)
            await self._apply(new)
        except (ValueError, OSError) as exc:
            self.metrics.reloads.labels("error").inc()
            self.rt.log.error(
                "config reload refused, keeping the running config: %s",
                "; ".join(specs.brief(str(exc))),
            )
            return False
        self.metrics.reloads.labels("success").inc()
        self.rt.log.info("config reloaded", extra={"listeners": [s.name for s in new]})
        return True

    async def _apply(self, new: list[ListenerSpec]) -> None:
        """Every new or moved listener is bound before anything running changes; when one
        cannot be, those just bound are closed, nothing else has changed, and OSError says
        why. Listeners that stay in place are reconfigured, the others retire (draining)."""
        wanted = {s.name: s for s in new}
        stay = {
            name
            for name, r in self.running.items()
            if name in wanted and _same_place(r.spec, wanted[name])
        }
        leaving = {r.spec.settings.listen: name for name, r in self.running.items()}
        leaving = {addr: name for addr, name in leaving.items() if name not in stay}
        fresh = [s for name, s in wanted.items() if name not in stay]
        # Free addresses first; an address a leaving listener holds is taken over last.
        fresh.sort(key=lambda s: s.settings.listen in leaving)
        started: list[Running] = []
        try:
            for spec in fresh:
                holder = leaving.get(spec.settings.listen)
                if holder is not None:
                    self.running[holder].listener.stop_accepting()
                started.append(await self._open(spec))
        except Exception:  # nothing half-applied, whatever went wrong
            await self._undo(started, list(leaving.values()))
            raise
        for name in stay:
            await self.running[name].reconfigure(wanted[name])
        for name in leaving.values():
            self._retire(self.running.pop(name))
        for running in started:
            self.running[running.spec.name] = running

    async def _undo(self, started: list[Running], leaving: list[str]) -> None:
        """Close listeners a refused reload bound; a leaving one that gave its address up
        already listens again from a new socket (its open connections keep running)."""
        loop = asyncio.get_running_loop()
        for running in started:
            await running.stop(loop.time())
        for name in leaving:
            old = self.running[name]
            if not old.listener.draining:
                continue
            self._retire(self.running.pop(name))
            if not await self._start(old.spec):
                self.rt.log.error("listener %s lost its address in a refused reload", name)

    def _retire(self, old: Running) -> None:
        """Stop accepting now; its connections finish in the background."""
        loop = asyncio.get_running_loop()
        old.listener.stop_accepting()
        until = loop.time() + self.config.shutdown_timeout
        task = spawn(f"drain of listener {old.spec.name}", old.stop(until), finite=True)
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)


def _same_place(old: ListenerSpec, new: ListenerSpec) -> bool:
    return (old.settings.listen, old.settings.mode) == (new.settings.listen, new.settings.mode)


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
