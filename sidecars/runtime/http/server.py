"""The HTTP/1.1 server of the admin and adapter ports: GET/HEAD, keep-alive, pipelining, limits.
Request heads are parsed by `head.parse_request`, as strictly as the ambassador's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast

from sidecars.runtime import listening
from sidecars.runtime.http.head import HttpError, bare_lf, head_end, parse_request
from sidecars.runtime.tasks import spawn

MAX_HEAD = 8192  # request line + headers
MAX_PENDING = 65536  # pipelined bytes buffered while a request is being answered
HEAD_TIMEOUT = 10.0  # a started request head must be complete within this (slowloris)
IDLE_TIMEOUT = 60.0  # keep-alive connections idle longer than this are closed
ALLOW = "GET, HEAD"


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)  # not frozen: its __init__ is on the hot path
class Request:
    method: str
    path: str
    accept: str
    accept_encoding: str
    keep_alive: bool
    has_body: bool
    http10: bool  # kept alive only when it asked: then told so (`Connection: keep-alive`)
    state: Any = None  # what a Deferred route hands over to its respond()


class Route(Protocol):
    def immediate(self, request: Request) -> bytes | None:
        """The whole keep-alive response when it is ready now (a cached answer), else None."""

    async def respond(self, request: Request, out: Writer) -> None:
        """Answer through `out` (called when `immediate` had nothing)."""


class Deferred:
    """A route that can answer without a task: `begin` starts the work and later calls
    `conn.finish(wire)` with the whole answer, or `conn.later(route, request)` to answer
    through `respond` in a task after all (streaming, errors). It returns False to decline."""

    def begin(self, request: Request, conn: Connection) -> bool:
        return False


_parsed: dict[bytes, tuple[str, str, str, str, bool, bool, bool]] = {}
_PARSED_MAX, _PARSED_HEAD = 256, 1024  # entries, and the longest head that is kept


def parse_head(head: bytes) -> Request:
    """Request line and headers (no body is ever read: GET and HEAD only). Probes send the
    same bytes again and again: a head seen before is not parsed twice (a bounded cache)."""
    known = _parsed.get(head)
    if known is not None:
        return Request(*known)
    fields = _parse_head(head)
    if len(head) <= _PARSED_HEAD:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[head] = fields
    return Request(*fields)


def _parse_head(raw: bytes) -> tuple[str, str, str, str, bool, bool, bool]:
    try:
        head = parse_request(raw)
    except HttpError as exc:
        raise BadRequest(exc.status, exc.message) from None
    method, target = head.first
    accept, encoding = head.find("accept"), head.find("accept-encoding")
    return (
        method.decode("ascii"),
        target.split(b"?", 1)[0].decode("latin-1"),
        "*/*" if accept is None else accept.decode("latin-1"),
        "" if encoding is None else encoding.decode("latin-1"),
        not head.close,
        head.chunked or bool(head.length),
        head.version == b"HTTP/1.0",
    )


_date: tuple[int, bytes] = (0, b"")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: int) -> str:
    """An IMF-fixdate (RFC 9110 5.6.7), as email.utils.formatdate(usegmt=True) writes it
    (without importing the email package: 0.5 MiB of memory for this one line)."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def date_line() -> bytes:
    """`Date: ...\\r\\n`, formatted once per second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, f"Date: {http_date(now)}\r\n".encode())
    return _date[1]


_heads: dict[tuple[int, tuple[tuple[str, str], ...], bool, bool], bytes] = {}


def response_head(
    status: int,
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    keep_alive: bool,
    http10: bool = False,
) -> bytes:
    """Status line and headers up to the blank line, without Date (added when sent). Heads
    are kept (a bounded number) so a repeated answer costs one dict lookup."""
    key = (status, tuple(headers), keep_alive, http10)
    head = _heads.get(key)
    if head is not None:
        return head
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            continue  # never let a value start a header or a body of its own
        lines.append(f"{name}: {value}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif http10:
        lines.append("Connection: keep-alive\r\n")
    head = "".join(lines).encode("latin-1")
    if len(_heads) >= 512:
        _heads.clear()  # values may come from the app (ETag...): keep the cache bounded
    _heads[key] = head
    return head


class Writer:
    """Writes one response on a connection; bodies of unknown length go out chunked. The head is
    held back and sent with the first body bytes: one write (one syscall) for small answers."""

    def __init__(self, conn: Connection, request: Request) -> None:
        self.conn, self.request = conn, request
        self.started = False
        self._chunked = False
        self._head_only = request.method == "HEAD"
        self._pending = b""

    def start(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        head = response_head(status, headers, self.request.keep_alive, self.request.http10)
        if length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif self._head_only:
            framing = b""
        else:
            self._chunked = True
            framing = b"Transfer-Encoding: chunked\r\n"
        self._pending = head + framing + date_line() + b"\r\n"
        self.started = True

    @property
    def committed(self) -> bool:
        """Whether the status is on its way: until then an error can still be answered."""
        return self.started and not self._pending

    async def write(self, data: bytes) -> None:
        if self._head_only or not data:
            return
        framed = b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data
        if self._pending:
            framed, self._pending = self._pending + framed, b""
        self.conn.send(framed)
        await self.conn.drain()

    def finish(self) -> None:
        tail = b"0\r\n\r\n" if self._chunked else b""
        if self._pending or tail:
            self.conn.send(self._pending + tail)
            self._pending = b""

    def full(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.start(status, headers, len(body))
        self.conn.send(self._pending if self._head_only else self._pending + body)
        self._pending = b""

    def abort(self) -> None:
        self.conn.abort()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Server:
    """Owns the listening socket, the connections and the idle/slow-client sweeper."""

    def __init__(
        self,
        routes: dict[str, Route],
        log: logging.Logger,
        count: Callable[[str, int], None] = lambda route, code: None,
        name: str = "server",
    ) -> None:
        """`count(route, code)` is told of every answer the server gives by itself; `name`
        prefixes the body of a 500."""
        self.routes, self.log, self.count, self.name = routes, log, count, name
        self.error_body = f"{name}: internal error\n".encode()
        self.conns: set[Connection] = set()
        self._server: listening.Servers | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await listening.serve(lambda: Connection(self), host, port, backlog=1024)
        self._sweeper = spawn(f"idle sweep of the {self.name} server", self._sweep())

    async def stop(self) -> None:
        """Stop accepting, close idle connections, wait for the answers in progress."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for conn in list(self.conns):
            conn.stopping = True
            if conn.task is None:
                conn.close()
        busy = [c.task for c in self.conns if c.task is not None]
        if busy:
            await asyncio.gather(*busy, return_exceptions=True)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, HEAD_TIMEOUT / 4))
            now = loop.time()
            for conn in list(self.conns):
                if conn.task is not None:
                    continue
                # A started head is timed from its first byte, so trickling bytes cannot keep it.
                late = (
                    now - conn.head_at > HEAD_TIMEOUT
                    if conn.buf
                    else now - conn.last > IDLE_TIMEOUT
                )
                if late:
                    conn.close()


