"""The HTTP/1.1 client of the tree: requests to one origin over pooled keep-alive connections,
plain or TLS; answers parsed by `head.parse_response` and framed by `body.response_body`,
bounded, streamed or whole. The adapter reads the app with it, the logshipper its Elasticsearch
nodes, the ambassador its http health checks."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from sidecars.runtime import resolver
from sidecars.runtime.http.body import Body, Length, response_body
from sidecars.runtime.http.head import HttpError, head_end, parse_response

MAX_HEAD = 65536  # an answer's status line and headers
HIGH_WATER = 262144  # stop reading from the peer while this much is buffered and unread
CLOSE_WAIT = 1.0  # longest wait for pooled connections to close (a TLS close is an exchange)
# a request as bytes, or as pieces written one after the other (a head, then a large body)
Wire = bytes | tuple[bytes, ...]


class ClientError(Exception):
    """The answer could not be read (connection, framing, size)."""


class ConnectError(ClientError):
    """No connection (refused, unreachable, TLS handshake or verification); the original
    error is the exception's cause."""


class _Stale(ClientError):
    """The connection ended before the first byte of an answer (a pooled one may be stale)."""


class Conn(asyncio.Protocol):
    """One connection; the reader side is a byte buffer and a wake-up future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.settled = True  # False while an answer is being read from it
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.listener: Callable[[], None] | None = None  # told of every new byte and the end
        self.gone = loop.create_future()  # done once the transport has closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.transport = None
        self._wake()
        if not self.gone.done():
            self.gone.set_result(None)

    def _wake(self) -> None:
        if self.listener is not None:
            self.listener()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes (or the end); the caller has consumed what it could."""
        if self.eof:
            return
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._waiter = self.loop.create_future()
        await self._waiter

    def take(self, n: int) -> bytes:
        """Up to `n` buffered bytes."""
        buf = self.buf
        if len(buf) <= n:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.eof = self.settled = True


class Answer:
    """An answer. Small ones come whole (`whole`, the connection already back in the pool);
    others stream from `chunks()`. Always `aclose()` it (a no-op when read)."""

    __slots__ = ("status", "headers", "length", "whole", "_body", "_conn")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        length: int | None,
        whole: bytes | None,
        body: AsyncGenerator[bytes, None] | None = None,
        conn: Conn | None = None,
    ) -> None:
        self.status, self.headers, self.length = status, headers, length
        self.whole, self._body, self._conn = whole, body, conn

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.whole is not None:
            if self.whole:
                yield self.whole
            return
        assert self._body is not None
        async for chunk in self._body:
            yield chunk

    async def read(self, limit: int) -> bytes:
        """The whole body; ClientError when it is longer than `limit` bytes."""
        if self.whole is not None:
            if len(self.whole) > limit:
                raise ClientError(f"answer body over {limit} bytes")
            return self.whole
        parts: list[bytes] = []
        total = 0
        try:
            if self.length is not None and self.length > limit:  # closed below: no fd leak
                raise ClientError(f"answer body of {self.length} bytes is over {limit}")
            async for chunk in self.chunks():
                total += len(chunk)
                if total > limit:
                    raise ClientError(f"answer body over {limit} bytes")
                parts.append(chunk)
        finally:
            await self.aclose()
        return b"".join(parts)

    async def aclose(self) -> None:
        if self._body is not None:
            await self._body.aclose()  # runs its cleanup only if it was started
        if self._conn is not None and not self._conn.settled:
            self._conn.close()  # a body left unread: the connection cannot be reused


