"""The response head parser (a member's answer to the ambassador, the app's to the adapter):
a Head or HttpError. A parsed head has a three-digit status and bounded framing, and the head
the ambassador forwards to its client parses again to the same status and framing."""

from __future__ import annotations

from tests.fuzz import http_parsers as http

from ._common import parsed

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    head = parsed(http.parse_response, http.HEAD_ERRORS, data)
    if head is None:
        return
    assert 100 <= head.status <= 999
    assert not (head.chunked and head.length is not None)
    if head.length is not None:
        assert 0 <= head.length and len(str(head.length)) <= http.MAX_LENGTH_DIGITS, head.length
    head.fields()
    framing = b"content-length: %d\r\n" % head.length if head.length is not None else b""
    wire = http.forward_response(head, framing, head.close)
    assert wire.endswith(b"\r\n\r\n") and wire.count(b"\r\n\r\n") == 1, wire
    if wire.count(b"\r\n") - 2 > http.MAX_FIELDS:
        return  # the lines the proxy adds took it past the count limit: refused, not misread
    again = http.parse_response(wire[:-4])
    assert again.first[0] == head.first[0] and again.length == head.length, wire
