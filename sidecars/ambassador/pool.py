"""Keep-alive connections to members, reused most-recent first and dropped when stale."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from sidecars.ambassador.members import Member
from sidecars.ambassador.tls import Origination, remember_transport
from sidecars.runtime import resolver
from sidecars.runtime.http.head import Head

if TYPE_CHECKING:
    from sidecars.ambassador.exchange import Exchange

POOL_IDLE_CAP = 30.0  # below common server keep-alive timeouts (nginx, aiohttp: 75 s)
HIGH_WATER = 256 * 1024  # bytes buffered toward a slow side before the other side is paused
LOW_WATER = 64 * 1024


class Upstream(asyncio.Protocol):
    """One connection to a member; events go to the exchange that owns it, if any."""

    def __init__(self, member: Member, pool: Pool) -> None:
        self.member, self.pool = member, pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.write: Callable[[bytes], object] = None  # type: ignore[assignment]  # bound once
        # the exchange it reports to (typed as the class: compiled, the calls are native)
        self.owner: Exchange | None = None
        self.closed = False
        self.reused = False
        self.paused = False
        self.idle_since = 0.0
        # the exchange's memo of this member's last plain answer read whole (see exchange.py)
        self.last_in = b""
        self.last_out = b""
        self.last_head: Head | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        self.write = self.transport.write
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)

    def data_received(self, data: bytes) -> None:
        if self.owner is not None:
            self.owner.up_data(data)
        else:
            self.close()  # bytes nobody asked for: the connection is out of sync

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost tells the owner

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pool.tls is not None:
            remember_transport(self.transport)  # a TLS 1.3 ticket comes after the handshake
        owner, self.owner = self.owner, None
        if owner is not None:
            owner.up_closed(exc)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.up_paused(True)

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.up_paused(False)

    def pause_reading(self, paused: bool) -> None:
        """Stop or restart reading (the client reads the response slower than we get it)."""
        if paused != self.paused and not self.closed:
            self.paused = paused
            self.transport.pause_reading() if paused else self.transport.resume_reading()

    def close(self) -> None:
        """Drop the connection without telling the owner (it asked for this)."""
        self.owner = None
        if not self.closed:
            self.closed = True
            self.transport.abort()


class Pool:
    """Idle connections per member, at most `size` each."""

    def __init__(self, size: int, idle: float) -> None:
        self.size = size
        self.idle = min(idle, POOL_IDLE_CAP)
        self.idle_conns: dict[Member, list[Upstream]] = {}
        self.tls: Origination | None = None  # the listener's, when members speak TLS

    def take(self, member: Member, now: float) -> Upstream | None:
        """The most recently used idle connection to `member` that is still good (`now` is the
        event loop's time, the clock of release)."""
        stack = self.idle_conns.get(member)
        if not stack:
            return None
        while stack:
            conn = stack.pop()
            if not conn.closed and now - conn.idle_since < self.idle:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def connect(self, member: Member, connect_timeout: float) -> Upstream:
        """A new connection (OSError or TimeoutError when the member does not accept)."""
        if self.tls is not None:
            factory = lambda: Upstream(member, self)  # noqa: E731
            return (await self.tls.connect(factory, member, connect_timeout))[1]
        async with asyncio.timeout(connect_timeout):
            _, conn = await resolver.connect(
                lambda: Upstream(member, self), member.host, member.port
            )
        return conn

    def release(self, conn: Upstream, now: float) -> None:
        """Keep `conn` for reuse (`now`: the event loop's time)."""
        conn.owner = None
        if conn.closed:
            return
        if conn.paused:  # idle, it must see the member closing it
            conn.pause_reading(False)
        stack = self.idle_conns.get(conn.member)
        if stack is None:
            stack = self.idle_conns[conn.member] = []
        elif len(stack) >= self.size:
            conn.close()
            return
        conn.idle_since = now
        stack.append(conn)

    def forget(self, conn: Upstream) -> None:
        """An idle connection the member closed."""
        stack = self.idle_conns.get(conn.member)
        if stack and conn in stack:
            stack.remove(conn)

    def prune(self, members: set[Member]) -> None:
        """Close idle connections to members that left the cluster."""
        for member in list(self.idle_conns):
            if member not in members:
                for conn in self.idle_conns.pop(member):
                    conn.close()

    def close(self) -> None:
        for stack in self.idle_conns.values():
            for conn in stack:
                conn.close()
        self.idle_conns.clear()
