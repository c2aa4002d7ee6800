"""The request head parser (ambassador, admin server): a Head or HttpError with a 4xx/5xx
status. A parsed head has a Content-Length of bounded digits or chunked framing (not both),
and the head the ambassador forwards parses again to the same request line and framing (no
smuggling through the proxy)."""

from __future__ import annotations

from tests.fuzz import http_parsers as http

from ._common import parsed

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    head = parsed(http.parse_request, http.HEAD_ERRORS, data)
    if head is None:
        return
    assert not (head.chunked and head.length is not None)
    if head.length is not None:
        assert 0 <= head.length and len(str(head.length)) <= http.MAX_LENGTH_DIGITS, head.length
    wire = http.forward_request(head, "127.0.0.1")
    assert wire.endswith(b"\r\n\r\n") and wire.count(b"\r\n\r\n") == 1, wire
    if head.get(b"host") is None:
        # An HTTP/1.0 request without Host goes out as HTTP/1.1 without one (reported);
        # add it so the rest of the check still applies.
        wire = wire.replace(b"\r\n", b"\r\nhost: x\r\n", 1)
    if wire.count(b"\r\n") - 2 > http.MAX_FIELDS:
        return  # the lines the proxy adds took it past the count limit: refused, not misread
    again = http.parse_request(wire[:-4])
    assert again.first == head.first, (again.first, head.first)
    assert (again.chunked, again.length) == (head.chunked, head.length), wire
