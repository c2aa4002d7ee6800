"""tcp mode with TLS on either side: the client's bytes relayed to a member when the client,
the member or both speak TLS. Both sides are event-loop transports (the TLS records are made
by the loop's SSL protocol), so these connections never move to splice(2)."""

from __future__ import annotations

import asyncio
import socket
from time import perf_counter
from typing import TYPE_CHECKING, cast

from sidecars.ambassador.accepting import SHORTAGE
from sidecars.ambassador.members import Member
from sidecars.ambassador.termination import Holding, Termination
from sidecars.ambassador.tls import HandshakeError, Origination, remember_transport
from sidecars.runtime import resolver

if TYPE_CHECKING:
    from sidecars.ambassador.tcp import TcpListener

HIGH_WATER = 256 * 1024  # bytes buffered toward a slow side before the other side is paused
LOW_WATER = 64 * 1024


class _Side(asyncio.Protocol):
    """One end of the relay; what it reads is written to the other end."""

    def __init__(self, relay: TlsRelay, upstream: bool) -> None:
        self.relay, self.upstream = relay, upstream
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        if not self.upstream:  # the client waits in the kernel until the member is there
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.relay.relay(self, data)

    def eof_received(self) -> bool:
        # The loop's TLS transports cannot half-close: an end of stream from either side ends
        # the pair, once what was read before it has been written.
        self.relay.end(None, self.upstream)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.relay.end(exc, self.upstream)

    def pause_writing(self) -> None:
        self.relay.flow(self, paused=True)

    def resume_writing(self) -> None:
        self.relay.flow(self, paused=False)


class _Waiter:
    """A TlsRelay waiting for a member under its limit (see waiting.py)."""

    def __init__(self, relay: TlsRelay, tried: list[Member], got: asyncio.Future[Member | None]):
        self.relay, self.tried, self.got = relay, tried, got

    def resume(self) -> bool:
        if self.got.done():
            return True
        cluster = self.relay.listener.cluster
        member = cluster.pick(self.relay.key, self.tried)
        if member is None and cluster.member_limit and cluster.full:
            return False
        self.got.set_result(member)
        return True

    def expire(self) -> None:
        if not self.got.done():
            self.relay.listener.cluster.at_limit += 1
            self.got.set_result(None)


