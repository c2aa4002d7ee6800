"""One listener at run time: its cluster, discovery, health checks and proxy, reconfigurable."""

from __future__ import annotations

import asyncio
import logging

from sidecars.ambassador.balancer import Balancer
from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.discovery import Discovery, Resolver, source_label, system_resolve
from sidecars.ambassador.health import HealthChecker
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import EjectPolicy
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.spec import ListenerSpec
from sidecars.runtime.tasks import spawn


def _eject(spec: ListenerSpec) -> EjectPolicy:
    s = spec.settings
    return EjectPolicy(s.eject_failures, s.eject_time, s.eject_max_time)


def _listener_class(mode: str) -> type[Listener]:
    """The proxy of a mode, imported by the first listener in that mode: the four modes' modules
    together hold 0.6 MiB of memory, and a sidecar usually runs one."""
    if mode == "http":
        from sidecars.ambassador.http import HttpListener

        return HttpListener
    if mode == "redis":
        from sidecars.ambassador.redis import RedisListener

        return RedisListener
    if mode == "memcached":
        from sidecars.ambassador.memcached import MemcachedListener

        return MemcachedListener
    from sidecars.ambassador.tcp import TcpListener

    return TcpListener


class Running:
    """A started listener and the background work that keeps its members fresh."""

    def __init__(
        self,
        spec: ListenerSpec,
        metrics: Metrics,
        log: logging.Logger,
        resolve: Resolver = system_resolve,
    ) -> None:
        self.spec, self.metrics, self.log, self.resolve = spec, metrics, log, resolve
        s = spec.settings
        self.cluster = Cluster(spec.name, s.policy, _eject(spec), RetryBudget(s.retry_budget))
        self.cluster.set_load(s.slow_start, s.member_max_connections)
        kind = _listener_class(s.mode)
        self.listener: Listener = kind(spec.name, s, self.cluster, metrics, log)
        self.tasks: set[asyncio.Task[None]] = set()

    def _discovery(self) -> Discovery:
        s = self.spec.settings
        counter = self.metrics.discovery

        def count(kind: str, outcome: str) -> None:
            counter.labels(self.spec.name, kind, outcome).inc()

        return Discovery(
            self.cluster,
            self.spec.sources,
            dns_interval=s.dns_interval,
            dns_family=s.dns_family,
            dns_server=s.dns_server,
            file_interval=s.file_interval,
            timeout=max(s.connect_timeout, 2.0),
            log=self.log,
            count=count,
            resolve=self.resolve,
        )

    def _health(self) -> HealthChecker:
        s = self.spec.settings
        return HealthChecker(
            self.cluster,
            s.health_check,
            interval=s.health_interval,
            timeout=s.health_timeout,
            rise=s.health_rise,
            fall=s.health_fall,
            log=self.log,
            tls=self.listener.tls,
        )

    async def start(self) -> None:
        """Resolve members once, bind the address (OSError when it cannot), start the loops."""
        discovery = self._discovery()
        await discovery.prime()
        await self.listener.start()
        self._loops(discovery)

    def _loops(self, discovery: Discovery) -> None:
        """Discovery (done at once without DNS or file sources) and health checks, supervised:
        one that fails takes the sidecar down."""
        s, name = self.spec.settings, self.spec.name
        self._spawn(spawn(f"discovery of listener {name}", discovery.run(), finite=True))
        checks = spawn(
            f"health checks of listener {name}",
            self._health().run(),
            finite=s.health_check == "none",
            beat_every=s.health_interval + s.health_timeout,
        )
        self._spawn(checks)

    def _spawn(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reconfigure(self, spec: ListenerSpec) -> None:
        """New settings and sources on the same address and mode; members that stay keep their
        state, open connections are untouched."""
        await self._stop_tasks()
        old_labels = {source_label(s) for s in self.spec.sources}
        self.spec = spec
        s = spec.settings
        if s.policy != self.cluster.balancer.policy:
            self.cluster.balancer = Balancer(s.policy)
            self.cluster.balancer.rebuild(list(self.cluster.members.values()))
        self.cluster.eject = _eject(spec)
        self.cluster.budget.set_ratio(s.retry_budget)
        self.cluster.set_load(s.slow_start, s.member_max_connections)
        for label in old_labels - {source_label(src) for src in spec.sources}:
            self.cluster.drop_source(label)
        self.listener.reconfigure(s)
        discovery = self._discovery()
        await discovery.prime()
        self._loops(discovery)

    async def _stop_tasks(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self, deadline: float) -> None:
        """Stop accepting, drain until `deadline` (loop time), stop the loops."""
        await self.listener.drain(deadline)
        await self._stop_tasks()
