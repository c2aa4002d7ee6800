"""Keep-alive connections to members, reused most-recent first and dropped when stale."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sidecars.ambassador.members import Member

UPSTREAM_HEAD_LIMIT = 64 * 1024
POOL_IDLE_CAP = 30.0  # below common server keep-alive timeouts (nginx, aiohttp: 75 s)


@dataclass(eq=False, slots=True)
class UpstreamConn:
    """One connection to a member."""

    member: Member
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False
    idle_since: float = 0.0

    def usable(self, now: float, idle: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and not getattr(self.reader, "_buffer", b"")  # stray bytes: out of sync
            and now - self.idle_since < idle
        )

    def close(self) -> None:
        self.writer.transport.abort()


class Pool:
    """Idle connections per member, at most `size` each."""

    def __init__(self, size: int, idle: float) -> None:
        self.size = size
        self.idle = min(idle, POOL_IDLE_CAP)
        self.idle_conns: dict[Member, list[UpstreamConn]] = {}

    async def acquire(self, member: Member, connect_timeout: float) -> UpstreamConn:
        """A pooled connection when one is usable, else a new one (OSError/TimeoutError)."""
        stack = self.idle_conns.get(member)
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if conn.usable(now, self.idle):
                conn.reused = True
                return conn
            conn.close()
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                member.host, member.port, limit=UPSTREAM_HEAD_LIMIT
            )
        return UpstreamConn(member, reader, writer)

    def release(self, conn: UpstreamConn) -> None:
        stack = self.idle_conns.setdefault(conn.member, [])
        if len(stack) >= self.size:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        stack.append(conn)

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
