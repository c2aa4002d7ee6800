"""A lean HTTP/1.1 client to the app: pooled keep-alive, https, streamed or whole bodies."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

from sidecars.runtime.http.body import Body, Length, response_body
from sidecars.runtime.http.head import HttpError, parse_response

MAX_HEAD = 65536  # the app's status line and headers
HIGH_WATER = 262144  # stop reading from the app while this much is buffered and unread
_HEAD_CACHE = 256  # request heads kept ready to send (by method, path, Accept, encoding)


class AppError(Exception):
    """The app's answer could not be read (connection, framing)."""


class ConnectError(AppError):
    """No connection to the app (refused, unreachable, TLS handshake or verification)."""


class CredentialError(AppError):
    """The auth file could not be read."""


class _Closed(AppError):
    """The connection ended before the first byte of an answer (a pooled one may be stale)."""


class AuthFile:
    """The `Authorization` value sent to the app, read from a file and re-read at most once a
    second, so a rotated secret is picked up; its value is never logged."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._line = b""
        self._at = -1e18

    def read(self) -> bytes:
        """The header line (`Authorization: ...\\r\\n`); CredentialError if unreadable."""
        now = time.monotonic()
        if now - self._at >= 1.0:
            try:
                value = Path(self.path).read_bytes().strip()
            except OSError as exc:
                msg = f"cannot read the auth file {self.path}: {exc.strerror or exc}"
                raise CredentialError(msg) from None
            if not value or b"\n" in value or b"\r" in value:
                raise CredentialError(f"the auth file {self.path} must hold one non-empty line")
            self._line, self._at = b"Authorization: " + value + b"\r\n", now
        return self._line


class AppConn(asyncio.Protocol):
    """One connection to the app; the reader side is a byte buffer and a wake-up future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.settled = True  # False while an answer is being read from it
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.listener: Callable[[], None] | None = None  # told of every new byte and the end

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
    """The app's answer. Small answers come whole (`whole`, the connection already back in
    the pool); others stream from `chunks()`. Always `aclose()` it (a no-op when read)."""

    __slots__ = ("status", "headers", "length", "whole", "_body", "_conn")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        length: int | None,
        whole: bytes | None,
        body: AsyncGenerator[bytes, None] | None = None,
        conn: AppConn | None = None,
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

    async def aclose(self) -> None:
        if self._body is not None:
            await self._body.aclose()  # runs its cleanup only if it was started
        if self._conn is not None and not self._conn.settled:
            self._conn.close()  # a body left unread: the connection cannot be reused


