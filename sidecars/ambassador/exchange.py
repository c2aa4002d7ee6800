"""One proxied http exchange: the client connection, the request in flight, and helpers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sidecars.ambassador import httpwire as wire
from sidecars.ambassador.config import Config
from sidecars.ambassador.pool import UpstreamConn

LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024
CHUNK_DISCARD = 16 * 1024


class ClientGone(Exception):
    """The client closed or reset its connection mid-exchange."""


class ClientConn:
    """A client connection as the listener tracks it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.in_request = False
        self.linger = False  # we answered an error: let the client read it before closing

    def abort(self) -> None:
        self.writer.transport.abort()

    def busy(self) -> bool:
        return self.in_request

    def watch_idle(self) -> bool:
        return not self.in_request  # a request in flight has its own timeouts


@dataclass(slots=True)
class Exchange:
    """One client request being proxied."""

    head: wire.Head
    out_head: bytes
    key: bytes
    has_body: bool
    retriable: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    has_host: bool = True
    error: tuple[int, str] = (503, "no member available")
    last: bool = False


def new_exchange(
    settings: Config,
    head: wire.Head,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ip: str,
    has_body: bool,
) -> Exchange:
    key = ip.encode()
    if settings.policy == "hash" and settings.hash_header:
        wanted = settings.hash_header.lower().encode()
        key = next((v for n, v in head.headers if n == wanted), key)
    return Exchange(
        head=head,
        out_head=wire.forward_request(head, ip),
        key=key,
        has_body=has_body,
        retriable=head.first[0] in wire.IDEMPOTENT and not has_body,
        has_host=any(n == b"host" for n, _ in head.headers),
        reader=reader,
        writer=writer,
    )


async def lingering_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and discard what the client still sends for a moment: closing with unread
    input would reset the connection and could destroy the error answer in flight."""
    try:
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_SECONDS):
            discarded = 0
            while discarded < LINGER_BYTES:
                data = await reader.read(CHUNK_DISCARD)
                if not data:
                    break
                discarded += len(data)
    except (TimeoutError, OSError):
        pass


async def read_response(up: UpstreamConn) -> wire.Head:
    """The final response head; interim 1xx answers are skipped (we answered 100 ourselves)."""
    while True:
        raw = await up.reader.readuntil(b"\r\n\r\n")
        resp = wire.parse_response(raw[:-4])
        code = int(resp.first[0])
        if code == 101:
            raise ValueError("member switched protocols, which was not asked for")
        if code >= 200:
            return resp
