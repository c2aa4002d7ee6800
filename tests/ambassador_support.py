"""Test helpers for the ambassador: real backends, an in-process ambassador, redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from sidecars.ambassador.discovery import Resolver, system_resolve
from sidecars.ambassador.service import SIDECAR, Ambassador
from sidecars.runtime import Runtime, admin
from sidecars.runtime.metrics import Registry
from tests.helpers import free_port


@dataclass
class Backend:
    """A real aiohttp server on 127.0.0.1 that says who it is and records what it saw."""

    name: str
    port: int = 0
    runner: web.AppRunner | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    healthy: bool = True
    fail_with: int = 0  # answer every request with this status when set
    retry_after: str = ""  # sent with the fail_with answers when set
    slow_open: int = 0  # /slow requests being answered now
    slow_most: int = 0  # the most /slow requests answered at once

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        async def hello(request: web.Request) -> web.StreamResponse:
            self.seen.append({"path": request.path, "headers": dict(request.headers)})
            if self.fail_with:
                extra = {"Retry-After": self.retry_after} if self.retry_after else {}
                return web.Response(status=self.fail_with, text="failing\n", headers=extra)
            return web.Response(text=self.name)

        async def health(_: web.Request) -> web.Response:
            return web.Response(status=200 if self.healthy else 500, text="health\n")

        async def echo(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            total = 0
            async for chunk in request.content.iter_any():
                total += len(chunk)
                await resp.write(chunk)
            self.seen.append({"path": request.path, "echoed": total})
            await resp.write_eof()
            return resp

        async def big(request: web.Request) -> web.Response:
            n = int(request.query.get("n", "1000000"))
            return web.Response(body=b"x" * n)

        async def slow(request: web.Request) -> web.Response:
            self.slow_open += 1
            self.slow_most = max(self.slow_most, self.slow_open)
            try:
                await asyncio.sleep(float(request.query.get("s", "0.2")))
            finally:
                self.slow_open -= 1
            return web.Response(text=self.name)

        async def refuse_large(request: web.Request) -> web.StreamResponse | None:
            if (request.content_length or 0) > 1000:  # decided on the head alone
                self.seen.append({"path": request.path, "refused": request.content_length})
                raise web.HTTPRequestEntityTooLarge(1000, request.content_length or 0)
            return await _default_expect_handler(request)  # sends 100 Continue

        async def ws_echo(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            self.seen.append({"path": request.path, "websocket": True})
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(f"{self.name}:{msg.data}")
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
            return ws

        app = web.Application()
        app.router.add_get("/ws", ws_echo)
        app.router.add_post("/limited", echo, expect_handler=refuse_large)
        app.router.add_get("/health", health)
        app.router.add_post("/echo", echo)
        app.router.add_get("/big", big)
        app.router.add_get("/slow", slow)
        app.router.add_route("*", "/{tail:.*}", hello)
        return app

    async def start(self, port: int = 0) -> Backend:
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port or self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@contextlib.asynccontextmanager
async def backends(n: int) -> AsyncIterator[list[Backend]]:
    started = [await Backend(f"b{i}").start() for i in range(n)]
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


@dataclass
class Running:
    """An ambassador running inside the test's event loop."""

    service: Ambassador
    runtime: Runtime
    port: int
    admin_port: int
    stopping: asyncio.Event
    task: asyncio.Task[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def ambassador(
    env: Mapping[str, str], resolve: Resolver = system_resolve
) -> AsyncIterator[Running]:
    """Build the real service from `AMBASSADOR_*` settings and run it with an admin server."""
    port = free_port()
    admin_port = free_port()
    full = {
        "AMBASSADOR_LISTEN": f"127.0.0.1:{port}",
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin_port}",
        "AMBASSADOR_HEALTH_INTERVAL": "0.1s",
        "AMBASSADOR_SHUTDOWN_TIMEOUT": "3s",
        **env,
    }
    config = SIDECAR.load_config([], full)
    readiness = admin.Readiness()
    registry = Registry()
    log = logging.getLogger("sidecars.ambassador.test")
    rt = Runtime("ambassador", log, registry, readiness, admin.build_app(readiness, registry))
    service = Ambassador(config, rt, resolve=resolve)
    runner = await admin.start(rt.admin_app, "127.0.0.1", admin_port)
    stopping = asyncio.Event()
    task = asyncio.create_task(service.run(stopping))
    try:
        await wait_for(lambda: bool(service.running) or task.done(), 10.0, "listeners started")
        if task.done():
            raise AssertionError(f"ambassador exited {task.result()}")
        yield Running(service, rt, port, admin_port, stopping, task)
    finally:
        stopping.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await task
        await runner.cleanup()


@contextlib.asynccontextmanager
async def echo_member() -> AsyncIterator[int]:
    """A plain tcp member on 127.0.0.1 that echoes bytes and answers an HTTP GET with a small
    200 (keep-alive); yields its port."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(ok if data.startswith(b"GET ") else data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll `check` on the event loop until it is true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not true within {within}s")
        await asyncio.sleep(0.02)


async def raw_exchange(port: int, data: bytes, within: float = 30.0) -> bytes:
    """Send raw bytes to 127.0.0.1:port, half-close, and read until the peer closes (the
    deadline catches a hang; it is generous because CI machines get starved at times)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(within):
            return await reader.read(-1)
    finally:
        writer.close()


