"""What the proxy writes: request heads forwarded to members (hop-by-hop headers out,
forwarding headers in), response heads forwarded to clients, and its own error answers. Heads
are parsed and framed by the runtime's one HTTP/1.1 layer (sidecars.runtime.http)."""

from __future__ import annotations

from sidecars.runtime.http.head import Head, HttpError, framing_line, parse_request, parse_response

__all__ = ["Head", "HttpError", "framing_line", "parse_request", "parse_response"]

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


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
    if head.expect_continue:  # the member decides whether the body is wanted
        extra += b"expect: 100-continue\r\n"
    if head.upgrade:
        extra += b"connection: upgrade\r\nupgrade: %s\r\n" % head.upgrade
    return b"%s %s HTTP/1.1\r\n%sx-forwarded-for: %s\r\n%svia: %s\r\n%s\r\n" % (
        head.first[0],
        head.first[1],
        head.block,
        b", ".join(xff),
        extra,
        b", ".join(via),
        framing_line(head),
    )


def forward_response(head: Head, body_framing: bytes, close: bool, http10: bool = False) -> bytes:
    """The response head sent to the client; an HTTP/1.0 client that asked to keep the
    connection is told it is kept (else it waits for the close)."""
    status, reason = head.first
    return b"HTTP/1.1 %s %s\r\n%s%s%s\r\n" % (
        status,
        reason,
        head.block,
        body_framing,
        _connection(close, http10),
    )


def switch_response(head: Head) -> bytes:
    """A member's 101 answer, sent on to the client: the connection becomes a tunnel."""
    return b"HTTP/1.1 101 %s\r\n%supgrade: %s\r\nconnection: upgrade\r\n\r\n" % (
        head.first[1],
        head.block,
        head.upgrade or head.get(b"upgrade") or b"",
    )


def _connection(close: bool, http10: bool) -> bytes:
    if close:
        return b"connection: close\r\n"
    return b"connection: keep-alive\r\n" if http10 else b""


def error_response(status: int, message: str, close: bool = True, http10: bool = False) -> bytes:
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
        _connection(close, http10),
        body,
    )
