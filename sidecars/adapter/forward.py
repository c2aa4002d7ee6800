"""Path mapping: stream a configured path of the app to the caller, with a deadline and a cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sidecars.adapter.appclient import MAX_HEAD, AppClient, AppConn, AppError
from sidecars.runtime.http.head import HttpError, head_end, no_body, parse_response
from sidecars.runtime.http.server import (
    Connection,
    Request,
    Route,
    Writer,
    date_line,
    response_head,
)

# Response headers worth passing on; hop-by-hop and framing headers are ours to set.
_PASS_HEADERS = ("Content-Type", "Cache-Control", "Content-Language", "Last-Modified", "ETag")
_PASS = [(name, name.lower()) for name in _PASS_HEADERS]
_PASS_RAW = [(name, name.lower().encode()) for name in _PASS_HEADERS]
_quick: dict[bytes, tuple[int, bool, int, list[tuple[str, str]]]] = {}  # head -> _quick_head
_WHOLE_BYTES = 65536  # larger answers are streamed, not gathered whole (nor paused half-read)


class ForwardError(Exception):
    """The app could not be read before the answer started; `reason` is a bounded label."""

    def __init__(self, reason: str, status: int, message: str) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


class Forwarder:
    """Forwards GET/HEAD of one fixed app path; nothing from the request picks the target."""

    def __init__(self, client: AppClient, path: str, deadline: float, max_bytes: int) -> None:
        self.client, self.path, self.deadline, self.max_bytes = client, path, deadline, max_bytes

    def begin(
        self, request: Request, conn: Connection, route: Route, count: Callable[[int], None]
    ) -> bool:
        """The fast path, without a task: a GET sent on a pooled connection, answered from the
        protocol callback when the app's answer comes whole with a Content-Length. Anything
        else is handed to `forward` in a task (`request.state` holds the sent request)."""
        if request.method != "GET":
            return False
        app = self.client.send_get(self.path, request.accept)
        if app is None:
            return False
        pending = _Pending(self, request, conn, route, count, app)
        app.listener = pending.on_app
        pending.timer = conn.loop.call_later(self.deadline, pending.hand_over)
        return True

    async def forward(self, request: Request, out: Writer) -> int:
        """Stream the app's answer and return its status. Failures before the first byte raise
        ForwardError (502/504); after it, the connection is cut (the status is already sent)."""
        deadline = self.deadline
        if request.state is not None:  # handed over by the fast path: the request is sent
            deadline -= time.monotonic() - request.state[1]
        try:
            async with asyncio.timeout(deadline):
                if request.state is not None:
                    sent, request.state = request.state[0], None
                    answer = await self.client.resume_get(sent, self.path, request.accept)
                else:
                    answer = await self.client.get(request.method, self.path, request.accept)
                try:
                    if answer.length is not None and answer.length > self.max_bytes:
                        msg = f"the app's answer is {answer.length} bytes"
                        raise ForwardError("too_large", 502, msg)
                    headers = answer.headers
                    passed = [(name, headers[low]) for name, low in _PASS if low in headers]
                    whole = answer.whole
                    if whole is not None and len(whole) == answer.length:  # a GET, read whole
                        out.full(answer.status, passed, whole)  # one write: head and body
                        return answer.status
                    out.start(answer.status, passed, answer.length)
                    total = 0
                    async for chunk in answer.chunks():
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise AppError(f"answer exceeds {self.max_bytes} bytes")
                        await out.write(chunk)
                    out.finish()
                    return answer.status
                finally:
                    await answer.aclose()
        except TimeoutError:
            if out.committed:
                out.abort()
                return 0
            msg = f"the app did not answer in {self.deadline:g}s"
            raise ForwardError("timeout", 504, msg) from None
        except (AppError, OSError) as exc:
            if out.committed:
                out.abort()
                return 0
            text = str(exc) or type(exc).__name__
            raise ForwardError("connect", 502, f"cannot read the app: {text}") from None


class _Pending:
    """One GET on the fast path, waiting for the app's answer in the app connection's buffer."""

    __slots__ = ("fwd", "request", "conn", "route", "count", "app", "timer", "started")

    def __init__(
        self,
        fwd: Forwarder,
        request: Request,
        conn: Connection,
        route: Route,
        count: Callable[[int], None],
        app: AppConn,
    ) -> None:
        self.fwd, self.request, self.conn, self.route, self.count = fwd, request, conn, route, count
        self.app = app
        self.timer: asyncio.TimerHandle | None = None
        self.started = time.monotonic()

    def on_app(self) -> None:
        app = self.app
        buf = app.buf
        end = head_end(buf)
        if end < 0:
            if app.eof or len(buf) > MAX_HEAD:
                self.hand_over()  # the task path retries a stale connection or names the error
            return
        raw = bytes(buf[:end])
        quick = _quick.get(raw)
        if quick is None:
            quick = _quick_head(raw)
            if quick is not None and end <= 2048:  # the same head again: Date moves each second
                if len(_quick) >= 64:
                    _quick.clear()
                _quick[raw] = quick
        if quick is None or quick[2] > _WHOLE_BYTES:
            self.hand_over()  # streamed, unusual or large: the task path streams it
            return
        status, keep, length, passed = quick
        start = end + 4
        if len(buf) < start + length:
            if app.eof:
                self.hand_over()
            return  # the rest of the body is on its way
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        self._detach()
        self.fwd.client.release(app, keep)
        keep_alive = self.request.keep_alive
        wire = b"%bContent-Length: %d\r\n%b\r\n%b" % (
            response_head(status, passed, keep_alive, self.request.http10),
            length,
            date_line(),
            body,
        )
        self.count(status)
        self.conn.finish(wire, keep_alive)

    def hand_over(self) -> None:
        """On to `forward` in a task, with the request already sent (or the deadline gone)."""
        self._detach()
        self.request.state = (self.app, self.started)
        self.conn.later(self.route, self.request)

    def _detach(self) -> None:
        self.app.listener = None
        if self.timer is not None:
            self.timer.cancel()


def _quick_head(raw: bytes) -> tuple[int, bool, int, list[tuple[str, str]]] | None:
    """(status, keep the connection, Content-Length, headers to pass) of a plain answer: one
    Content-Length, no Transfer-Encoding, a status with a body. None for anything else: the
    task path then reads it (and names what is wrong)."""
    try:
        head = parse_response(raw)
    except HttpError:
        return None
    status = head.status
    if head.length is None or head.chunked or no_body(b"GET", status):
        return None
    found = {n.lower(): v for n, v in head.lines}
    passed = []
    for name, low in _PASS_RAW:
        value = found.get(low)
        if value is not None:
            passed.append((name, value.strip(b" \t").decode("latin-1")))
    return status, not head.close, head.length, passed
