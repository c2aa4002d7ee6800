"""Request and response heads (RFC 9112 sections 3-6): strict parsing and message framing.

The start line is checked by a strict regular expression of ours; the header lines are split by
llhttp (through httptools, the parser of Node.js and uvicorn: several times faster than our own
regular expressions, measured in bench/httpparse.py) in its strict mode: every line must be a
token, a colon and a value free of control characters (tab allowed). Anything else - obs-fold,
a bare CR or LF, NUL, a space before the colon - is refused. On top of it our rules refuse the
framing shapes that two parsers could read two ways: Content-Length with Transfer-Encoding,
more than one or a list of Content-Length, a signed, spaced or over-long length, a transfer
coding other than chunked, Transfer-Encoding in HTTP/1.0, a second Host or one that differs
from an absolute-form target's authority, more than MAX_FIELDS header lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(rb"[\x21-\x7e]+")
REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) (HTTP/1\.[01])")
STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#@]+)([/?][\x21-\x7e]*)?")
MAX_LENGTH_DIGITS = 18  # a Content-Length longer than this is refused (it would pass int64)
MAX_FIELDS = 100  # header lines in a head (HAProxy's default limit is 101 with the first line)


HEAD_END = b"\r\n\r\n"  # the blank line that ends a head


def head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Where the blank line that ends a head begins in `buf` (the head is `buf[:end]`, what
    follows starts at `end + 4`); -1 when the head is not whole yet."""
    return buf.find(HEAD_END, start)


def bare_lf(buf: bytes | bytearray) -> bool:
    """A partial head with an LF not preceded by CR: it would never end in CRLF CRLF."""
    return buf.count(b"\n") != buf.count(b"\r\n")


class HttpError(ValueError):
    """A head that is not well-formed: `status` is the answer a server gives (400, 501...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(slots=True)
class Head:
    """A parsed request or response head. For a request `first` is (method, target); for a
    response it is (status, reason). `block` holds the end-to-end header lines as they came
    (each ending in CRLF): hop-by-hop ones (RFC 9110 section 7.6.1) and the framing are taken
    out. `headers` holds the headers read for framing and forwarding, as (lowercase name,
    value); any other header is found in `block` by `find`."""

    first: tuple[bytes, bytes]
    version: bytes
    headers: list[tuple[bytes, bytes]]
    block: bytes = b""
    length: int | None = None
    chunked: bool = False
    close: bool = False  # the sender asked to close after this message
    expect_continue: bool = False
    upgrade: bytes = b""  # the protocol asked for (Upgrade listed in Connection), else empty
    lines: list[tuple[bytes, bytes]] = field(default_factory=list)  # every header, as it came

    def get(self, name: bytes) -> bytes | None:
        """The first value of a header read for framing and forwarding (lowercase name)."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def find(self, name: str) -> bytes | None:
        """Any header's first value: the ones read (as read), then the others."""
        key = name.lower().encode()
        found = self.get(key)
        if found is not None:
            return found
        for n, v in self.lines:
            if n.lower() == key:
                return v.strip(b" \t")
        return None

    def fields(self) -> dict[str, str]:
        """Every header as {lowercase name: value} (a repeated name: its last value)."""
        found = {n.lower(): v for n, v in self.lines}
        found.update(self.headers)
        return {n.decode("latin-1"): v.strip(b" \t").decode("latin-1") for n, v in found.items()}

    @property
    def status(self) -> int:
        """A response's status code."""
        return int(self.first[0])


_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = rb"[^\x00-\x08\x0a-\x1f\x7f]*"  # no control characters but tab
# Every header line well-formed, checked in one pass: a token, a colon, a clean value.
HEADER_BLOCK = re.compile(rb"(?:" + _NAME + rb":" + _VALUE + rb"\r\n)*")
HEADER_LINE = re.compile(rb"(" + _NAME + rb"):(" + _VALUE + rb")\r\n")


def _lines(names: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"^(?:" + names + rb"):" + _VALUE + rb"\r\n", re.M | re.I)


HOST_LINE = _lines(rb"host")
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


def check_block(block: bytes) -> None:
    """Header lines (each ending in CRLF) all well-formed, else HttpError (trailers too)."""
    if HEADER_BLOCK.fullmatch(block) is None:
        raise _bad_block(block)


