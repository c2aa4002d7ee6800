"""HTTP/1.1 wire format: strict head parsing, forwarded heads, and streamed bodies."""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(rb"[\x21-\x7e]+")
REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) (HTTP/1\.[01])")
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


class HttpError(Exception):
    """A request the ambassador answers itself (400, 431, 501...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(slots=True)
class Head:
    """A parsed request or response head. For a request `first` is (method, target); for a
    response it is (status, reason). `block` is the header lines to forward as they came (each
    ending in CRLF), hop-by-hop ones and those re-emitted by the ambassador taken out; `headers`
    holds only the headers the ambassador reads, as (lowercase name, value)."""

    first: tuple[bytes, bytes]
    version: bytes
    headers: list[tuple[bytes, bytes]]
    block: bytes = b""
    length: int | None = None
    chunked: bool = False
    close: bool = False  # the sender asked to close after this message
    expect_continue: bool = False

    def get(self, name: bytes) -> bytes | None:
        """The first value of a header the ambassador reads (lowercase name)."""
        for n, v in self.headers:
            if n == name:
                return v
        return None


_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"[^\x00-\x08\x0a-\x1f\x7f]*"  # no control characters but tab
# Every header line well-formed, checked in one pass: a token, a colon, a clean value.
HEADER_BLOCK = re.compile(rb"(?:" + _NAME + rb":" + _VALUE + rb"\r\n)*")
HEADER_LINE = re.compile(rb"(" + _NAME + rb"):(" + _VALUE + rb")\r\n")
_HOP = (
    rb"connection|keep-alive|proxy-connection|proxy-authenticate|proxy-authorization|te|trailer"
    rb"|transfer-encoding|upgrade|content-length"  # content-length: re-emitted from the framing
)
_REBUILT = rb"|x-forwarded-for|via|expect"  # request headers the ambassador writes itself


def _lines(names: bytes, read: bool = True) -> re.Pattern[bytes]:
    group = rb"(" + names + rb")" if read else rb"(?:" + names + rb")"
    return re.compile(rb"^" + group + rb":(" + _VALUE + rb")\r\n", re.M | re.I)


RESPONSE_READ = _lines(_HOP)
REQUEST_READ = _lines(_HOP + _REBUILT + rb"|host|x-forwarded-proto|x-forwarded-host")
REQUEST_DROP = _lines(_HOP + _REBUILT, read=False)
_KEPT = frozenset({b"host", b"x-forwarded-proto", b"x-forwarded-host"})  # read, yet forwarded


def _bad_block(block: bytes) -> HttpError:
    """The error for a header block that failed the one-pass check."""
    for line in block.split(b"\r\n")[:-1]:  # find the culprit for a precise answer
        if not HEADER_LINE.fullmatch(line + b"\r\n"):
            name, colon, _ = line.partition(b":")
            if colon and TOKEN.fullmatch(name):
                return HttpError(400, "control character in a header value")
            break
    return HttpError(400, "malformed header line")


def _parse_block(
    block: bytes, head: Head, read: re.Pattern[bytes], drop: re.Pattern[bytes]
) -> None:
    """Check the header lines (each ending in CRLF), read the ones the ambassador needs and keep
    the rest, as they came, for forwarding."""
    if HEADER_BLOCK.fullmatch(block) is None:
        raise _bad_block(block)
    found = read.findall(block)
    if not found:
        head.block = block
        return
    head.headers = headers = [(n.lower(), v.strip(b" \t")) for n, v in found]
    named = _framing(head)
    if drop is not REQUEST_DROP or any(n not in _KEPT for n, _ in headers):
        block = drop.sub(b"", block)
    if named:  # headers listed in Connection are hop-by-hop too
        block = b"".join(
            line + b"\r\n"
            for line in block.split(b"\r\n")[:-1]
            if line.partition(b":")[0].lower() not in named
        )
    head.block = block


def _framing(head: Head) -> set[bytes]:
    """Framing and connection handling from the headers read; returns the extra header names
    that Connection declares hop-by-hop."""
    named: set[bytes] = set()
    lengths: set[bytes] = set()
    te = b""
    for lname, value in head.headers:
        if lname == b"content-length":
            if b"," in value:
                lengths.update(v.strip() for v in value.split(b","))
            else:
                lengths.add(value)
        elif lname == b"transfer-encoding":
            te = (te + b"," + value) if te else value
        elif lname == b"connection":
            low = value.lower()
            if low == b"keep-alive":
                head.close = head.close and head.version != b"HTTP/1.0"
                continue
            tokens = {t.strip() for t in low.split(b",")}
            head.close |= b"close" in tokens
            if b"keep-alive" in tokens and head.version == b"HTTP/1.0":
                head.close = False
            named |= tokens - {b"close", b"keep-alive", b""}
        elif lname == b"expect" and value.lower() == b"100-continue":
            head.expect_continue = True
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
    return named


def parse_request(raw: bytes) -> Head:
    """Parse a request head (without its final blank line)."""
    first, _, block = raw.partition(b"\r\n")
    m = REQUEST_LINE.fullmatch(first)
    if m is None:
        parts = first.split(b" ")
        if len(parts) == 3 and TOKEN.fullmatch(parts[0]) and TARGET.fullmatch(parts[1]):
            raise HttpError(505 if parts[2].startswith(b"HTTP/") else 400, "unsupported version")
        raise HttpError(400, "malformed request line")
    method, target, version = m.groups()
    head = Head((method, target), version, [], close=version == b"HTTP/1.0")
    if block:
        _parse_block(block + b"\r\n", head, REQUEST_READ, REQUEST_DROP)
    if head.version == b"HTTP/1.1" and head.get(b"host") is None:
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
            _parse_block(block + b"\r\n", head, RESPONSE_READ, RESPONSE_READ)
    except HttpError as exc:
        raise ValueError(exc.message) from None
    return head


def header_value(head: Head, name: str) -> bytes | None:
    """Any request header's first value (for hashing by header), read from the block."""
    found = head.get(name.lower().encode())
    if found is not None:
        return found
    m = re.search(rb"^" + re.escape(name.encode()) + rb":(.*)\r\n", head.block, re.M | re.I)
    return m.group(1).strip(b" \t") if m else None