async def exchange_no_eof(port: int, data: bytes, within: float = 10.0) -> bytes:
    """Send `data` and read until the ambassador closes, without half-closing first: the
    close must come from the ambassador's verdict, not from our end of stream."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(within):
            return await reader.read(-1)
    finally:
        writer.close()


async def through_garbage_shard(
    answer: bytes, env: Mapping[str, str], command: bytes, probe: bytes
) -> tuple[bytes, bytes]:
    """Send `command` through a sharding listener whose one shard answers `answer` and then
    `probe`, answered by the ambassador itself, on the same connection: the first line of
    each answer."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(answer)
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    shard_port = server.sockets[0].getsockname()[1]
    full = {
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{shard_port}",
        "AMBASSADOR_HEALTH_CHECK": "none",
        "AMBASSADOR_REQUEST_TIMEOUT": "2s",
        **env,
    }
    try:
        async with ambassador(full) as amb:
            reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
            try:
                writer.write(command)
                async with asyncio.timeout(10):
                    line = await reader.readline()
                writer.write(probe)
                async with asyncio.timeout(10):
                    return line, await reader.readline()
            finally:
                writer.close()
    finally:
        server.close()


# a shard ejected after two failed commands, checked every 0.1 s, back after 0.5 s
FAST_EJECTION = {
    "AMBASSADOR_EJECT_FAILURES": "2",
    "AMBASSADOR_EJECT_TIME": "0.5s",
    "AMBASSADOR_HEALTH_INTERVAL": "0.1s",
    "AMBASSADOR_HEALTH_FALL": "1",
}


class CacheServer(Protocol):
    def ready(self) -> Awaitable[None]: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=CacheServer)


@contextlib.asynccontextmanager
async def started(make: Callable[[int], S], n: int) -> AsyncIterator[list[S]]:
    """`n` servers made by `make` (RedisServer, MemcachedServer) on as many different free
    ports, ready; stopped after. (Two free_port() calls may give the same port: the second
    server would fail to bind while the first answered for both.)"""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    servers = [make(port) for port in ports]
    try:
        for server in servers:
            await server.ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


class RedisServer:
    """Debian's redis-server on a free loopback port, no persistence."""

    def __init__(self, port: int | None = None, *more: str) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *more,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        async def ping() -> bool:
            try:
                return await redis_command(self.port, b"PING") == b"+PONG\r\n"
            except OSError:
                return False

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await ping():
            if self.proc.poll() is not None or loop.time() > deadline:
                raise AssertionError("redis-server did not start")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def nutcracker(members: list[tuple[int, int]], redis: bool = True) -> Iterator[int]:
    """nutcracker with `members` (port, weight), md5 ketama and `{}` hash tags, for redis or
    memcached servers; yields its port."""
    binary = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
    port, stats = free_port(), free_port()
    servers = "".join(f"    - 127.0.0.1:{p}:{w}\n" for p, w in members)
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp, "nutcracker.yml")
        conf.write_text(
            f"pool:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n"
            f'  hash_tag: "{{}}"\n  redis: {str(redis).lower()}\n  auto_eject_hosts: false\n'
            f"  servers:\n{servers}"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-s", str(stats), "-a", "127.0.0.1", "-o", f"{tmp}/log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError("nutcracker did not start") from None
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


class MemcachedServer:
    """Debian's memcached on a free loopback port, TCP only."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        self.port = port or free_port()
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:  # memcached refuses to run as root unless told whom to run as
            args += ["-u", "root"]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            with contextlib.suppress(OSError):
                stats = await mc_exchange(self.port, b"stats\r\n")  # the first line: its pid
                if stats.startswith(b"STAT pid "):
                    if stats == b"STAT pid %d\r\n" % self.proc.pid:
                        return
                    raise AssertionError(f"port {self.port} is another memcached's")
            if self.proc.poll() is not None or loop.time() > deadline:
                raise AssertionError("memcached did not start")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


async def mc_exchange(port: int, data: bytes, replies: int = 1, within: float = 10.0) -> bytes:
    """Send memcached text commands on a fresh connection and read `replies` replies (a
    line, or VALUE entries up to END)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        out = b""
        async with asyncio.timeout(within):
            while replies:
                line = await reader.readline()
                if not line:
                    break
                out += line
                if line.startswith(b"VALUE "):
                    out += await reader.readexactly(int(line.split()[3]) + 2)
                else:
                    replies -= 1
        return out
    finally:
        writer.close()


async def redis_command(port: int, *args: bytes) -> bytes:
    """One RESP command on a fresh connection; returns the first reply line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        writer.write(b"".join(parts))
        async with asyncio.timeout(5):
            return await reader.readline()
    finally:
        writer.close()


def admin_upstreams(admin_port: int) -> list[dict[str, object]]:
    """Every listener's members as the admin server's /upstreams shows them (blocking)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/upstreams", timeout=5) as r:
        body = json.load(r)
    return [m for listener in body["listeners"] for m in listener["members"]]


def admin_metrics(admin_port: int) -> str:
    """The admin server's /metrics text (blocking)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.partition("{")[0] != name:
            continue
        got = ",".join(sorted(sample.partition("{")[2].rstrip("}").split(","))) if labels else ""
        if got == want:
            return float(value)
    return 0.0
