"""The admin server (a real one on loopback) and the runtime's handling of very early signals."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from sidecars.runtime import admin
from sidecars.runtime.metrics import Counter, Registry
from tests.helpers import free_port

pytestmark = pytest.mark.integration


async def exchange(port: int, raw: bytes) -> bytes:
    """Send raw request bytes and read until the server closes (requests end in close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        async with asyncio.timeout(5):
            return await reader.read(-1)
    finally:
        writer.close()


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


async def test_admin_routes_readiness_metrics_and_own_routes() -> None:
    registry = Registry()
    Counter("demo_things_total", "things", registry=registry).inc(3)
    readiness = admin.Readiness()
    app = admin.build_app(readiness, registry)
    app.add("/upstreams", lambda: admin.json_reply({"members": ["a:1"]}))
    port = free_port()
    server = await admin.start(app, "127.0.0.1", port)
    try:
        assert (await exchange(port, get("/healthz"))).startswith(b"HTTP/1.1 200 OK\r\n")
        answer = await exchange(port, get("/readyz"))
        assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"not ready: starting\n")
        readiness.set(True)
        assert (await exchange(port, get("/readyz"))).endswith(b"\r\n\r\nready\n")
        metrics = await exchange(port, get("/metrics"))
        assert b"Content-Type: text/plain; version=" in metrics
        assert b"demo_things_total 3.0" in metrics
        own = await exchange(port, get("/upstreams"))
        assert b"application/json" in own and own.endswith(b'{"members":["a:1"]}')
        head = await exchange(port, get("/healthz", "HEAD"))
        assert b"Content-Length: 3\r\n" in head and head.endswith(b"\r\n\r\n")
        assert (await exchange(port, get("/nope"))).startswith(b"HTTP/1.1 404 ")
        assert (await exchange(port, get("/metrics", "POST"))).startswith(b"HTTP/1.1 405 ")
        # two requests on one keep-alive connection are both answered, in order
        two = get("/healthz").replace(b"Connection: close", b"X: y") + get("/readyz")
        both = await exchange(port, two)
        assert both.count(b"HTTP/1.1 200 OK") == 2 and both.endswith(b"ready\n")
    finally:
        await server.cleanup()


async def test_admin_address_in_use_raises_for_a_clear_error() -> None:
    app = admin.build_app(admin.Readiness(), Registry())
    port = free_port()
    first = await admin.start(app, "127.0.0.1", port)
    try:
        with pytest.raises(OSError):
            await admin.start(app, "127.0.0.1", port)
    finally:
        await first.cleanup()


EARLY = textwrap.dedent(
    """
    import asyncio, logging, os, signal
    from sidecars.runtime import admin, lifecycle

    class Waits:
        async def run(self, stopping):
            await stopping.wait()
            print("drained", flush=True)
            return 0

    lifecycle._hold_early_signals()
    os.kill(os.getpid(), signal.SIGTERM)  # before any event loop exists
    code = asyncio.run(
        lifecycle._supervise(Waits(), 5.0, admin.Readiness(), logging.getLogger("t"))
    )
    raise SystemExit(code)
    """
)


def test_sigterm_before_the_loop_starts_still_drains_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EARLY], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "drained\n"