class _Fields:
    """llhttp's callbacks: the header lines, as (name, value)."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


_READ_REQUEST = frozenset(
    b"connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer"
    b" transfer-encoding upgrade content-length x-forwarded-for via expect host x-forwarded-proto"
    b" x-forwarded-host".split()
)
_READ_RESPONSE = frozenset(
    b"connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer"
    b" transfer-encoding upgrade content-length".split()
)


def _parse_block(raw: bytes, head: Head, request: bool) -> None:
    """Split the header lines of a whole head (`raw`, with its final blank line) with llhttp,
    read the ones needed for framing and forwarding and keep the others in `head.block`."""
    if raw.count(b"\n") > MAX_FIELDS + 2:
        raise HttpError(431, "too many header fields")
    sink = _Fields()
    parser = HttpRequestParser(sink) if request else HttpResponseParser(sink)
    try:
        parser.feed_data(raw)
    except HttpParserUpgrade:
        pass  # an upgrade (or CONNECT) head: complete, what follows is not HTTP
    except HttpParserError as exc:
        reason = str(exc).strip().rstrip(".") or "malformed head"
        raise HttpError(400 if request else 502, f"malformed head: {reason}") from None
    read = _READ_REQUEST if request else _READ_RESPONSE
    headers: list[tuple[bytes, bytes]] = []
    parts: list[bytes] = []  # the kept lines: name, ": ", value, CRLF, ...
    for name, value in sink.fields:
        low = name.lower()
        if low in read:
            headers.append((low, value.strip(b" \t")))
            if not request or low not in _KEPT:
                continue
        parts += (name, b": ", value, b"\r\n")
    head.headers, head.lines = headers, sink.fields
    named = _framing(head) if headers else None
    if named:  # headers that Connection lists are hop-by-hop too
        parts = [x for i in range(0, len(parts), 4) if parts[i].lower() not in named
                 for x in parts[i : i + 4]]  # fmt: skip
    head.block = b"".join(parts)


def _framing(head: Head) -> set[bytes]:
    """Framing and connection handling from the headers read; returns the extra header names
    that Connection declares hop-by-hop."""
    named: set[bytes] = set()
    lengths: list[bytes] = []
    te = b""
    upgrade = b""
    hosts = 0
    for lname, value in head.headers:
        if lname == b"content-length":
            lengths.append(value)
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
            named |= tokens - {b"close", b"keep-alive", b"host", b""}  # Host stays end to end
        elif lname == b"expect" and value.lower() == b"100-continue":
            head.expect_continue = True
        elif lname == b"upgrade":
            upgrade = value
        elif lname == b"host":
            hosts += 1
    if hosts > 1:
        raise HttpError(400, "more than one host header")
    if upgrade and b"upgrade" in named and head.version == b"HTTP/1.1":
        head.upgrade = upgrade
    if te:
        if head.version == b"HTTP/1.0":
            raise HttpError(400, "transfer-encoding in an HTTP/1.0 message")
        if te.strip().lower() != b"chunked":
            raise HttpError(501, "only chunked transfer-encoding is supported")
        if lengths:
            raise HttpError(400, "both content-length and transfer-encoding")
        head.chunked = True
    elif lengths:
        value = lengths[0]
        if len(lengths) > 1 or not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
            raise HttpError(400, "invalid content-length")
        head.length = int(value)
    return named


def parse_request(raw: bytes) -> Head:
    """Parse a request head (without its final blank line). An absolute-form target
    (`GET http://host/path`) is turned into origin-form with its authority as Host."""
    first = raw.partition(b"\r\n")[0]
    m = REQUEST_LINE.fullmatch(first)
    if m is None:
        parts = first.split(b" ")
        if len(parts) == 3 and TOKEN.fullmatch(parts[0]) and TARGET.fullmatch(parts[1]):
            raise HttpError(505 if parts[2].startswith(b"HTTP/") else 400, "unsupported version")
        raise HttpError(400, "malformed request line")
    method, target, version = m.groups()
    authority = b""
    if target[:1] != b"/":
        if method == b"CONNECT":
            raise HttpError(501, "CONNECT is not supported")
        absolute = ABSOLUTE.fullmatch(target)
        if absolute is not None:
            authority, target = absolute.group(1), absolute.group(2) or b"/"
            if target[:1] == b"?":
                target = b"/" + target
        elif target != b"*" or method != b"OPTIONS":
            raise HttpError(400, "malformed request target")
    head = Head((method, target), version, [], close=version == b"HTTP/1.0")
    _parse_block(raw + HEAD_END, head, True)  # with or without header lines: one verdict
    if authority:  # RFC 9112 section 3.2.2: the target's authority wins over Host...
        host = head.get(b"host")
        if host is not None and host.lower() != authority.lower():  # ...which must agree
            raise HttpError(400, "host header differs from the target's authority")
        head.block = b"host: %s\r\n%s" % (authority, HOST_LINE.sub(b"", head.block))
        head.headers = [(n, v) for n, v in head.headers if n != b"host"]
        head.headers.append((b"host", authority))
    elif head.version == b"HTTP/1.1" and head.get(b"host") is None:
        raise HttpError(400, "missing host header")
    return head


def parse_response(raw: bytes) -> Head:
    """Parse a response head (without its final blank line); HttpError when it is not a
    well-formed HTTP/1.x answer."""
    first = raw.partition(b"\r\n")[0]
    m = STATUS_LINE.fullmatch(first)
    if m is None:
        raise HttpError(502, "malformed status line")
    version, status, reason = m.groups()
    head = Head((status, reason or b""), version, [], close=version == b"HTTP/1.0")
    _parse_block(raw + HEAD_END, head, False)
    return head


def framing_line(head: Head) -> bytes:
    """The framing header line of a message passed on with its own framing: chunked, its
    length, or none (a body framed by the close)."""
    if head.chunked:
        return b"transfer-encoding: chunked\r\n"
    if head.length is not None:
        return b"content-length: %d\r\n" % head.length
    return b""


def no_body(method: bytes, status: int) -> bool:
    """A response that has no body whatever its headers say (RFC 9112 section 6.3)."""
    return method == b"HEAD" or status < 200 or status in (204, 304)
