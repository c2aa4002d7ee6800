"""Hostile members: one that sends without end to a client that does not read, one that
accepts and never answers. The ambassador's memory and the time a client is held stay bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tests.ambassador_support import ambassador, rss_bytes
from tests.helpers import wait_until
from tests.hostile.ambassador_members import ambassador_process, endless_member, endless_sent

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 8


@pytest.mark.parametrize("mode", ["tcp", "http"])
def test_endless_member_and_clients_that_do_not_read_hold_bounded_memory(mode: str) -> None:
    """Eight clients that ask and never read, a member that answers without end: over 2 s the
    ambassador's resident memory grows by under 32 MiB and the member is held back (it wrote
    under 256 MiB; unchecked it writes gigabytes a second on loopback)."""
    with endless_member() as member_port:
        with ambassador_process(member_port, mode) as (amb, port, admin):
            clients = []
            try:
                for _ in range(SLOW_CLIENTS):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert sock.recv(16)  # the answer has started; from now on nobody reads
                    clients.append(sock)
                before_sent = endless_sent()
                wait_until(lambda: endless_sent() > before_sent + (1 << 20), 10, "member sending")
                rss, sent = rss_bytes(amb.proc.pid), endless_sent()
                time.sleep(2.0)  # the window measured, not a wait for readiness
                grown = rss_bytes(amb.proc.pid) - rss
                assert grown < 32 << 20, f"resident memory grew {grown >> 20} MiB"
                assert endless_sent() - sent < 256 << 20
            finally:
                for sock in clients:
                    sock.close()


@contextlib.asynccontextmanager
async def silent_member() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """Accepts, reads, never answers and never closes; the event is set when the ambassador
    closes its side."""
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        closed.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], closed
    finally:
        server.close()


async def test_tcp_member_that_never_answers_is_let_go_at_the_idle_timeout() -> None:
    """tcp cannot tell a slow answer from none: a member that accepts and stays silent holds
    the client until AMBASSADOR_IDLE_TIMEOUT, then both connections are closed."""
    async with silent_member() as (member, member_closed):
        env = {
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member}",
            "AMBASSADOR_IDLE_TIMEOUT": "0.5s",
            "AMBASSADOR_HEALTH_CHECK": "none",
        }
        async with ambassador(env) as amb:
            reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
                await member_closed.wait()
            writer.close()