class Connection(asyncio.Protocol):
    """One client connection: requests are answered in order, one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.last = self.head_at = self.loop.time()
        self.task: asyncio.Future[None] | None = None  # the answer in progress
        self.stopping = False
        self.paused = False
        self._writable: asyncio.Event | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        self.transport = None
        if self._writable is not None:
            self._writable.set()

    def pause_writing(self) -> None:
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

    async def drain(self) -> None:
        if self.transport is None:
            raise ConnectionResetError("client went away")
        if self._writable is not None:
            await self._writable.wait()
            if self.transport is None:
                raise ConnectionResetError("client went away")

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        if self.buf:
            self.buf += data
        else:
            self.buf, self.head_at = data, self.last
        if self.task is not None:
            if len(self.buf) > MAX_PENDING and self.transport is not None and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        self._process()

    def _process(self) -> None:
        while self.task is None and self.transport is not None and not self.stopping:
            end = head_end(self.buf)
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._refuse(431, "request head too large")
                elif bare_lf(self.buf):
                    self._refuse(400, "bare LF in the request head")
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            if end > MAX_HEAD:
                self._refuse(431, "request head too large")
                return
            try:
                request = parse_head(head)
            except BadRequest as exc:
                self._refuse(exc.status, str(exc))
                return
            self._dispatch(request)

    def _dispatch(self, request: Request) -> None:
        route = self.server.routes.get(request.path)
        if route is None or request.method not in ("GET", "HEAD") or request.has_body:
            status = 404 if route is None else 405
            if route is not None and request.has_body and request.method in ("GET", "HEAD"):
                status = 400
            # Keep the connection only when nothing unread (a body) follows the head.
            keep = request.keep_alive and not request.has_body and not self.stopping
            self._refuse(status, HTTPStatus(status).phrase.lower(), request, keep)
            return
        if request.keep_alive and not request.http10:  # cached answers are HTTP/1.1's
            wire = route.immediate(request)
            if wire is not None:
                self.send(wire)
                return
        if isinstance(route, Deferred) and route.begin(request, self):
            self.task = self.loop.create_future()  # busy until finish() or later()
            return
        self.task = self.loop.create_task(self._respond(route, request))

    def finish(self, wire: bytes, keep_alive: bool) -> None:
        """A Deferred route's whole answer: send it, then go on with the next request."""
        busy, self.task = self.task, None
        self.send(wire)
        if busy is not None:
            _settle(busy)
        self._next(keep_alive)

    def later(self, route: Route, request: Request) -> None:
        """A Deferred route answers through `respond` in a task after all."""
        busy = self.task
        task = self.task = self.loop.create_task(self._respond(route, request))
        if busy is not None:
            task.add_done_callback(lambda _: _settle(busy))

    async def _respond(self, route: Route, request: Request) -> None:
        out = Writer(self, request)
        try:
            await route.respond(request, out)
        except ConnectionError:
            self.abort()
        except Exception:
            self.server.log.exception("answering %s failed", request.path)
            self.server.count("error", 500)
            if out.committed:
                self.abort()
            else:
                out.full(500, [("Content-Type", "text/plain")], self.server.error_body)
        finally:
            self.task = None
        self._next(request.keep_alive)

    def _next(self, keep_alive: bool) -> None:
        if not keep_alive or self.stopping:
            self.close()
            return
        if self.transport is not None:
            if self.paused:
                self.paused = False
                self.transport.resume_reading()
            self._process()

    def _refuse(
        self, status: int, text: str, request: Request | None = None, keep: bool = False
    ) -> None:
        """Answer an error; close unless `keep` (a malformed request is never kept)."""
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 405:
            headers.append(("Allow", ALLOW))
        body = f"{text}\n".encode()
        headers.append(("Content-Length", str(len(body))))
        if request is not None and request.method == "HEAD":
            body = b""
        http10 = request is not None and request.http10
        self.send(response_head(status, headers, keep, http10) + date_line() + b"\r\n" + body)
        self.server.count("other", status)
        if not keep:
            self.close()
