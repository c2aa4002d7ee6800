"""The forwarding client against a raw TCP app on loopback that answers with exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from sidecars.adapter.appclient import AppClient, AppError

pytestmark = pytest.mark.integration


class RawApp:
    """Answers each request on a connection with the next canned answer, then maybe closes."""

    def __init__(self, answers: list[bytes], close_after: bool = False) -> None:
        self.answers, self.close_after = answers, close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    def drop(self) -> None:
        """Close every connection from the app's side (as an app restart does)."""
        for writer in self.writers:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while self.answers:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(self.answers.pop(0))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serve(app: RawApp) -> AsyncIterator[AppClient]:
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AppClient(f"http://127.0.0.1:{port}/ignored")
    try:
        yield client
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def body(client: AppClient, method: str = "GET") -> tuple[int, bytes]:
    async with asyncio.timeout(10):
        answer = await client.get(method, "/x", "*/*")
        data = b"".join([chunk async for chunk in answer.chunks()])
        return answer.status, data


async def test_chunked_with_extensions_and_trailers_then_reuse() -> None:
    app = RawApp(
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nDOWN",
        ]
    )
    async with serve(app) as client:
        assert await body(client) == (200, b"hello world")
        assert await body(client) == (503, b"DOWN")
        assert app.connections == 1  # the second request reused the first connection
        assert b"Host: 127.0.0.1:" in app.requests[0] and app.requests[0].startswith(b"GET /x ")


async def test_body_until_close_and_head() -> None:
    app = RawApp([b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"], True)
    async with serve(app) as client:
        assert await body(client) == (200, b"until the end")
    app = RawApp([b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"])
    async with serve(app) as client:
        async with asyncio.timeout(10):
            answer = await client.get("HEAD", "/x", "*/*")
        assert (answer.status, answer.length) == (200, 99)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"<html>not http</html>\r\n\r\n", "malformed status line"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\n",
            "(?i)invalid character in content-length",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", "(?i)content-length"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "(?i)malformed head: invalid header token"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "only chunked"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        # a negative size once made the client spin a core and grow without bound
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "malformed chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\n", "malformed chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;\rx\r\n", "control char"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection mid-body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc", "mid-body"),
        (b"", "closed the connection before answering"),
    ],
)
async def test_broken_answers_are_app_errors(answer: bytes, message: str) -> None:
    async with serve(RawApp([answer], close_after=True)) as client:
        with pytest.raises(AppError, match=message):
            await body(client)


async def test_a_dead_pooled_connection_is_retried_on_a_fresh_one() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    app = RawApp([ok, ok])
    async with serve(app) as client:
        assert await body(client) == (200, b"ok")
        assert len(client._idle) == 1
        app.drop()  # the pooled connection is now dead, and the client does not know yet
        assert await body(client) == (200, b"ok")
        assert app.connections == 2