class AppClient:
    """GET/HEAD to one origin; keeps up to `keep` idle connections for reuse."""

    def __init__(
        self, url: str, keep: int = 64, ca_file: str = "", auth: AuthFile | None = None
    ) -> None:
        """ssl.SSLError or OSError if `ca_file` cannot be loaded (https only)."""
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.authority = parts.netloc.rpartition("@")[2]
        self.keep, self.auth = keep, auth
        self._idle: list[AppConn] = []
        self._heads: dict[tuple[str, str, str, bool], bytes] = {}
        self._ssl: ssl.SSLContext | None = None
        if self.https:
            self._ssl = ssl.create_default_context(cafile=ca_file or None)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _head(self, method: str, path: str, accept: str, compressed: bool) -> bytes:
        key = (method, path, accept, compressed)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= _HEAD_CACHE:
                self._heads.clear()  # Accept comes from callers: keep the cache bounded
            encoding = "gzip, deflate" if compressed else "identity"
            head = self._heads[key] = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.authority}\r\nAccept: {accept}\r\n"
                f"Accept-Encoding: {encoding}\r\nUser-Agent: sidecars-adapter\r\n"
            ).encode("latin-1")
        return head

    async def request(
        self, method: str, path: str, accept: str, compressed: bool = False
    ) -> Answer:
        """Send the request; on a pooled connection found closed, retry once on a fresh one.
        `compressed` asks for gzip/deflate (the caller decodes Content-Encoding)."""
        head = self._full_head(method, path, accept, compressed)
        while self._idle:
            conn = self._idle.pop()
            if conn.eof:
                conn.close()
                continue
            self._send(conn, head)
            try:
                return await self._answer(conn, method)
            except _Closed:
                conn.close()  # closed by the app while idle: GET and HEAD are safe to repeat
            except BaseException:
                conn.close()
                raise
        conn = await self._connect()
        self._send(conn, head)
        try:
            return await self._answer(conn, method)
        except BaseException:
            conn.close()
            raise

    def send_pooled(self, method: str, path: str, accept: str) -> AppConn | None:
        """Send the request on an idle pooled connection, without waiting; None when there is
        none. Read the answer from the connection's buffer or with `resume`."""
        while self._idle:
            conn = self._idle.pop()
            if conn.eof:
                conn.close()
                continue
            self._send(conn, self._full_head(method, path, accept, False))
            return conn
        return None

    async def resume(self, conn: AppConn, method: str, path: str, accept: str) -> Answer:
        """The answer to what `send_pooled` sent (retried on a fresh connection if the pooled
        one turns out closed)."""
        try:
            return await self._answer(conn, method)
        except _Closed:
            conn.close()
            return await self.request(method, path, accept)
        except BaseException:
            conn.close()
            raise

    def _full_head(self, method: str, path: str, accept: str, compressed: bool) -> bytes:
        head = self._head(method, path, accept, compressed)
        return head + self.auth.read() + b"\r\n" if self.auth is not None else head + b"\r\n"

    @staticmethod
    def _send(conn: AppConn, head: bytes) -> None:
        assert conn.transport is not None
        conn.settled = False
        conn.transport.write(head)

    async def _connect(self) -> AppConn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: AppConn(loop), self.host, self.port, ssl=self._ssl
            )
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS with {self.authority} failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ConnectError(f"{self.authority}: {exc.strerror or exc}") from None
        return conn

    async def _answer(self, conn: AppConn, method: str) -> Answer:
        buf = conn.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEAD:
                raise AppError("the app's answer head is too large")
            if conn.eof:
                raise _Closed("the app closed the connection before answering")
            await conn.more()
        if end > MAX_HEAD:
            raise AppError("the app's answer head is too large")
        try:
            head = parse_response(bytes(buf[:end]))
        except HttpError as exc:
            raise AppError(f"bad answer from the app: {exc.message}") from None
        del buf[: end + 4]
        status, keep, headers = head.status, not head.close, head.fields()
        body = response_body(head, method.encode(), decode=True)
        if body.done:
            self.release(conn, keep)
            return Answer(status, headers, head.length, b"")
        if type(body) is Length and len(buf) >= body.left:  # the whole answer in one read
            whole = conn.take(body.left)
            self.release(conn, keep)
            return Answer(status, headers, head.length, whole)
        return Answer(status, headers, head.length, None, self._stream(conn, body, keep), conn)

    def release(self, conn: AppConn, keep: bool) -> None:
        """Back to the pool (when `keep` and nothing is left unread), else closed."""
        conn.settled = True
        if keep and not conn.eof and not conn.buf and len(self._idle) < self.keep:
            self._idle.append(conn)
        else:
            conn.close()

    async def _stream(self, conn: AppConn, body: Body, keep: bool) -> AsyncGenerator[bytes, None]:
        """The body's bytes (chunked framing taken off) as they come, at most HIGH_WATER at a
        time; the connection goes back to the pool when the body ended where the bytes did."""
        done = False
        try:
            while not body.done:
                if not conn.buf:
                    if conn.eof:
                        if type(body) is Body:
                            break  # the body ended with the connection
                        raise AppError("the app closed the connection mid-body")
                    await conn.more()
                    continue
                try:
                    data, rest = body.feed(conn.take(HIGH_WATER))
                except ValueError as exc:
                    raise AppError(f"bad body framing from the app: {exc}") from None
                keep = keep and not rest  # bytes after the answer: out of step, not reused
                if data:
                    yield data
            done = body.done
        finally:
            if done:
                self.release(conn, keep)
            else:
                conn.close()