class Client:
    """Requests to one origin (`host`, `port`, TLS when `ssl_context` is given); keeps up to
    `keep` idle connections. A request is sent as whole bytes (head and body) built by the
    caller; `authority` is what callers put in Host."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        keep: int = 64,
        authority: str = "",
    ) -> None:
        self.host, self.port, self.keep = host, port, keep
        self.ssl, self.server_hostname = ssl_context, server_hostname
        self.authority = authority or (f"[{host}]" if ":" in host else host) + f":{port}"
        self._idle: list[Conn] = []
        self._open: set[Conn] = set()  # every connection not yet closed

    async def close(self) -> None:
        """Close every connection and wait (a moment at most) until they are closed."""
        self._idle = []
        conns, self._open = self._open, set()
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([conn.gone for conn in conns], timeout=CLOSE_WAIT)

    async def request(self, method: bytes, wire: Wire, retry_stale: bool = True) -> Answer:
        """Send `wire` (a whole request, or its pieces) and read the answer's head. A pooled
        connection that turns out closed before any byte of an answer is given up and, when
        `retry_stale`, the request is sent again on another or a new one (the peer never read
        it)."""
        while (conn := self._pooled()) is not None:
            self._send(conn, wire)
            try:
                return await self._answer(conn, method)
            except _Stale:
                conn.close()
                if not retry_stale:
                    raise
            except BaseException:
                conn.close()
                raise
        conn = await self._connect()
        self._send(conn, wire)
        try:
            return await self._answer(conn, method)
        except BaseException:
            conn.close()
            raise

    def send_pooled(self, wire: Wire) -> Conn | None:
        """Send `wire` on an idle pooled connection, without waiting; None when there is none.
        Read the answer from the connection's buffer or with `resume`."""
        conn = self._pooled()
        if conn is not None:
            self._send(conn, wire)
        return conn

    def _pooled(self) -> Conn | None:
        """The most recently used idle connection the peer has not closed."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.eof:
                return conn
            conn.close()
        return None

    async def resume(self, conn: Conn, method: bytes, wire: Wire) -> Answer:
        """The answer to what `send_pooled` sent (sent again on a fresh connection if the
        pooled one turns out closed)."""
        try:
            return await self._answer(conn, method)
        except _Stale:
            conn.close()
            return await self.request(method, wire)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _send(conn: Conn, wire: Wire) -> None:
        assert conn.transport is not None
        conn.settled = False
        if isinstance(wire, bytes):
            conn.transport.write(wire)
        else:
            conn.transport.writelines(wire)  # a large body is not copied behind its head

    async def _connect(self) -> Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await resolver.connect(
                lambda: Conn(loop),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.server_hostname if self.ssl is not None else None,
            )
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS with {self.authority} failed: {exc.reason or exc}") from exc
        except OSError as exc:
            raise ConnectError(f"{self.authority}: {exc.strerror or exc}") from exc
        self._open.add(conn)
        conn.gone.add_done_callback(lambda _: self._open.discard(conn))
        return conn

    async def _answer(self, conn: Conn, method: bytes) -> Answer:
        buf = conn.buf
        while True:
            while (end := head_end(buf)) < 0:
                if len(buf) > MAX_HEAD:
                    raise ClientError("answer head too large")
                if conn.eof:
                    if buf:
                        raise ClientError("the peer closed the connection in the answer head")
                    raise _Stale("the peer closed the connection before answering")
                await conn.more()
            if end > MAX_HEAD:
                raise ClientError("answer head too large")
            try:
                head = parse_response(bytes(buf[:end]))
            except HttpError as exc:
                raise ClientError(f"bad answer: {exc.message}") from None
            del buf[: end + 4]
            if head.status >= 200 or head.status == 101:
                break  # 1xx interim answers are skipped
        status, keep, headers = head.status, not head.close, head.fields()
        body = response_body(head, method, decode=True)
        if body.done:
            self.release(conn, keep)
            return Answer(status, headers, head.length, b"")
        if type(body) is Length and len(buf) >= body.left:  # the whole answer in one read
            whole = conn.take(body.left)
            self.release(conn, keep)
            return Answer(status, headers, head.length, whole)
        return Answer(status, headers, head.length, None, self._stream(conn, body, keep), conn)

    def release(self, conn: Conn, keep: bool) -> None:
        """Back to the pool (when `keep` and nothing is left unread), else closed."""
        conn.settled = True
        if keep and not conn.eof and not conn.buf and len(self._idle) < self.keep:
            self._idle.append(conn)
        else:
            conn.close()

    async def _stream(self, conn: Conn, body: Body, keep: bool) -> AsyncGenerator[bytes, None]:
        """The body's bytes (chunked framing taken off) as they come, at most HIGH_WATER at a
        time; the connection goes back to the pool when the body ended where the bytes did."""
        done = False
        try:
            while not body.done:
                if not conn.buf:
                    if conn.eof:
                        if type(body) is Body:
                            break  # the body ended with the connection
                        raise ClientError("the peer closed the connection mid-body")
                    await conn.more()
                    continue
                try:
                    data, rest = body.feed(conn.take(HIGH_WATER))
                except ValueError as exc:
                    raise ClientError(f"bad body framing: {exc}") from None
                keep = keep and not rest  # bytes after the answer: out of step, not reused
                if data:
                    yield data
            done = body.done
        finally:
            if done:
                self.release(conn, keep)
            else:
                conn.close()
