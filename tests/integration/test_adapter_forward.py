"""Path mapping once the pool is warm (the fast path without a task) against a scripted app."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator

import pytest

from tests.adapter_support import adapter_in_process, get
from tests.helpers import SidecarProcess, free_port

pytestmark = pytest.mark.integration

OK = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: "v1"\r\n'
    b'Content-Length: 15\r\n\r\n{"status":"UP"}'
)
CHUNKED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b'6\r\n{"stat\r\n0b\r\nus":"DOWN"}\r\n0\r\n\r\n'
)
SPLIT = (OK[:40], OK[40:])  # the head and body arrive in two pieces
HANG = b""  # read the request, never answer


class ScriptedApp:
    """Answers the requests on every connection with the next scripted answer, in order."""

    def __init__(self) -> None:
        self.script: list[bytes | tuple[bytes, bytes] | float] = []  # a float: OK that late
        self.asked = asyncio.Event()  # set on every request
        self.requests: list[bytes] = []
        self.connections = 0
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def stop(self) -> None:
        """Close every connection and wait for the handlers to end."""
        for writer in self.writers:
            writer.close()
        if self.handlers:
            async with asyncio.timeout(10):
                await asyncio.wait(self.handlers)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.add(writer)
        try:
            while True:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                self.asked.set()
                answer = self.script.pop(0) if self.script else OK
                if isinstance(answer, float):
                    await asyncio.sleep(answer)
                    answer = OK
                if answer == HANG:
                    await reader.read()  # until the adapter gives up and closes
                    return
                for part in answer if isinstance(answer, tuple) else (answer,):
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.01)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)


@pytest.fixture
async def mapped() -> AsyncIterator[tuple[ScriptedApp, str, str]]:
    app = ScriptedApp()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {
        "ADAPTER_MODE": "paths",
        "ADAPTER_TARGET": f"http://127.0.0.1:{port}/metrics",
        "ADAPTER_PATHS": "/health=/actuator/health",
        "ADAPTER_TIMEOUT": "400ms",
    }
    try:
        async with adapter_in_process(env) as (base, admin, _):
            assert (await get(base + "/health"))[0] == 200  # warms the pool: one idle connection
            yield app, base, admin
    finally:
        server.close()
        await app.stop()
        await server.wait_closed()


async def test_warm_pool_answers_keep_headers_and_reuse_one_connection(
    mapped: tuple[ScriptedApp, str, str],
) -> None:
    app, base, _ = mapped
    app.script = [OK, SPLIT]
    for _ in range(2):
        status, headers, doc = await get(base + "/health")
        assert (status, doc, headers.get("Etag")) == (200, {"status": "UP"}, '"v1"'), headers
        assert headers["Content-Length"] == "15"
    assert app.connections == 1
    assert all(r.startswith(b"GET /actuator/health HTTP/1.1\r\n") for r in app.requests)


async def test_a_streamed_answer_is_handed_over_and_relayed(
    mapped: tuple[ScriptedApp, str, str],
) -> None:
    app, base, _ = mapped
    app.script = [CHUNKED]
    status, _, doc = await get(base + "/health")
    assert (status, doc) == (503, {"status": "DOWN"})
    assert (await get(base + "/health"))[0] == 200  # and the connection is still good


async def test_a_large_answer_with_a_length_is_streamed_whole(
    mapped: tuple[ScriptedApp, str, str],
) -> None:
    app, base, _ = mapped
    body = b"x" * (600 << 10)  # more than the client buffers before it pauses reading
    app.script = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)]
    status, headers, got = await get(base + "/health")
    assert (status, headers["Content-Length"], got) == (200, str(len(body)), body)
    assert (await get(base + "/health"))[0] == 200


async def test_a_hanging_app_gives_504_within_the_deadline(
    mapped: tuple[ScriptedApp, str, str],
) -> None:
    app, base, admin = mapped
    app.script = [HANG]
    status, _, body = await get(base + "/health")
    assert status == 504 and b"did not answer in 0.4s" in body
    assert (await get(base + "/health"))[0] == 200  # a fresh connection for the next one
    _, _, text = await get(admin + "/metrics")
    assert b'adapter_requests_total{code="504",route="forward"} 1.0' in text
    assert b'adapter_requests_total{code="200",route="forward"} 2.0' in text


async def test_pipelined_mapped_requests_come_back_in_order(
    mapped: tuple[ScriptedApp, str, str],
) -> None:
    app, base, _ = mapped
    app.script = [OK, CHUNKED, SPLIT]
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(one * 3 + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(10):
        out = await reader.read(-1)
    writer.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"503", b"200", b"200"]
    assert out.endswith(b'{"status":"UP"}')


async def test_a_client_leaving_mid_answer_does_not_disturb_the_next(
    mapped: tuple[ScriptedApp, str, str],
) -> None:
    app, base, _ = mapped
    app.script = [SPLIT]
    port = int(base.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    writer.close()  # gone before the app's answer is complete
    status, _, doc = await get(base + "/health")
    assert (status, doc) == (200, {"status": "UP"})


async def test_sigterm_lets_a_pending_mapped_answer_finish_then_exits_0() -> None:
    app = ScriptedApp()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    port, admin = free_port(), free_port()
    env = {
        "ADAPTER_MODE": "paths",
        "ADAPTER_TARGET": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics",
        "ADAPTER_PATHS": "/health=/actuator/health",
        "ADAPTER_LISTEN": f"127.0.0.1:{port}",
        "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin}",
    }
    try:
        with SidecarProcess("adapter", env) as proc:
            await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{admin}/readyz")
            url = f"http://127.0.0.1:{port}/health"
            assert (await get(url))[0] == 200  # the pool is warm: the next GET is deferred
            app.script = [0.5]
            app.asked.clear()
            pending = asyncio.create_task(get(url))
            async with asyncio.timeout(10):
                await app.asked.wait()  # the adapter has passed the request on
            proc.proc.send_signal(signal.SIGTERM)
            status, _, doc = await pending
            assert (status, doc) == (200, {"status": "UP"})
            assert await asyncio.to_thread(proc.proc.wait, 30) == 0  # one signal: a drain
    finally:
        server.close()
        await app.stop()
        await server.wait_closed()
