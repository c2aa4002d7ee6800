"""The adapter's requests to the app: GET/HEAD heads built once and kept, an optional
`Authorization` from a file, over the runtime's HTTP client (pooled keep-alive, https)."""

from __future__ import annotations

import ssl
import time

from sidecars.runtime.documents import read_bounded
from sidecars.runtime.http.client import MAX_HEAD, Answer, Client, ClientError, Conn, ConnectError
from sidecars.runtime.urls import parse_http_url

__all__ = [
    "MAX_HEAD",
    "AppClient",
    "AppConn",
    "AppError",
    "AuthFile",
    "ConnectError",
    "CredentialError",
]

AppError = ClientError  # the app's answer could not be read (connection, framing, size)
AppConn = Conn
_HEAD_CACHE = 256  # request heads kept ready to send (by method, path, Accept, encoding)


class CredentialError(AppError):
    """The auth file could not be read."""


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
            try:  # bounded, and a FIFO swapped in must not block the loop
                value = read_bounded(self.path).strip()
            except ValueError as exc:
                why = str(exc).removeprefix("cannot read: ")
                raise CredentialError(f"cannot read the auth file {self.path}: {why}") from None
            if not value or b"\n" in value or b"\r" in value:
                raise CredentialError(f"the auth file {self.path} must hold one non-empty line")
            self._line, self._at = b"Authorization: " + value + b"\r\n", now
        return self._line


class AppClient(Client):
    """GET/HEAD to the app's origin; keeps up to `keep` idle connections for reuse."""

    def __init__(
        self, url: str, keep: int = 64, ca_file: str = "", auth: AuthFile | None = None
    ) -> None:
        """ssl.SSLError or OSError if `ca_file` cannot be loaded (https only)."""
        parts = parse_http_url(url)
        https = parts.scheme == "https"
        context = ssl.create_default_context(cafile=ca_file or None) if https else None
        super().__init__(
            parts.host,
            parts.port,
            ssl_context=context,
            server_hostname=parts.host,
            keep=keep,
            authority=parts.authority,
        )
        self.https, self.auth = https, auth
        self._heads: dict[tuple[str, str, str, bool], bytes] = {}

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

    def _wire(self, method: str, path: str, accept: str, compressed: bool = False) -> bytes:
        head = self._head(method, path, accept, compressed)
        return head + self.auth.read() + b"\r\n" if self.auth is not None else head + b"\r\n"

    async def get(self, method: str, path: str, accept: str, compressed: bool = False) -> Answer:
        """GET or HEAD `path`; on a pooled connection found closed, sent again on a fresh one
        (GET and HEAD are safe to repeat). `compressed` asks for gzip/deflate (the caller
        decodes Content-Encoding)."""
        return await self.request(method.encode(), self._wire(method, path, accept, compressed))

    def send_get(self, path: str, accept: str) -> AppConn | None:
        """A GET sent on an idle pooled connection without waiting (see Client.send_pooled)."""
        return self.send_pooled(self._wire("GET", path, accept))

    async def resume_get(self, conn: AppConn, path: str, accept: str) -> Answer:
        return await self.resume(conn, b"GET", self._wire("GET", path, accept))
