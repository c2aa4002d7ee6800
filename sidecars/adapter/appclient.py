"""A lean HTTP/1.1 client for forwarding to the app: pooled keep-alive, streamed bodies."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 65536
CHUNK = 65536


class AppError(Exception):
    """The app's answer could not be read (connection, framing)."""


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    length: int | None
    body: AsyncGenerator[bytes, None]  # read it to the end or aclose() it


class AppClient:
    """GET/HEAD to one origin; keeps up to `keep` idle connections for reuse."""

    def __init__(self, url: str, keep: int = 64) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.authority = parts.netloc
        self.keep = keep
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._ssl = ssl.create_default_context() if self.https else None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def request(self, method: str, path: str, accept: str) -> Answer:
        """Send the request; on a reused connection that turns out dead, retry once afresh."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.authority}\r\nAccept: {accept}\r\n"
            "Accept-Encoding: identity\r\nUser-Agent: sidecars-adapter\r\n\r\n"
        ).encode("latin-1")
        while self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._exchange(reader, writer, head, method)
            except (AppError, OSError, asyncio.IncompleteReadError):
                writer.close()  # closed by the app while idle: try the next one
            except BaseException:
                writer.close()
                raise
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ssl, limit=MAX_HEAD
        )
        try:
            return await self._exchange(reader, writer, head, method)
        except asyncio.IncompleteReadError:
            writer.close()
            raise AppError("the app closed the connection before answering") from None
        except BaseException:
            writer.close()
            raise

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, method: str
    ) -> Answer:
        writer.write(head)
        await writer.drain()
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise AppError("the app's answer head is too large") from None
        status, headers = _parse_head(raw)
        te = headers.get("transfer-encoding", "").lower()
        keep = headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length = _length(headers)
            self._release(reader, writer, keep)
            return Answer(status, headers, length, _empty())
        if te:
            if te != "chunked":
                raise AppError(f"unsupported transfer encoding {te!r}")
            return Answer(status, headers, None, self._chunked(reader, writer, keep))
        length = _length(headers)
        if length is None:  # the body ends when the app closes
            return Answer(status, headers, None, self._until_eof(reader, writer))
        return Answer(status, headers, length, self._sized(reader, writer, length, keep))

    def _release(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool
    ) -> None:
        if keep and len(self._idle) < self.keep and not reader.at_eof():
            self._idle.append((reader, writer))
        else:
            writer.close()

    async def _sized(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int, keep: bool
    ) -> AsyncGenerator[bytes, None]:
        left = length
        try:
            while left:
                data = await reader.read(min(left, CHUNK))
                if not data:
                    raise AppError("the app closed the connection mid-body")
                left -= len(data)
                yield data
        finally:
            if left:
                writer.close()
            else:
                self._release(reader, writer, keep)

    async def _chunked(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: bool
    ) -> AsyncGenerator[bytes, None]:
        done = False
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise AppError("bad chunk size from the app") from None
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    done = True
                    return
                while size:
                    data = await reader.read(min(size, CHUNK))
                    if not data:
                        raise AppError("the app closed the connection mid-body")
                    size -= len(data)
                    yield data
                await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise AppError("the app closed the connection mid-body") from None
        finally:
            if done:
                self._release(reader, writer, keep)
            else:
                writer.close()

    async def _until_eof(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> AsyncGenerator[bytes, None]:
        try:
            while data := await reader.read(CHUNK):
                yield data
        finally:
            writer.close()


async def _empty() -> AsyncGenerator[bytes, None]:
    return
    yield b""  # an async generator that yields nothing


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise AppError(f"not an HTTP answer: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise AppError("malformed header line from the app")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _length(headers: dict[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise AppError(f"bad Content-Length from the app: {raw[:20]!r}")
    return int(raw)
