"""Real HTTP clients through the http ambassador: HTTP/1.0 keep-alive as `ab -k` speaks it,
WebSockets through an Upgrade, and the same answers for curl's 1.0 and 1.1."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from tests.ambassador_support import ambassador, backends
from tests.integration.test_ambassador_http_wire import http_env, read_responses

pytestmark = pytest.mark.integration


async def test_http10_keep_alive_is_answered_keep_alive() -> None:
    """An HTTP/1.0 client that asks to keep the connection is told `connection: keep-alive`
    and can send its next request on it (without that, `ab -k` waits for a close)."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        async with asyncio.timeout(10):
            for _ in range(3):
                writer.write(b"GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert b"connection: keep-alive\r\n" in head.lower(), head
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                assert await reader.readexactly(length) == b"b0"
            writer.write(b"GET /x HTTP/1.0\r\n\r\n")  # no keep-alive: answered, then closed
            assert (await read_responses(reader, 1))[0][1] == b"b0"
            assert await reader.read() == b""
        writer.close()


async def test_websocket_through_the_ambassador() -> None:
    """A WebSocket client (the `websockets` package) talks to an echo server through the
    ambassador: the 101 is passed on and the connection becomes a tunnel both ways."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        async with asyncio.timeout(10):
            async with websockets.connect(f"ws://127.0.0.1:{amb.port}/ws") as ws:
                for text in ("one", "two", "x" * 100_000):
                    await ws.send(text)
                    assert await ws.recv() == f"b0:{text}"
                await ws.send(b"\x00\x01binary")
                assert await ws.recv() == b"\x00\x01binary"
        assert bs[0].seen[-1] == {"path": "/ws", "websocket": True}
        # after the tunnel, plain requests still work and no request is left in flight
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        async with asyncio.timeout(10):
            writer.write(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await read_responses(reader, 1))[0][1] == b"b0"
        writer.close()
        listener = next(iter(amb.service.running.values())).listener
        assert getattr(listener, "pending", None) == 0


async def test_an_unasked_switch_is_a_member_error() -> None:
    """A 101 to a request that asked no Upgrade is a broken member: 502, never a tunnel."""

    async def switcher(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
            )
            await reader.read()  # until the ambassador drops the connection
        finally:
            writer.close()

    server = await asyncio.start_server(switcher, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        env = {"AMBASSADOR_MODE": "http", "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}",
               "AMBASSADOR_HEALTH_CHECK": "none"}  # fmt: skip
        async with ambassador(env) as amb:
            reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
            async with asyncio.timeout(10):
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
            writer.close()
            assert head.startswith(b"HTTP/1.1 502"), head
    finally:
        server.close()
        await server.wait_closed()