def framing(head: Head) -> bytes:
    if head.chunked:
        return b"transfer-encoding: chunked\r\n"
    if head.length is not None:
        return b"content-length: %d\r\n" % head.length
    return b""


def forward_request(head: Head, client_ip: str, proto: bytes = b"http") -> bytes:
    """The request head sent to a member: hop-by-hop headers out, forwarding headers in."""
    xff, via, extra = [], [], b""
    host, forwarded = b"", set()
    for name, value in head.headers:
        if name == b"x-forwarded-for":
            xff.append(value)
        elif name == b"via":
            via.append(value)
        elif name == b"host":
            host = host or value
        elif name in (b"x-forwarded-proto", b"x-forwarded-host"):
            forwarded.add(name)
    xff.append(client_ip.encode())
    via.append(b"1.1 ambassador")
    if b"x-forwarded-proto" not in forwarded:
        extra = b"x-forwarded-proto: %s\r\n" % proto
    if host and b"x-forwarded-host" not in forwarded:
        extra += b"x-forwarded-host: %s\r\n" % host
    return b"%s %s HTTP/1.1\r\n%sx-forwarded-for: %s\r\n%svia: %s\r\n%s\r\n" % (
        head.first[0],
        head.first[1],
        head.block,
        b", ".join(xff),
        extra,
        b", ".join(via),
        framing(head),
    )


def forward_response(head: Head, body_framing: bytes, close: bool) -> bytes:
    status, reason = head.first
    return b"HTTP/1.1 %s %s\r\n%s%s%s\r\n" % (
        status,
        reason,
        head.block,
        body_framing,
        b"connection: close\r\n" if close else b"",
    )


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
