"""What tcp and http listeners share: binding, connection tracking, idle sweep and drain."""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Protocol

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.termination import Termination, terminates, termination_settings
from sidecars.ambassador.tls import Origination, tls_settings
from sidecars.runtime.tasks import spawn


class Conn(Protocol):
    """A tracked client connection."""

    nbytes: int
    idle_marks: int
    last_nbytes: int

    def abort(self) -> None: ...

    def busy(self) -> bool: ...

    def watch_idle(self) -> bool: ...

    def idle_since(self) -> float | None:
        """Loop time since which nothing is in flight on it, None while something is."""
        ...


class Server(Protocol):
    """What accepts a listener's connections (an asyncio.Server or the tcp acceptor)."""

    def close(self) -> None: ...


IDLE_CHECKS = 4  # an idle timeout is noticed within a quarter of its length
EVICT_IDLE_AFTER = 1.0  # seconds: at max_connections, a connection idle this long makes room
EVICT_SCAN_EVERY = 0.1  # seconds between scans for idle connections at the limit, at most
EVICT_BATCH = 64  # the oldest idle connections one scan keeps as the next to make room


class Listener:
    """A bound address feeding one cluster; subclasses decide what a connection does."""

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        self.name, self.settings, self.cluster = name, settings, cluster
        self.metrics, self.log = metrics, log
        self.max_connections = settings.max_connections  # read per connection: kept here
        self.conns: set[Conn] = set()
        self.server: Server | None = None
        self.draining = False
        self._sweeper: asyncio.Task[None] | None = None
        # read at scrape time: no gauge update per connection
        metrics.clients.labels(name).set_function(lambda: len(self.conns))
        self.latency = metrics.latency(name, settings.mode)
        self._victims: list[tuple[Conn, float]] = []  # idle at the last scan, oldest last
        self._next_scan = 0.0
        self.tls = Origination(settings, log, name) if settings.tls else None
        self.term = Termination(settings, log, name, metrics) if terminates(settings) else None

    async def start(self) -> None:
        self.server = await self._serve()
        self._sweeper = spawn(f"idle sweep of listener {self.name}", self._sweep())

    async def _serve(self) -> Server:
        raise NotImplementedError

    def reconfigure(self, settings: Config) -> None:
        """Apply new settings to new connections and requests (the address stays)."""
        if tls_settings(settings) != tls_settings(self.settings):
            try:  # checked when the config was read; a file broken since then keeps the old
                self.tls = Origination(settings, self.log, self.name) if settings.tls else None
            except (OSError, ValueError) as exc:
                self.log.warning("TLS files cannot be used, the previous ones stay: %s", exc)
        if termination_settings(settings) != termination_settings(self.settings):
            try:
                on = terminates(settings)
                self.term = Termination(settings, self.log, self.name, self.metrics) if on else None
            except (OSError, ValueError) as exc:
                self.log.warning("TLS files cannot be used, the previous ones stay: %s", exc)
        self.settings = settings
        self.max_connections = settings.max_connections

    def admit(self, conn: Conn) -> bool:
        """Track a new client connection; at max_connections the connection idle the longest
        is closed to make room, and only when none is idle is the new one refused."""
        if self.draining or (len(self.conns) >= self.max_connections and not self._evict_idle()):
            self.metrics.rejected.labels(self.name, "max_connections").inc()
            return False
        self.conns.add(conn)
        return True

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest, if one is idle enough. One scan of the
        connections keeps the EVICT_BATCH oldest idle ones as the next to go, and a scan that
        found no more than those waits EVICT_SCAN_EVERY before the next: a flood of new clients
        at the limit does not cost a scan of every connection each."""
        victims = self._victims
        while victims:
            conn, since = victims.pop()
            if conn in self.conns and conn.idle_since() == since:  # still idle since then
                self.metrics.rejected.labels(self.name, "idle_evicted").inc()
                conn.abort()
                self.conns.discard(conn)
                return True
        now = asyncio.get_running_loop().time()
        if now < self._next_scan:
            return False
        cutoff = now - EVICT_IDLE_AFTER
        idle = [
            (at, i, c)
            for i, c in enumerate(self.conns)
            if (at := c.idle_since()) is not None and at <= cutoff
        ]
        self._victims = [(c, at) for at, _, c in heapq.nsmallest(EVICT_BATCH, idle)][::-1]
        # a full batch may leave more behind: the next scan may come as soon as it is used up
        self._next_scan = now if len(idle) > EVICT_BATCH else now + EVICT_SCAN_EVERY
        return bool(self._victims) and self._evict_idle()

    def release(self, conn: Conn) -> None:
        self.conns.discard(conn)

    def stop_accepting(self) -> None:
        self.draining = True
        if self.server is not None:
            self.server.close()

    async def drain(self, deadline: float) -> None:
        """Stop accepting, let open connections finish until `deadline` (loop time), then cut
        what is left and stop the background work."""
        self.stop_accepting()
        loop = asyncio.get_running_loop()
        while self.conns and loop.time() < deadline:
            for conn in list(self.conns):
                if not conn.busy():
                    conn.abort()  # idle keep-alive connections are closed at once
            await asyncio.sleep(0.05)
        for conn in list(self.conns):
            conn.abort()
        await self.close()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.server is not None:
            self.server.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.idle_timeout / IDLE_CHECKS)
            for conn in list(self.conns):
                if not conn.watch_idle():
                    conn.idle_marks = 0
                    continue
                if conn.nbytes != conn.last_nbytes:
                    conn.last_nbytes, conn.idle_marks = conn.nbytes, 0
                    continue
                conn.idle_marks += 1
                if conn.idle_marks >= IDLE_CHECKS:
                    self.metrics.rejected.labels(self.name, "idle_timeout").inc()
                    conn.abort()

    def snapshot(self) -> dict[str, object]:
        host, port = self.settings.listen
        return {
            "name": self.name,
            "listen": f"{host}:{port}",
            "mode": self.settings.mode,
            "clients": len(self.conns),
            **self.cluster.snapshot(),
        }
