"""Unit tests: HTTP/1.1 head parsing, forwarded heads, and DNS last-known-good discovery."""

from __future__ import annotations

import logging

import pytest

from sidecars.ambassador import httpwire as wire
from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.discovery import Discovery
from sidecars.ambassador.members import EjectPolicy
from sidecars.ambassador.spec import parse_source

pytestmark = pytest.mark.unit


def test_request_head_parses() -> None:
    head = wire.parse_request(
        b"POST /a?b=1 HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n"
        b"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nExpect: 100-continue"
    )
    assert head.first == (b"POST", b"/a?b=1") and head.length == 5 and not head.chunked
    assert not head.close and head.expect_continue
    out = wire.forward_request(head, "10.0.0.1").lower()
    assert b"x-secret" not in out  # named by Connection: hop-by-hop, dropped
    assert b"connection" not in out and b"host: api\r\n" in out
    assert b"expect: 100-continue\r\n" in out  # the member decides whether it wants the body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /\r\nHost: a", 400),
        (b"GET  / HTTP/1.1\r\nHost: a", 400),
        (b"GET / HTTP/2.0\r\nHost: a", 505),
        (b"GET / FOO\r\nHost: a", 400),
        (b"GET / HTTP/1.1", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked", 501),
        (b"G\x01T / HTTP/1.1\r\nHost: a", 400),
    ],
)
def test_malformed_requests_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(wire.HttpError) as err:
        wire.parse_request(raw)
    assert err.value.status == status


def test_http10_closes_unless_keep_alive() -> None:
    assert wire.parse_request(b"GET / HTTP/1.0").close
    assert not wire.parse_request(b"GET / HTTP/1.0\r\nConnection: keep-alive").close
    assert wire.parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close").close


def test_forwarded_request_head() -> None:
    head = wire.parse_request(
        b"GET /x HTTP/1.1\r\nHost: app:7000\r\nX-Forwarded-For: 10.1.1.1\r\n"
        b"Upgrade: websocket\r\nTE: trailers\r\nProxy-Authorization: secret\r\n"
        b"Via: 1.1 edge\r\nKeep-Alive: 5\r\nAccept: */*"
    )
    out = wire.forward_request(head, "127.0.0.1").decode()
    lines = out.split("\r\n")
    assert lines[0] == "GET /x HTTP/1.1" and out.endswith("\r\n\r\n")
    assert "x-forwarded-for: 10.1.1.1, 127.0.0.1" in lines
    assert "x-forwarded-proto: http" in lines and "x-forwarded-host: app:7000" in lines
    assert "via: 1.1 edge, 1.1 ambassador" in lines and "Accept: */*" in lines  # names kept as sent
    for gone in ("upgrade", "te:", "proxy-authorization", "keep-alive", "content-length"):
        assert gone not in out.lower()


def test_forwarded_response_reframes() -> None:
    resp = wire.parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\nX-A: 1"
    )
    assert resp.length == 3
    out = wire.forward_response(resp, wire.framing_line(resp), close=True)
    assert out == b"HTTP/1.1 200 OK\r\nX-A: 1\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"


@pytest.mark.parametrize("raw", [b"garbage", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nbad"])
def test_garbage_responses_raise(raw: bytes) -> None:
    with pytest.raises(ValueError):
        wire.parse_response(raw)


def test_error_response_is_complete() -> None:
    out = wire.error_response(431, "too big")
    head, body = out.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b"content-length: %d" % len(body) in head and b"connection: close" in head


async def test_dns_keeps_the_last_good_answer() -> None:
    # A scripted resolver: the system resolver cannot be made to fail on cue for a name that
    # resolved a moment ago (the integration tests cover real success and real NXDOMAIN).
    answers: list[list[str] | OSError] = [
        ["10.0.0.1", "10.0.0.2"],
        OSError("NXDOMAIN"),
        ["10.0.0.3"],
    ]

    async def resolve(name: str, port: int, family: str) -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    events: list[tuple[str, str]] = []
    cluster = Cluster("t", "round_robin", EjectPolicy(), RetryBudget(0.2))
    source = parse_source("dns://db.example:5432")
    disc = Discovery(
        cluster,
        [source],
        dns_interval=1,
        dns_family="any",
        file_interval=1,
        timeout=1,
        log=logging.getLogger("test"),
        count=lambda k, o: events.append((k, o)),
        resolve=resolve,
    )
    await disc.prime()
    assert sorted(cluster.members) == ["10.0.0.1:5432", "10.0.0.2:5432"]
    assert not await disc._resolve_once(source, True)
    assert sorted(cluster.members) == ["10.0.0.1:5432", "10.0.0.2:5432"]
    assert await disc._resolve_once(source, False)
    assert sorted(cluster.members) == ["10.0.0.3:5432"]
    assert events == [("dns", "success"), ("dns", "error"), ("dns", "success")]
