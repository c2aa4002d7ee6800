"""Hostile app, slow on purpose: a request body sent a byte at a time (R-U-Dead-Yet) holds its
connection and a member connection no longer than the request timeout."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.ambassador_support import ambassador

pytestmark = pytest.mark.integration


async def test_a_dripped_request_body_is_cut_at_the_request_timeout() -> None:
    """A POST of 1,000 bytes sent one byte per 0.1 s, to a member that answers only once it has
    the whole body: the client gets 504 once AMBASSADOR_REQUEST_TIMEOUT (0.5 s) is up, long
    before the body would be complete (100 s)."""

    async def whole_body_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(1000)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    member = await asyncio.start_server(whole_body_first, "127.0.0.1", 0)
    env = {
        "AMBASSADOR_MODE": "http",
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member.sockets[0].getsockname()[1]}",
        "AMBASSADOR_REQUEST_TIMEOUT": "0.5s",
        "AMBASSADOR_HEALTH_CHECK": "none",
    }
    try:
        async with ambassador(env) as amb:
            reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")

            async def drip() -> None:
                with contextlib.suppress(OSError):
                    for _ in range(1000):
                        writer.write(b"a")
                        await writer.drain()
                        await asyncio.sleep(0.1)

            dripping = asyncio.create_task(drip())
            try:
                async with asyncio.timeout(10):
                    assert (await reader.readline()).startswith(b"HTTP/1.1 504 ")
            finally:
                dripping.cancel()
                await asyncio.gather(dripping, return_exceptions=True)
                writer.close()
    finally:
        member.close()
