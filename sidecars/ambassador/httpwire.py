"""HTTP/1.1 wire format: strict head parsing, forwarded heads, and streamed bodies."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(rb"[\x21-\x7e]+")
BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",  # re-emitted from the parsed framing, never copied
    }
)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CHUNK = 64 * 1024


class HttpError(Exception):
    """A request the ambassador answers itself (400, 431, 501...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(slots=True)
class Head:
    """A parsed request or response head. For a request `first` is (method, target); for a
    response it is (status, reason)."""

    first: tuple[bytes, bytes]
    version: bytes
    headers: list[tuple[bytes, bytes]]  # (lowercase name, value) in order
    length: int | None = None
    chunked: bool = False
    close: bool = False  # the sender asked to close after this message
    expect_continue: bool = False


# One well-formed header line: a token, a colon, a value without control characters (tab is
# allowed). Lines that do not match in full are found by counting and refused.
HEADER_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\x00-\x08\x0a-\x1f\x7f]*)\r\n", re.M)
_SPECIAL = frozenset({b"content-length", b"transfer-encoding", b"connection", b"expect"})


def _parse_headers(block: bytes, head: Head) -> None:
    """Parse the header lines (`block`, each line ending in CRLF) into `head`."""
    pairs = HEADER_LINE.findall(block)
    if len(pairs) != block.count(b"\n"):
        for line in block.split(b"\r\n")[:-1]:  # find the culprit for a precise answer
            if not HEADER_LINE.fullmatch(line + b"\r\n"):
                name, colon, _ = line.partition(b":")
                if colon and TOKEN.fullmatch(name):
                    raise HttpError(400, "control character in a header value")
        raise HttpError(400, "malformed header line")
    headers = head.headers
    special: list[tuple[bytes, bytes]] = []
    for name, value in pairs:
        lname = name.lower()
        value = value.strip(b" \t")
        if lname in _SPECIAL:
            special.append((lname, value))
            if lname == b"expect" and value.lower() == b"100-continue":
                continue
        headers.append((lname, value))
    if special:
        _framing(special, head)


def _framing(special: list[tuple[bytes, bytes]], head: Head) -> None:
    drop: set[bytes] = set()
    lengths: set[bytes] = set()
    te = b""
    for lname, value in special:
        if lname == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lname == b"transfer-encoding":
            te = (te + b"," + value) if te else value
        elif lname == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            drop |= tokens
            head.close |= b"close" in tokens
            if b"keep-alive" in tokens and head.version == b"HTTP/1.0":
                head.close = False
        elif lname == b"expect" and value.lower() == b"100-continue":
            head.expect_continue = True
    if drop:
        head.headers = [(n, v) for n, v in head.headers if n not in drop]
    if te:
        if te.strip().lower() != b"chunked":
            raise HttpError(501, "only chunked transfer-encoding is supported")
        if lengths:
            raise HttpError(400, "both content-length and transfer-encoding")
        head.chunked = True
    elif lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise HttpError(400, "invalid content-length")
        head.length = int(next(iter(lengths)))


def parse_request(raw: bytes) -> Head:
    """Parse a request head (without its final blank line)."""
    first, _, block = raw.partition(b"\r\n")
    parts = first.split(b" ")
    if len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not TARGET.fullmatch(parts[1]):
        raise HttpError(400, "malformed request line")
    if parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505 if parts[2].startswith(b"HTTP/") else 400, "unsupported version")
    head = Head((parts[0], parts[1]), parts[2], [], close=parts[2] == b"HTTP/1.0")
    if block:
        _parse_headers(block + b"\r\n", head)
    if head.version == b"HTTP/1.1" and not any(n == b"host" for n, _ in head.headers):
        raise HttpError(400, "missing host header")
    return head


def parse_response(raw: bytes) -> Head:
    """Parse a response head; raises ValueError when a member sends garbage."""
    first, _, block = raw.partition(b"\r\n")
    parts = first.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
        raise ValueError("malformed status line")
    head = Head((parts[1], parts[2] if len(parts) > 2 else b""), parts[0], [])
    head.close = parts[0] == b"HTTP/1.0"
    try:
        if block:
            _parse_headers(block + b"\r\n", head)
    except HttpError as exc:
        raise ValueError(exc.message) from None
    return head


