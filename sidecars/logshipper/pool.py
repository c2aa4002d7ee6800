"""The configured Elasticsearch nodes: failover between them, dead nodes probed back to life."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sidecars.logshipper.node import Node, NodeDown, Response, TransportError
from sidecars.runtime import Backoff
from sidecars.runtime.tasks import spawn

_PROBE_HEADERS = {"accept": "application/json"}


@dataclass(slots=True, eq=False)
class _Member:
    node: Node
    backoff: Backoff
    dead: bool = False
    probe: asyncio.Task[None] | None = field(default=None, repr=False)


class Pool:
    """Requests go round-robin to the live nodes. A node that cannot be reached (refused,
    unreachable, TLS) or does not answer in time is dead: it gets no requests while another
    is live, and is probed (`GET /`) after jittered backoff delays doubling up to
    `dead_backoff_max` until it answers at all; then the `on_revive` callbacks run and
    `pause` ends, so that requests backing off from the outage go at once instead of at the
    end of their own, longer backoff. The probes' backoff restarts only once a request got
    an answer from the node (a node that answers probes but fails requests is not woken for
    ever faster). With every node dead, requests still go (each to the next dead node): the
    callers pace their retries. The pool never retries on its own."""

    def __init__(self, nodes: list[Node], *, dead_backoff_max: float, log: logging.Logger) -> None:
        if not nodes:
            raise ValueError("no Elasticsearch node")
        base = min(0.1, dead_backoff_max)
        self.members = [_Member(node, Backoff(base, dead_backoff_max)) for node in nodes]
        self.log = log
        self.on_revive: list[Callable[[], None]] = []
        self._revived = asyncio.Event()
        self._next = 0

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One request to one node; TransportError when it got no usable answer."""
        member = self._pick()
        try:
            resp = await member.node.request(method, target, body, headers)
        except NodeDown as exc:
            self._mark_dead(member, str(exc))
            raise
        if member.dead:
            self._revive(member)
        member.backoff.reset()
        return resp

    def _pick(self) -> _Member:
        members = self.members
        live = [m for m in members if not m.dead] or members
        self._next = (self._next + 1) % len(live)
        return live[self._next]

    def _mark_dead(self, member: _Member, why: str) -> None:
        if member.dead:
            return
        member.dead = True
        self.log.warning(
            "Elasticsearch node failed; probing it until it answers",
            extra={"node": member.node.url, "error": why[:300]},
        )
        member.probe = spawn("Elasticsearch node probe", self._probe(member), finite=True)

    def _revive(self, member: _Member) -> None:
        member.dead = False
        probe, member.probe = member.probe, None
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()
        self.log.info("Elasticsearch node answers again", extra={"node": member.node.url})
        self._revived.set()
        self._revived = asyncio.Event()
        for callback in self.on_revive:
            callback()

    async def pause(self, delay: float) -> None:
        """Sleep `delay` seconds, or less: until a dead node answers again."""
        revived = self._revived
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await revived.wait()

    async def _probe(self, member: _Member) -> None:
        while member.dead:
            await asyncio.sleep(member.backoff.next_delay())
            try:
                await member.node.request("GET", "/", headers=_PROBE_HEADERS)
            except TransportError:
                continue
            if member.dead:
                self._revive(member)

    async def close(self) -> None:
        probes = [m.probe for m in self.members if m.probe is not None]
        for probe in probes:
            probe.cancel()
        for probe in probes:
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        await asyncio.gather(*(m.node.close() for m in self.members))
