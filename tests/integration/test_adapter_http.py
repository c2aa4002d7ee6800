"""The service port spoken to raw: keep-alive, pipelining, limits, bad requests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from sidecars.runtime.http import server
from tests.adapter_support import AppProcess, adapter_in_process, app_process
from tests.integration.test_adapter_health import QUEUE_RULE, env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app() -> Iterator[AppProcess]:
    with app_process() as proc:
        proc.gauge("queue_depth", 3)
        yield proc


@pytest.fixture
async def port(app: AppProcess) -> AsyncIterator[int]:
    settings = env(app, [QUEUE_RULE], cache="60s", paths="/mapped=/actuator/health")
    async with adapter_in_process(settings) as (base, _, _svc):
        yield int(base.rsplit(":", 1)[1])


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, read until the server closes (or 10 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
LAST = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def test_pipelined_requests_are_answered_in_order_on_one_connection(port: int) -> None:
    head = b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
    mapped = b"GET /mapped HTTP/1.1\r\nHost: x\r\n\r\n"
    out = await exchange(
        port, GET + head + mapped + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + LAST
    )
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
    assert statuses == [b"200", b"200", b"200", b"404", b"200"]
    assert out.count(b'{"status":"pass",') == 2  # HEAD has no body
    assert b'{"status": "UP"}' in out
    assert out.endswith(b"}")


async def test_http10_closes_and_11_keeps_alive(port: int) -> None:
    out = await exchange(port, b"GET /health HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in out
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(3):
            writer.write(GET)
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Date: " in head
    finally:
        writer.close()


async def test_http10_keep_alive_is_kept_and_answered_so(port: int) -> None:
    """HTTP/1.0 with `Connection: keep-alive` (as `ab -k` sends it) is told `Connection:
    keep-alive` and kept, on cached, mapped and refused answers alike."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in (b"/health", b"/health", b"/mapped", b"/nope"):
            writer.write(b"GET %s HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" % path)
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            assert b"\r\nConnection: keep-alive\r\n" in head, head
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /health HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", b"400"),
        (b"GET /health HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"GET /health HTTP/1.1\nHost: x\n\n", b"400"),  # bare LF: never a complete head
        (b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", b"400"),
        (b"GET /mapped HTTP/1.1\r\nHost: x\r\nAccept: a\nX-Smuggled: 1\r\n\r\n", b"400"),
        (b"GET /health HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"400"),
        (b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", b"405"),
    ],
)
async def test_bad_requests_get_an_error_and_the_connection_closes(
    port: int, request_bytes: bytes, status: bytes
) -> None:
    # Anything after a refused request is never read as a request of its own.
    out = await exchange(port, request_bytes + GET)
    assert out.split(b"\r\n")[0].split(b" ")[1] == status
    assert out.count(b"HTTP/1.1 ") == 1


async def test_absolute_targets_are_answered_here_never_proxied(port: int) -> None:
    """An absolute-form target names this server's own path (RFC 9112 section 3.2.2): the
    adapter answers its /health itself and never connects to the authority it names."""
    out = await exchange(port, b"GET http://127.0.0.1:1/health HTTP/1.1\r\n\r\n" + LAST)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"200"]
    out = await exchange(port, b"GET http://127.0.0.1:1/elsewhere HTTP/1.1\r\n\r\n" + LAST)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"404", b"200"]


async def test_405_names_the_allowed_methods_and_keeps_the_connection(port: int) -> None:
    out = await exchange(port, b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n" + LAST)
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"Allow: GET, HEAD\r\n" in out
    assert out.count(b"HTTP/1.1 200 OK") == 1


async def test_slow_heads_and_idle_connections_are_closed(
    app: AppProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.4)
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 0.6)
    async with adapter_in_process(env(app, [QUEUE_RULE], cache="60s")) as (base, _, _svc):
        port = int(base.rsplit(":", 1)[1])
        # A head trickled byte by byte is cut once it is older than HEAD_TIMEOUT.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                for byte in b"GET /health HTTP/1.1\r\nX-Slow: yes":
                    if reader.at_eof():
                        break
                    try:
                        writer.write(bytes([byte]))
                        await writer.drain()
                    except ConnectionError:
                        break  # the server closed it: what this test expects
                    await asyncio.sleep(0.05)
                try:
                    assert await reader.read(-1) == b""
                except ConnectionResetError:
                    pass  # closed with our unread bytes in its buffer: a reset, also closed
        finally:
            writer.close()
        # An idle keep-alive connection is closed after IDLE_TIMEOUT.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(GET)
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                assert await reader.read(-1) == b""
        finally:
            writer.close()