class TlsRelay:
    """A client connection and its connection to a member, TLS on one side or both."""

    def __init__(
        self,
        listener: TcpListener,
        client: socket.socket,
        key: bytes,
        tls: Origination | None,
        term: Termination | None,
    ) -> None:
        self.listener, self.sock, self.key, self.tls, self.term = listener, client, key, tls, term
        self.raw: asyncio.Transport | None = None  # the client's transport under TLS
        self.client = _Side(self, upstream=False)
        self.up: _Side | None = None
        self.member: Member | None = None
        self.connected = self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.held = bytearray()  # client bytes read before the member connection was up
        self.seen = listener.loop.time()

    def start(self) -> None:
        self.task = self.listener.loop.create_task(self._run())

    async def _run(self) -> None:
        listener, cluster = self.listener, self.listener.cluster
        loop = listener.loop
        try:
            if self.term is None:
                await loop.connect_accepted_socket(lambda: self.client, sock=self.sock)
            else:
                hold = Holding()
                self.raw, _ = await loop.connect_accepted_socket(lambda: hold, sock=self.sock)
                if await self.term.accept(self.raw, hold, lambda: self.client) is None:
                    self.end(None, upstream=False)  # counted by accept
                    return
        except OSError as exc:
            self.end(exc, upstream=False)
            return
        cluster.budget.record_request()
        tried: list[Member] = []
        while len(tried) <= listener.settings.retries and not self.closed:
            if tried and not cluster.budget.try_spend():
                break
            member = cluster.pick(self.key, tried)
            if member is None and cluster.member_limit and cluster.full:
                member = await self._wait(tried)
            if member is None:
                break
            if tried:
                cluster.retries += 1
            tried.append(member)
            member.requests += 1
            started = perf_counter()
            member.active += 1  # a connecting one counts toward its limit
            try:
                try:
                    transport, up = await self._connect(member)
                finally:
                    member.active -= 1
            except (OSError, TimeoutError) as exc:
                if isinstance(exc, OSError) and exc.errno in SHORTAGE:
                    listener.metrics.rejected.labels(listener.name, "no_descriptors").inc()
                    self.end(exc, upstream=False)
                    return
                kind = (
                    "tls" if isinstance(exc, HandshakeError)
                    else "timeout" if isinstance(exc, TimeoutError) else "connect"
                )  # fmt: skip
                if cluster.failed(member, kind):
                    listener.log.warning(
                        "member %s ejected after failures",
                        member.key,
                        extra={"listener": listener.name, "member": member.key},
                    )
                continue
            if self.closed:
                transport.abort()
                return
            listener.latency.observe(perf_counter() - started)
            member.record_success()
            member.active += 1
            self.member, self.up, self.connected = member, up, True
            if self.held:  # read before the pause took effect (uvloop reads at once)
                transport.write(self.held)
                self.held.clear()
            if self.client.transport is not None:
                self.client.transport.resume_reading()
            return
        if not self.closed:
            listener.metrics.rejected.labels(listener.name, "no_member").inc()
            self.end(ConnectionRefusedError(), upstream=False)

    async def _wait(self, tried: list[Member]) -> Member | None:
        """Every member is at its limit: wait for one to free up (None: not in time)."""
        listener = self.listener
        listener.cluster.waits += 1
        waiter = _Waiter(self, tried, listener.loop.create_future())
        listener.waiting.add(waiter, listener.loop.time() + listener.settings.connect_timeout)
        try:
            return await waiter.got
        finally:
            waiter.got.cancel()  # gone with the connection: the queue drops it at its next look

    async def _connect(self, member: Member) -> tuple[asyncio.Transport, _Side]:
        limit = self.listener.settings.connect_timeout
        if self.tls is not None:
            return await self.tls.connect(lambda: _Side(self, upstream=True), member, limit)
        async with asyncio.timeout(limit):
            transport, up = await resolver.connect(
                lambda: _Side(self, upstream=True), member.host, member.port
            )
        return transport, up

    def relay(self, side: _Side, data: bytes) -> None:
        other = self.up if side is self.client else self.client
        self.seen = self.listener.loop.time()
        self.nbytes += len(data)
        if other is not None and other.transport is not None:
            other.transport.write(data)
        elif side is self.client and not self.connected:
            self.held += data

    def flow(self, side: _Side, paused: bool) -> None:
        """`side` cannot take more for now: stop (or restart) reading the other one."""
        other = self.up if side is self.client else self.client
        if other is not None and other.transport is not None and not other.transport.is_closing():
            other.transport.pause_reading() if paused else other.transport.resume_reading()

    def end(self, exc: Exception | None, upstream: bool) -> None:
        """One side ended: close the other once it has had what was written to it."""
        if self.closed:
            return
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if upstream and exc is not None and self.member is not None:
            self.member.errors["reset"] += 1
        for side in (self.client, self.up):
            if side is not None and side.transport is not None:
                if side.upstream:
                    remember_transport(side.transport)
                if exc is None:
                    side.transport.close()  # what is buffered is sent first
                else:
                    side.transport.abort()
        if self.client.transport is None and self.raw is None:
            if not self.sock._closed:  # type: ignore[attr-defined]
                self.sock.close()  # never handed to a transport
        elif self.client.transport is None and self.raw is not None:
            self.raw.abort()  # in its handshake
        if self.member is not None and self.connected:
            self.member.active -= 1
        self.listener.release(self)

    def abort(self) -> None:
        self.end(ConnectionAbortedError(), upstream=False)

    def busy(self) -> bool:
        return True

    def watch_idle(self) -> bool:
        return True

    def idle_since(self) -> float | None:
        if not self.connected:
            return None
        for side in (self.client, self.up):
            if side is not None and side.transport is not None:
                if side.transport.get_write_buffer_size():
                    return None
        return self.seen
