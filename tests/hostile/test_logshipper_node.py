"""A hostile or broken Elasticsearch endpoint: every malformed answer to a bulk request is a
TransportError of the node (so the batch is retried, never half-counted), in
bounded time and memory. The server is a raw TCP one of the test: a real node cannot be made
to send these bytes."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from sidecars.logshipper.node import Node, NodeConfig, TransportError

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
CHUNKED = OK + b"transfer-encoding: chunked\r\n\r\n"
BOMB = gzip.compress(b"\0" * (80 << 20))  # 80 KiB on the wire, 80 MiB inflated
ANSWERS = {
    "negative chunk size": CHUNKED + b"-1\r\n",
    "signed chunk size": CHUNKED + b"+2\r\nok\r\n0\r\n\r\n",
    "CR in a chunk extension": CHUNKED + b"2;x\ry\r\nok\r\n0\r\n\r\n",
    "CL and TE": OK
    + b"content-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "list Content-Length": OK + b"content-length: 2, 2\r\n\r\nok",
    "obs-fold": OK + b"content-length: 2\r\nx: a\r\n b\r\n\r\nok",
    "status 20": b"HTTP/1.1 20 OK\r\ncontent-length: 2\r\n\r\nok",
    "head too large": OK + b"x: " + b"a" * 70000 + b"\r\n\r\n",
    "body over 64 MiB": OK + b"content-length: %d\r\n\r\n" % (65 << 20),
    "gzip bomb": OK + b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(BOMB) + BOMB,
    "closed mid-body": OK + b"content-length: 10\r\n\r\nshort",
}


@pytest.mark.parametrize("case", list(ANSWERS))
async def test_a_malformed_answer_is_a_connection_error(case: str) -> None:
    """The node raises TransportError naming the fault; nothing hangs."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWERS[case])
            await writer.drain()
            if case != "body over 64 MiB":
                return
            piece = b"x" * (1 << 20)
            for _ in range(66):  # the body it announced, until the client gives up
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    node = Node(NodeConfig("http", "127.0.0.1", port, request_timeout=20))
    try:
        async with asyncio.timeout(30):
            with pytest.raises(TransportError):
                await node.request("POST", "/_bulk", body=b"{}\n", headers={"x": "y"})
    finally:
        await node.close()
        server.close()
        await server.wait_closed()
