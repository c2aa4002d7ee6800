"""Unit tests: the one HTTP/1.1 layer refuses every smuggling shape and reads the rest right."""

from __future__ import annotations

import pytest

from sidecars.runtime.http.body import Chunked
from sidecars.runtime.http.head import (
    HttpError,
    bare_lf,
    framing_line,
    head_end,
    parse_request,
    parse_response,
)

pytestmark = pytest.mark.unit

H = b"POST / HTTP/1.1\r\nHost: a\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (H + b"Content-Length: 5, 5", 400),  # a list, even of one value
        (H + b"Content-Length: 5\r\nContent-Length: 5", 400),  # repeated, even equal
        (H + b"Content-Length: +5", 400),
        (H + b"Content-Length:  5 x", 400),
        (H + b"Content-Length: 0x5", 400),
        (H + b"Content-Length: 1234567890123456789", 400),  # 19 digits: past int64
        (H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip", 400),  # chunked not last
        (H + b"Transfer-Encoding: chunked, identity", 400),
        (H + b"Transfer-Encoding: gzip, chunked", 501),  # well-formed, not supported
        (H + b"Transfer-Encoding : chunked", 400),  # space before the colon
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),  # TE in HTTP/1.0
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),
        (b"GET / HTTP/1.1\r\nHost: a\rX: b", 400),  # bare CR
        (b"GET / HTTP/1.1\r\nHost: a\nX: b", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00", 400),
        (b"GET /\x00 HTTP/1.1\r\nHost: a", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded", 400),
        (b"GET foo HTTP/1.1\r\nHost: a", 400),  # not a target form
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a", 501),
        (b"GET / HTTP/1.1 \r\nHost: a", 400),
        (b"GET http://b/ HTTP/1.1\r\nHost: a", 400),  # Host and authority disagree
        (b"GET / HTTP/1.1\r\nHost: a" + b"\r\nX: 1" * 100, 431),  # 101 header lines
        (b"HTTP/1.1 200 OK" + b"\r\nX: 1" * 101, 431),  # responses too
    ],
)
def test_smuggling_shapes_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as err:
        (parse_response if raw.startswith(b"HTTP/") else parse_request)(raw)
    assert err.value.status == status


def test_100_header_lines_are_read() -> None:
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a" + b"\r\nX: 1" * 99).block.count(b"\n") == 100


def test_length_of_18_digits_is_read() -> None:
    assert parse_request(H + b"Content-Length: 000000000000000007").length == 7


def test_absolute_form_becomes_origin_form_with_its_authority_as_host() -> None:
    head = parse_request(b"GET http://api:81?q=1 HTTP/1.1\r\nHost: API:81\r\nX-A: 1")
    assert head.first == (b"GET", b"/?q=1")
    assert head.get(b"host") == b"api:81"
    assert head.block == b"host: api:81\r\nX-A: 1\r\n"


def test_http10_absolute_form_without_host() -> None:
    head = parse_request(b"GET http://api/x HTTP/1.0")
    assert head.first[1] == b"/x" and head.get(b"host") == b"api"


def test_upgrade_is_read_only_when_connection_lists_it() -> None:
    asked = parse_request(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket"
    )
    assert asked.upgrade == b"websocket" and b"pgrade" not in asked.block
    assert not parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket").upgrade


def test_find_reads_any_header() -> None:
    head = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Tenant:  t1 \r\nAccept: */*")
    assert head.find("x-tenant") == b"t1" and head.find("Host") == b"a"
    assert head.find("missing") is None


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/2 200 OK",
        b"HTTP/1.1 099 X",
        b"HTTP/1.1 200 O\rK",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
    ],
)
def test_malformed_responses_are_errors(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_response(raw)


def test_response_without_reason() -> None:
    head = parse_response(b"HTTP/1.1 204\r\nX: 1")
    assert head.status == 204 and head.first[1] == b""


@pytest.mark.parametrize(
    "body",
    [
        b"-1\r\n",
        b"+1\r\nx\r\n",
        b" 1\r\nx\r\n",
        b"0x1\r\nx\r\n",
        b"1;a=\rb\r\nx\r\n",  # CR in a chunk extension
        b"1;a=\x00\r\nx\r\n",
        b"1\nx\r\n",  # bare LF ending the size line
        b"1\r\nxx\r\n",  # more data than the size
        b"1000000000000000\r\n",  # 16 hex digits
        b"0\r\nBad Trailer: x\r\n\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
    ],
)
def test_bad_chunked_framing_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        Chunked().feed(body)


def test_trailers_are_bounded() -> None:
    body = Chunked()
    body.feed(b"0\r\n")
    with pytest.raises(ValueError, match="trailers too large"):
        for _ in range(1000):
            body.feed(b"X-Pad: " + b"a" * 100 + b"\r\n")


def test_chunk_extension_with_tab_and_bws_is_read() -> None:
    body = Chunked(decode=True)
    assert body.feed(b"3 ;name=\tv\r\nabc\r\n0\r\nX: t\r\n\r\n") == (b"abc", b"")
    assert body.done


def test_host_named_in_connection_is_still_forwarded() -> None:
    """Connection may not make Host hop-by-hop: the member would get a request without it."""
    head = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host, X-Drop\r\nX-Drop: 1")
    assert head.block == b"Host: a\r\n"


def test_a_method_llhttp_does_not_know_is_refused_with_or_without_header_lines() -> None:
    """One verdict whatever follows the request line (it used to depend on header lines)."""
    for raw in (b"POTS / HTTP/1.0", b"POTS / HTTP/1.0\r\nAccept: */*"):
        with pytest.raises(HttpError):
            parse_request(raw)


def test_head_end_finds_the_blank_line_in_any_buffer() -> None:
    """head_end gives where CRLF CRLF begins (in bytes or a bytearray, from an offset), -1
    while the head is not whole; bare_lf tells a partial head that could never end."""
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"
    end = head_end(data)
    assert data[:end] == b"GET / HTTP/1.1\r\nHost: a" and data[end + 4 :] == b"rest"
    assert head_end(bytearray(data)) == end
    assert head_end(data + data, end + 4) == len(data) + end
    assert head_end(b"GET / HTTP/1.1\r\nHost: a\r\n") == -1
    assert bare_lf(b"GET / HTTP/1.1\nHost") and not bare_lf(b"GET / HTTP/1.1\r\nHost")


def test_framing_line_is_chunked_a_length_or_nothing() -> None:
    """The framing line a forwarded message keeps: chunked, its length, or none."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
    assert framing_line(parse_response(chunked)) == b"transfer-encoding: chunked\r\n"
    length = b"HTTP/1.1 200 OK\r\nContent-Length: 7"
    assert framing_line(parse_response(length)) == b"content-length: 7\r\n"
    assert framing_line(parse_response(b"HTTP/1.1 200 OK")) == b""
