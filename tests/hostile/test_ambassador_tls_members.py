"""Hostile TLS members: one that accepts and never answers the handshake, one that answers it
with plain text. The app's connection is cut within the connect timeout, the failure is
counted with its reason, and nothing the app sent reaches them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trustme

from tests.ambassador_support import ambassador, metric_value
from tests.integration.test_ambassador_tls import admin_get, echo, member_tls, tls_env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("answer", "reason"), [(b"", "timeout"), (b"HTTP/1.1 400 no\r\n\r\n", "other")]
)
async def test_member_that_does_not_speak_tls(tmp_path: Path, answer: bytes, reason: str) -> None:
    """A silent member times the handshake out (`timeout`), a plain-text one fails it
    (`other`); the client is cut within the connect timeout and the member sees no app bytes."""
    seen = bytearray()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if answer:
            writer.write(answer)
        try:
            while data := await reader.read(65536):
                seen.extend(data)
        except OSError:
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        env = tls_env(tmp_path, trustme.CA(), port, connect_timeout="0.3s", retries="0")
        async with ambassador(env) as amb:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await echo(amb.port, b"app secret\n", within=5) == b""
            assert loop.time() - started < 3
            text = await admin_get(amb.admin_port, "/metrics")
            labels = {"listener": "default", "member": f"127.0.0.1:{port}", "reason": reason}
            name = "ambassador_upstream_tls_handshake_failures_total"
            assert metric_value(text, name, **labels) == 1
            tls = member_tls(await admin_get(amb.admin_port, "/upstreams"), port)
            assert not tls["ok"] and tls["error"].startswith(reason)
        assert b"app secret" not in seen
    finally:
        server.close()
