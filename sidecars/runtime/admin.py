"""The admin HTTP server every sidecar runs: /healthz, /readyz, /metrics and a sidecar's own."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecars.runtime.exposition import render
from sidecars.runtime.http.server import Request, Route, Server, Writer, date_line, response_head
from sidecars.runtime.metrics import Registry

TEXT = "text/plain; charset=utf-8"


class Readiness:
    """Whether the sidecar can do its job now, and why not when it cannot."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "starting"

    def set(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes


def json_reply(value: Any, status: int = 200) -> Reply:
    # the standard library's json, as orjson writes it (compact, UTF-8): a sidecar that does
    # not use orjson itself is spared its 0.9 MiB of memory for these small pages
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return Reply(status, "application/json", text.encode())


class _Page:
    """A route rendered on each request by a cheap synchronous function."""

    def __init__(self, render: Callable[[], Reply]) -> None:
        self.render = render

    def _headers(self, reply: Reply) -> list[tuple[str, str]]:
        return [("Content-Type", reply.content_type), ("Cache-Control", "no-store")]

    def immediate(self, request: Request) -> bytes | None:
        reply = self.render()
        headers = [*self._headers(reply), ("Content-Length", str(len(reply.body)))]
        head = response_head(reply.status, headers, True) + date_line() + b"\r\n"
        return head if request.method == "HEAD" else head + reply.body

    async def respond(self, request: Request, out: Writer) -> None:
        reply = self.render()
        out.full(reply.status, self._headers(reply), reply.body)


class _MetricsPage:
    """The registry in the format and encoding the scraper asks for, rendered per request."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _page(self, request: Request) -> tuple[bytes, list[tuple[str, str]]]:
        body, headers = render(self.registry.collect(), request.accept, request.accept_encoding)
        return body, [*headers, ("Cache-Control", "no-store")]

    def immediate(self, request: Request) -> bytes | None:
        body, headers = self._page(request)
        headers.append(("Content-Length", str(len(body))))
        head = response_head(200, headers, True) + date_line() + b"\r\n"
        return head if request.method == "HEAD" else head + body

    async def respond(self, request: Request, out: Writer) -> None:
        body, headers = self._page(request)
        out.full(200, headers, body)


class AdminApp:
    """The admin routes; a sidecar may add its own (GET/HEAD) before the server starts."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    def add(self, path: str, render: Callable[[], Reply]) -> None:
        self.routes[path] = _Page(render)


def build_app(
    readiness: Readiness,
    registry: Registry,
    stalled: Callable[[], str | None] = lambda: None,
) -> AdminApp:
    """/healthz is 503 naming the loop while `stalled()` gives a reason, /readyz follows
    `readiness`, /metrics is `registry`."""

    def healthz() -> Reply:
        reason = stalled()
        if reason is None:
            return Reply(200, TEXT, b"ok\n")
        return Reply(503, TEXT, f"not alive: {reason}\n".encode())

    def readyz() -> Reply:
        if readiness.ready:
            return Reply(200, TEXT, b"ready\n")
        return Reply(503, TEXT, f"not ready: {readiness.reason}\n".encode())

    app = AdminApp()
    app.add("/healthz", healthz)
    app.add("/readyz", readyz)
    app.routes["/metrics"] = _MetricsPage(registry)
    return app


class AdminServer:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def cleanup(self) -> None:
        await self.server.stop()


async def start(app: AdminApp, host: str, port: int) -> AdminServer:
    """Serve `app` on host:port; the caller calls `cleanup()` at exit."""
    server = Server(dict(app.routes), logging.getLogger("admin"), name="admin")
    await server.start(host, port)
    return AdminServer(server)
