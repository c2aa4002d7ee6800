"""The forwarding fast path's reading of an app answer head: plain answers only."""

from __future__ import annotations

import pytest

from sidecars.adapter.forward import _quick_head

pytestmark = pytest.mark.unit

NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\n"
    b'Content-Length: 16\r\nConnection: keep-alive\r\nETag: "6925-10"\r\nX-Secret: s'
)


def test_a_plain_answer_gives_status_length_and_only_the_passed_headers() -> None:
    assert _quick_head(NGINX) == (
        200,
        True,
        16,
        [("Content-Type", "application/json"), ("ETag", '"6925-10"')],
    )


@pytest.mark.parametrize(
    ("head", "keep"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\ncontent-length:  2 \r\nConnection: close", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive", True),
        (b"HTTP/1.1 302 Found\r\nContent-Length: 2", True),
    ],
)
def test_keep_alive_follows_the_version_and_connection(head: bytes, keep: bool) -> None:
    quick = _quick_head(head)
    assert quick is not None and quick[1:3] == (keep, 2)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain",  # until the app closes
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5",  # ambiguous
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0",
        b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0",
        b"<html>\r\nContent-Length: 2",
    ],
)
def test_anything_unusual_goes_to_the_full_parser(head: bytes) -> None:
    assert _quick_head(head) is None
