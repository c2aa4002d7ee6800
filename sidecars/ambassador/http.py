"""http mode: HTTP/1.1 requests balanced one by one over keep-alive pools to the members."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

from sidecars.ambassador import httpwire as wire
from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.deadlines import Deadlines
from sidecars.ambassador.exchange import Exchange, Shape
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import Member
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.pool import HIGH_WATER, LOW_WATER, Pool
from sidecars.ambassador.termination import Holding, Termination
from sidecars.ambassador.waiting import Waiting
from sidecars.runtime import listening
from sidecars.runtime.http.head import bare_lf, head_end

LINGER_SECONDS = 1.0  # after an error answer, input is read and dropped this long...
LINGER_BYTES = 256 * 1024  # ...or this much, so that closing does not reset the answer away
# Parsed heads are kept by their exact bytes: a client repeats the same head on every request
# and a member answers with the same head (but for its Date) many times a second. Bounded:
# a full cache is emptied; longer heads are parsed every time.
HEAD_CACHE_ENTRIES = 256
HEAD_CACHE_BYTES = 2048


class HttpListener(Listener):
    """An http mode listener."""

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        # the parameters spelt out, not *args: mypyc passes *args to a compiled parent as one tuple
        super().__init__(name, settings, cluster, metrics, log)
        self.pending = 0
        # requests sent, no response head yet; the hot path sets and pops `awaiting` directly
        self.timeouts = Deadlines(lambda: self.settings.request_timeout, Exchange.timed_out)
        self.awaiting: dict[Exchange, float] = self.timeouts.entries
        self.pool = Pool(self.settings.pool_size, self.settings.idle_timeout)
        self.pool.tls = self.tls
        self.waiting = Waiting()  # requests waiting for a member under its connection limit
        # (client address, request head) -> what the head decides (see Shape)
        self.requests: dict[tuple[str, bytes], Shape] = {}
        self.generation = 0  # moves on reconfigure: heads kept by connections are stale
        # response head -> (parsed head, status, head forwarded with its own framing, kept alive,
        # body length when the fast path may forward it whole, else -1)
        self.responses: dict[bytes, tuple[wire.Head, int, bytes, int]] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.clock: Callable[[], float] = time.monotonic  # the loop's time(), once it runs
        self._hot(settings)
        # idle connections to members that left (DNS, member file) are closed at once
        self.cluster.on_change = lambda c: self.pool.prune(set(c.members.values()))

    def _hot(self, settings: Config) -> None:
        """The settings every request reads, kept as this compiled class's own attributes: each
        read of the frozen settings object is a Python attribute lookup."""
        self.max_pending = settings.max_pending
        self.retries = settings.retries
        self.request_timeout = settings.request_timeout
        self.hashing = settings.policy == "hash"

    def reconfigure(self, settings: Config) -> None:
        super().reconfigure(settings)
        self._hot(settings)
        self.pool.tls = self.tls
        self.requests.clear()  # kept heads passed the old limits
        self.generation += 1
        self.responses.clear()

    async def _serve(self) -> listening.Servers:
        host, port = self.settings.listen
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time  # bound once: a method looked up per request costs more
        return await listening.serve(lambda: ClientSide(self), host, port, backlog=1024)

    async def start(self) -> None:
        await super().start()
        self.timeouts.start(f"request timeouts of listener {self.name}")

    async def close(self) -> None:
        await super().close()
        await self.timeouts.close()
        await self.waiting.close()
        self.pool.close()

    def failed(self, member: Member, kind: str) -> None:
        if self.cluster.failed(member, kind):
            self.log.warning(
                "member %s ejected after %s failures",
                member.key,
                kind,
                extra={"listener": self.name, "member": member.key},
            )


class ClientSide(asyncio.Protocol):
    """A client connection: reads request heads, runs one Exchange at a time, keeps alive."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        # its write, bound once per transport: the hot path's writes skip the method lookup
        self.write: Callable[[bytes], object] = None  # type: ignore[assignment]
        self.ip = ""
        self.buf = b""  # a request head being read, or pipelined bytes held during an exchange
        self.ex: Exchange | None = None
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.client_eof = self.closed = self.paused = False
        self.lingering = 0  # bytes dropped while lingering, -1 when not lingering
        self.idle_at = 0.0  # loop time of the connection or of its last request's start
        # the last request head read whole in one read, with its shape: a keep-alive client
        # sends the same bytes again, which then need no search, slicing or hashing
        self.last_head = b""
        self.last_shape: Shape | None = None
        self.generation = listener.generation
        self.handshaking = False  # a TLS listener's client before its handshake passed
        self.task: asyncio.Task[None] | None = None  # its handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self.transport = t = cast(asyncio.Transport, transport)
        self.write = t.write
        if self.handshaking:  # the TLS transport, once the handshake passed (see _handshake)
            self.handshaking = False
            self._ready(t)
            return
        self.lingering = -1
        term = self.listener.term
        if not self.listener.admit(self):
            if term is None:
                t.write(wire.error_response(503, "too many client connections"))
            t.close()
            self.closed = True
            return
        peer = t.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        if term is not None:
            hold = Holding()  # the raw bytes go to the TLS layer
            t.set_protocol(hold)
            hold.connection_made(t)
            self.handshaking = True
            self.task = self.listener.loop.create_task(self._handshake(term, t, hold))
            return
        self._ready(t)

    def _ready(self, t: asyncio.Transport) -> None:
        t.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.idle_at = self.listener.loop.time()

    async def _handshake(self, term: Termination, raw: asyncio.Transport, hold: Holding) -> None:
        if await term.accept(raw, hold, lambda: self) is None and not self.closed:
            self.connection_lost(None)  # the raw transport's end did not come here

    def data_received(self, data: bytes) -> None:
        self.nbytes += 1
        ex = self.ex
        try:
            if ex is not None and ex.wants_body():
                ex.client_data(data)
            elif self.lingering >= 0:
                self.lingering += len(data)
                if self.lingering > LINGER_BYTES:
                    self.transport.close()
            elif ex is not None:  # pipelined bytes while a response is on its way
                self.stash(data)
            elif not self.closed:
                shape = self.last_shape
                if (
                    data == self.last_head
                    and shape is not None
                    and not self.buf
                    and self.generation == self.listener.generation
                ):
                    self._request(shape, b"")
                else:
                    self._head(data)
        except Exception:
            self.listener.log.exception(
                "http connection failed", extra={"listener": self.listener.name}
            )
            self.abort()

    def _head(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        limit = self.listener.settings.max_header_size
        end = head_end(buf)
        if end < 0 or end + 4 > limit:
            if len(buf) > limit or end >= 0:
                return self._reject("header_too_large", 431, "request head too large")
            if bare_lf(buf):
                return self._reject("bad_request", 400, "bare LF in the request head")
            if self.client_eof:  # a head cut short: nothing to answer
                self.transport.close()
                return
            self.buf = buf
            if buf and self.timer is None:
                timeout = self.listener.settings.header_timeout
                self.timer = self.listener.loop.call_later(timeout, self._head_timeout)
            return
        self.buf = b""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        key = (self.ip, buf[:end])
        listener = self.listener
        cache = listener.requests
        shape = cache.get(key)
        if shape is None:
            try:
                head = wire.parse_request(key[1])
            except wire.HttpError as exc:
                return self._reject("bad_request", exc.status, exc.message)
            shape = Shape(head, wire.forward_request(head, self.ip))
            if end <= HEAD_CACHE_BYTES:
                if len(cache) >= HEAD_CACHE_ENTRIES:
                    cache.clear()
                cache[key] = shape
        if len(buf) == end + 4:
            if end <= HEAD_CACHE_BYTES:
                self.last_head, self.last_shape = buf, shape
                self.generation = listener.generation
            rest = b""
        else:
            rest = buf[end + 4 :]
        self._request(shape, rest)

    def _request(self, shape: Shape, rest: bytes) -> None:
        listener = self.listener
        head, has_body = shape.head, shape.has_body
        if listener.pending >= listener.max_pending:
            listener.metrics.rejected.labels(listener.name, "max_pending").inc()
            close = has_body or head.close
            http10 = head.version == b"HTTP/1.0"
            busy = wire.error_response(503, "too many requests in flight", close, http10)
            self.transport.write(busy)
            if has_body:
                self._linger()
            elif close:
                self.transport.close()
            elif rest:
                self._head(rest)
            return
        listener.pending += 1
        if has_body:
            self.pause()  # until a member is connected
            self.ex = ex = Exchange(self, shape, rest)
        else:
            self.buf = rest
            self.ex = ex = Exchange(self, shape, b"")
        ex.attempt()

    def stash(self, data: bytes) -> None:
        """Hold bytes that follow the current request until its response is done."""
        if data:
            self.buf += data
            if len(self.buf) > self.listener.settings.max_header_size:
                self.pause()

    def exchange_done(self, keep: bool, linger: bool) -> None:
        if self.ex is not None:
            self.idle_at = self.ex.started  # no clock read per request
        self.ex = None
        if self.closed:
            return
        # a client that half-closed after pipelining still gets every answer it asked for
        if not keep or self.listener.draining or (self.client_eof and not self.buf):
            if linger and not self.client_eof:
                self._linger()
            else:
                self.transport.close()
            return
        if self.paused:
            self.resume()
        if self.buf:
            data, self.buf = self.buf, b""
            self._head(data)

    def _reject(self, reason: str, status: int, message: str) -> None:
        self.listener.metrics.rejected.labels(self.listener.name, reason).inc()
        self.transport.write(wire.error_response(status, message))
        self._linger()

    def _head_timeout(self) -> None:
        self.timer = None
        if self.ex is None and self.lingering < 0 and not self.closed:
            self._reject("header_timeout", 408, "request head not sent in time")

    def _linger(self) -> None:
        """Half-close and drop what the client still sends for a moment: closing with unread
        input would reset the connection and could destroy the error answer in flight."""
        self.buf = b""
        self.lingering = 0
        if self.timer is not None:
            self.timer.cancel()
        if self.client_eof or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.resume()
        self.timer = self.listener.loop.call_later(LINGER_SECONDS, self.transport.close)

    def eof_received(self) -> bool:
        self.client_eof = True
        ex = self.ex
        if ex is not None and ex.tunnel:
            ex.client_eof()
            return True
        if ex is not None and ex.wants_body():  # the request body was cut short
            self.abort()
            return False
        if self.lingering >= 0:
            self.transport.close()
            return False
        # a half-closed client still gets the answer to the request in flight
        return ex is not None

    def pause(self) -> None:
        if not self.paused and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        if self.ex is not None:
            self.ex.client_paused(True)

    def resume_writing(self) -> None:
        if self.ex is not None:
            self.ex.client_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ex, self.ex = self.ex, None
        if ex is not None:
            ex.client_lost()
        self.listener.release(self)

    def abort(self) -> None:
        if not self.closed:
            self.transport.abort()

    def busy(self) -> bool:
        return self.ex is not None

    def watch_idle(self) -> bool:
        return self.ex is None or not self.ex.awaiting_head()  # a request timeout covers that

    def idle_since(self) -> float | None:
        # between requests, a partial head included (a slow sender is not owed a place); a
        # handshake has its own deadline
        if self.ex is not None or self.lingering >= 0 or self.closed or self.handshaking:
            return None
        return self.idle_at