def framing(head: Head) -> list[bytes]:
    if head.chunked:
        return [b"transfer-encoding: chunked\r\n"]
    if head.length is not None:
        return [b"content-length: %d\r\n" % head.length]
    return []


def forward_request(head: Head, client_ip: str, proto: bytes = b"http") -> bytes:
    """The request head sent to a member: hop-by-hop headers out, forwarding headers in."""
    method, target = head.first
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    xff: bytes = b""
    seen: set[bytes] = set()
    for name, value in head.headers:
        if name in HOP_BY_HOP:
            continue
        if name == b"x-forwarded-for":
            xff = value if not xff else xff + b", " + value
            continue
        if name == b"via":
            value = value + b", 1.1 ambassador"
        seen.add(name)
        out += [name, b": ", value, b"\r\n"]
    ip = client_ip.encode()
    out += [b"x-forwarded-for: ", xff + b", " + ip if xff else ip, b"\r\n"]
    if b"x-forwarded-proto" not in seen:
        out += [b"x-forwarded-proto: ", proto, b"\r\n"]
    if b"x-forwarded-host" not in seen:
        host = next((v for n, v in head.headers if n == b"host"), b"")
        if host:
            out += [b"x-forwarded-host: ", host, b"\r\n"]
    if b"via" not in seen:
        out.append(b"via: 1.1 ambassador\r\n")
    out += framing(head)
    out.append(b"\r\n")
    return b"".join(out)


def forward_response(head: Head, body_framing: list[bytes], close: bool) -> bytes:
    status, reason = head.first
    out = [b"HTTP/1.1 ", status, b" ", reason, b"\r\n"]
    for name, value in head.headers:
        if name not in HOP_BY_HOP:
            out += [name, b": ", value, b"\r\n"]
    out += body_framing
    if close:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def error_response(status: int, message: str, close: bool = True) -> bytes:
    reasons = {
        400: b"Bad Request",
        408: b"Request Timeout",
        431: b"Request Header Fields Too Large",
        501: b"Not Implemented",
        502: b"Bad Gateway",
        503: b"Service Unavailable",
        504: b"Gateway Timeout",
        505: b"HTTP Version Not Supported",
    }
    body = f"ambassador: {message}\n".encode()
    return b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        reasons.get(status, b"Error"),
        len(body),
        b"connection: close\r\n" if close else b"",
        body,
    )


async def copy_length(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, idle: float
) -> None:
    """Relay exactly `n` body bytes; IncompleteReadError when the sender stops early."""
    while n > 0:
        async with asyncio.timeout(idle):
            data = await reader.read(min(n, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        writer.write(data)
        await writer.drain()


async def copy_chunked(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float, decode: bool = False
) -> None:
    """Relay a chunked body as it is (or de-chunked for an HTTP/1.0 client), trailers included."""
    while True:
        async with asyncio.timeout(idle):
            line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        if (
            not size_text
            or len(size_text) > 16
            or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
        ):
            raise ValueError("malformed chunk size")
        size = int(size_text, 16)
        if not decode:
            writer.write(line)
        if size == 0:
            break
        await copy_length(reader, writer, size, idle)
        async with asyncio.timeout(idle):
            crlf = await reader.readexactly(2)
        if crlf != b"\r\n":
            raise ValueError("malformed chunk end")
        if not decode:
            writer.write(crlf)
    while True:  # trailers, then the final blank line
        async with asyncio.timeout(idle):
            line = await reader.readuntil(b"\r\n")
        if not decode:
            writer.write(line)
        if line == b"\r\n":
            break
    await writer.drain()


async def copy_until_eof(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float
) -> None:
    while True:
        async with asyncio.timeout(idle):
            data = await reader.read(CHUNK)
        if not data:
            return
        writer.write(data)
        await writer.drain()
