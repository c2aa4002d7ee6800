"""Streaming body framing: where a body ends, whatever way its bytes are split."""

from __future__ import annotations

import pytest

from sidecars.runtime.http.body import Body, Chunked, Length

pytestmark = pytest.mark.unit

CHUNKED = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\n"


def feed_split(body: Body, data: bytes, step: int) -> tuple[bytes, bytes]:
    out, rest = b"", b""
    for i in range(0, len(data), step):
        piece = data[i : i + step]
        if body.done:
            rest += piece
            continue
        chunk, extra = body.feed(piece)
        out += chunk
        rest += extra
    return out, rest


@pytest.mark.parametrize("step", [1, 2, 3, 7, 100])
def test_chunked_body_ends_exactly_at_its_last_byte(step: int) -> None:
    out, rest = feed_split(Chunked(), CHUNKED + NEXT, step)
    assert out == CHUNKED and rest == NEXT


@pytest.mark.parametrize("step", [1, 4, 100])
def test_chunked_body_decoded_for_http10(step: int) -> None:
    body = Chunked(decode=True)
    out, rest = feed_split(body, CHUNKED, step)
    assert out == b"hello world" and rest == b"" and body.done


@pytest.mark.parametrize(
    "bad", [b"zz\r\n", b"5\r\nhelloXX", b"5\nhello\r\n", b"1" * 20 + b"\r\n", b"a" * 5000]
)
def test_malformed_chunked_framing_raises(bad: bytes) -> None:
    with pytest.raises(ValueError):
        Chunked().feed(bad)


def test_length_body_splits_what_follows() -> None:
    body = Length(5)
    assert body.feed(b"abc") == (b"abc", b"") and not body.done
    assert body.feed(b"de" + NEXT) == (b"de", NEXT) and body.done
    assert Length(0).done


def test_body_until_close_never_ends() -> None:
    body = Body()
    assert body.feed(b"x" * 10) == (b"x" * 10, b"") and not body.done
