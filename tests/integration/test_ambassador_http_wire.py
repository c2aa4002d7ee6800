"""http mode on the wire: pipelining, 100-continue, the retry budget, held pipelined bytes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.ambassador_support import Backend, ambassador, backends, wait_for

pytestmark = pytest.mark.integration


def http_env(bs: list[Backend], **extra: str) -> dict[str, str]:
    env = {"AMBASSADOR_MODE": "http", "AMBASSADOR_UPSTREAMS": ",".join(b.addr for b in bs)}
    env.update({f"AMBASSADOR_{k.upper()}": v for k, v in extra.items()})
    return env


async def read_responses(reader: asyncio.StreamReader, n: int) -> list[tuple[bytes, bytes]]:
    """`n` responses with content-length bodies: (status line, body) each."""
    out = []
    for _ in range(n):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        out.append((lines[0], await reader.readexactly(length)))
    return out


async def first_head(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection and read the head of the first answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(10):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with backends(2) as bs, ambassador(http_env(bs)) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        requests = (
            b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(5))
            + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nping"
        )
        writer.write(requests)  # all at once: the ambassador holds what follows each request
        async with asyncio.timeout(10):
            answers = await read_responses(reader, 5)
            assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 5
            assert {a[1] for a in answers} == {b"b0", b"b1"}  # balanced one by one
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
        writer.close()
        paths = [seen["path"] for b in bs for seen in b.seen]
        assert sorted(paths) == ["/echo", *(f"/p{i}" for i in range(5))]


async def test_expect_100_continue_is_forwarded_for_the_member_to_decide() -> None:
    """The member, not the ambassador, answers 100 Continue: the body follows its answer."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        async with asyncio.timeout(10):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readuntil(b"0\r\n\r\n") == b"5\r\nhello\r\n0\r\n\r\n"
            writer.write(
                b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hi")
            assert await read_responses(reader, 1) == [(b"HTTP/1.1 200 OK", b"b0")]
        writer.close()
        headers = bs[0].seen[-1]["headers"]
        assert headers["X-Forwarded-For"] == "127.0.0.1"
        assert headers["Expect"] == "100-continue"


async def test_a_member_refusing_an_expected_body_is_answered_before_any_upload() -> None:
    """A 5 MB upload with Expect: the member refuses with 413 on the head alone, the client
    gets that 413 and no byte of the body is ever asked for (HAProxy and nginx do the same)."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        head = await first_head(
            amb.port,
            b"POST /limited HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n"
            b"Expect: 100-continue\r\n\r\n",
        )
        assert head.startswith(b"HTTP/1.1 413"), head
        assert bs[0].seen == [{"path": "/limited", "refused": 5000000}]


async def test_retry_budget_bounds_retries_when_every_member_fails() -> None:
    async with backends(3) as bs:
        for b in bs:
            b.fail_with = 503
        env = http_env(bs, health_check="none", eject_failures="100000", retries="2")
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            loop = asyncio.get_running_loop()
            started = loop.time()
            n = 400
            for _ in range(n):
                async with s.get(amb.url + "/") as resp:
                    assert resp.status == 503  # the member's answer, never a hang
            elapsed = loop.time() - started
            cluster = amb.service.running["default"].cluster
            # 100 tokens to start with, then 0.2 per request and 10 per second
            assert cluster.retries <= 100 + 0.2 * n + 10 * elapsed + 1
            assert cluster.retries < 2 * n  # without a budget every request retries twice


async def test_slow_reader_pauses_the_member_and_the_connection_is_reused_after() -> None:
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        listener = amb.service.running["default"].listener
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port, limit=1 << 16)
        writer.transport.pause_reading()  # a client that does not read for now
        writer.write(b"GET /big?n=8000000 HTTP/1.1\r\nHost: a\r\n\r\n")

        def member_paused() -> bool:
            return any(c.ex and c.ex.up and c.ex.up.paused for c in listener.conns)

        await wait_for(member_paused, 10, "member reading paused for the slow client")
        writer.transport.resume_reading()
        async with asyncio.timeout(20):
            ((status, body),) = await read_responses(reader, 1)
            assert status == b"HTTP/1.1 200 OK" and len(body) == 8_000_000
            for _ in range(3):  # the same member connection, back from the pool, still reads
                writer.write(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                assert await read_responses(reader, 1) == [(b"HTTP/1.1 200 OK", b"b0")]
        writer.close()
        assert {s["headers"].get("X-Forwarded-For") for s in bs[0].seen} == {"127.0.0.1"}
        assert sum(len(v) for v in listener.pool.idle_conns.values()) == 1


async def test_answer_before_the_whole_body_closes_and_is_not_reused() -> None:
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        listener = amb.service.running["default"].listener
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        # the member's handler answers without reading the body
        writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
        writer.write(b"z" * 65536)
        async with asyncio.timeout(10):
            assert await read_responses(reader, 1) == [(b"HTTP/1.1 200 OK", b"b0")]
            assert await reader.read() == b""  # then the ambassador ends the connection
        writer.close()
        # the member connection was out of step (body unsent): dropped, never pooled
        assert sum(len(v) for v in listener.pool.idle_conns.values()) == 0


async def test_repeated_heads_are_forwarded_for_each_client_and_method() -> None:
    """Heads are parsed once and kept by their bytes, and plain answers take a fast path: the
    same head from another client address still names that client, a HEAD answered with a kept
    response head gets no body, a client asking to close is told and closed."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        head = b"GET /same HTTP/1.1\r\nHost: a\r\n\r\n"
        conns = [
            await asyncio.open_connection("127.0.0.1", amb.port, local_addr=(ip, 0))
            for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.1")
        ]
        async with asyncio.timeout(10):
            for reader, writer in conns:
                for _ in range(3):
                    writer.write(head)
                    assert await read_responses(reader, 1) == [(b"HTTP/1.1 200 OK", b"b0")]
            reader, writer = conns[0]
            writer.write(b"HEAD /same HTTP/1.1\r\nHost: a\r\n\r\n" + head)
            answer = await reader.readuntil(b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200") and b"content-length: 2" in answer.lower()
            # no body after the HEAD answer: the next bytes are the GET's answer
            assert await read_responses(reader, 1) == [(b"HTTP/1.1 200 OK", b"b0")]
            # two known heads in one read are two requests, not one unknown head
            writer.write(head + head)
            assert await read_responses(reader, 2) == [(b"HTTP/1.1 200 OK", b"b0")] * 2
            # the same answer to a client that asked to close says so, and closes
            reader, writer = conns[1]
            writer.write(b"GET /same HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = await reader.read(-1)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nb0")
            assert b"connection: close" in answer.lower()
        for _, writer in conns:
            writer.close()
        forwarded = [seen["headers"]["X-Forwarded-For"] for seen in bs[0].seen]
        one, two = "127.0.0.1", "127.0.0.2"
        assert forwarded == [one] * 3 + [two] * 3 + [one] * 7 + [two]


async def test_a_head_with_bare_lf_is_refused_at_once() -> None:
    """A head whose lines end in a bare LF would never end in CRLF CRLF: 400 at once, not a
    wait for the header timeout or the client's EOF."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        head = await first_head(amb.port, b"GET / HTTP/1.1\nHost: a\n\n")
        assert head.startswith(b"HTTP/1.1 400") and bs[0].seen == []


async def test_malformed_chunked_body_is_a_400_and_the_member_connection_dropped() -> None:
    """A chunk size that is not hex mid-body: the client gets 400 (the member has not
    answered), and the member's half-sent request is never completed."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        head = await first_head(
            amb.port,
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\nzz\r\n",
        )
        assert head.startswith(b"HTTP/1.1 400"), head
        assert all(seen.get("echoed") is None for seen in bs[0].seen)


async def test_pipelined_requests_before_a_half_close_are_all_answered() -> None:
    """A client that pipelines three requests and half-closes gets three answers, then the
    close."""
    async with backends(1) as bs, ambassador(http_env(bs)) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        writer.write(b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3)))
        writer.write_eof()
        async with asyncio.timeout(10):
            answers = await read_responses(reader, 3)
            assert await reader.read() == b""
        writer.close()
        assert [a[1] for a in answers] == [b"b0"] * 3
        assert [s["path"] for s in bs[0].seen] == ["/p0", "/p1", "/p2"]
