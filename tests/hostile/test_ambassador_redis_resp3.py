"""Hostile RESP3 in the ambassador's redis mode: a shard's replies of every RESP3 type reach a
RESP3 client exactly as sent, push messages nobody can be routed are dropped, broken or
oversized RESP3 fails only the commands waiting on that shard, and a shard that cannot speak
RESP3 answers its RESP3 clients with an error without being ejected for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from sidecars.ambassador import resp, resp3
from tests.ambassador_support import admin_upstreams, ambassador

pytestmark = pytest.mark.integration

HELLO_REPLY = b"%1\r\n$5\r\nproto\r\n:3\r\n"


@contextlib.asynccontextmanager
async def scripted_shard(hello: bytes, answer: bytes) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A shard answering `hello` to HELLO 3 and `answer` to every other read; yields its port
    and the list of what it was sent."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                seen.append(data)
                writer.write(hello if data == resp.command(b"HELLO", b"3") else answer)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def read_reply(reader: asyncio.StreamReader, parser: resp3.ReplyReader) -> bytes:
    async with asyncio.timeout(10):
        while True:
            got = parser.feed(await reader.read(65536))
            if got:
                assert len(got) == 1, got
                return got[0]


async def resp3_exchange(
    hello: bytes, answer: bytes, **more: str
) -> tuple[bytes, bytes, list[object]]:
    """Through a listener on a scripted shard, a RESP3 client's reply to GET, to PING after
    it, and whether the shard is ejected then."""
    async with scripted_shard(hello, answer) as (port, _):
        env = {
            "AMBASSADOR_MODE": "redis",
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}",
            "AMBASSADOR_HEALTH_CHECK": "none",
            "AMBASSADOR_REQUEST_TIMEOUT": "2s",
            "AMBASSADOR_REDIS_MAX_BULK": "1MiB",
            "AMBASSADOR_REDIS_MAX_ARRAY": "100",
            **more,
        }
        async with ambassador(env) as amb:
            reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
            parser = resp3.ReplyReader(resp.Limits())
            try:
                writer.write(b"HELLO 3\r\n")
                assert (await read_reply(reader, parser)).startswith(b"%7\r\n")
                writer.write(b"GET k\r\n")
                got = await read_reply(reader, parser)
                writer.write(b"PING\r\n")
                probe = await read_reply(reader, parser)
                members = await asyncio.to_thread(admin_upstreams, amb.admin_port)
                return got, probe, [m["ejected"] for m in members]
            finally:
                writer.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"_\r\n",
        b"#f\r\n",
        b",-inf\r\n",
        b"(-3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n~1\r\n#t\r\n",
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n",
    ],
)
async def test_every_resp3_type_reaches_the_client_as_sent(reply: bytes) -> None:
    """A RESP3 reply of each type (an attribute with the reply it annotates) is passed to the
    RESP3 client byte for byte; the connection goes on."""
    got, probe, _ = await resp3_exchange(HELLO_REPLY, reply)
    assert got == reply
    assert probe == b"+PONG\r\n"


async def test_push_messages_from_a_shard_are_dropped_not_taken_for_replies() -> None:
    """Pushes sent before and after a reply (pub/sub, invalidation) are not given to any
    client nor counted as the reply: the client gets its reply, and the next one is right."""
    push = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
    got, probe, _ = await resp3_exchange(HELLO_REPLY, push * 50 + b"+OK\r\n" + push)
    assert got == b"+OK\r\n"
    assert probe == b"+PONG\r\n"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"#maybe\r\n", b"invalid boolean"),
        (b"=2\r\nab\r\n", b"verbatim string without"),
        (b"%51\r\n", b"over the limit of 50"),
        (b"~101\r\n", b"over the limit of 100"),
        (b"!9999999\r\n", b"over the limit"),
        (b"~1\r\n" * 40, b"nested deeper"),
        (b"$?\r\n", b"invalid bulk length"),
        (b"*1\r\n>1\r\n:1\r\n", b"push message inside a reply"),
        (b"+OK\r\n+OK\r\n", b"a reply to no command"),
    ],
)
async def test_broken_resp3_from_a_shard_fails_its_commands(answer: bytes, problem: bytes) -> None:
    """A shard sending broken or oversized RESP3 has its connection dropped: the client gets
    an error naming the shard (and the problem) and keeps its connection."""
    got, probe, _ = await resp3_exchange(HELLO_REPLY, answer)
    if answer == b"+OK\r\n+OK\r\n":
        assert got == b"+OK\r\n"  # the first is an answer; the second is not
    else:
        assert got.startswith(b"-ERR ambassador: shard 127.0.0.1:"), got
        assert problem in got, got
    assert probe == b"+PONG\r\n"


async def test_a_shard_that_cannot_speak_resp3_is_named_and_not_ejected() -> None:
    """A member that refuses HELLO 3 (Redis before 6) fails the RESP3 client's command with an
    error quoting its answer, and is not ejected for it (RESP2 clients keep it)."""
    refusal = b"-ERR unknown command 'HELLO'\r\n"
    settings = {"AMBASSADOR_EJECT_FAILURES": "1"}
    got, probe, ejected = await resp3_exchange(refusal, b"$1\r\nv\r\n", **settings)
    assert got.startswith(b"-ERR ambassador: shard 127.0.0.1:"), got
    assert b"HELLO 3 answered: -ERR unknown command 'HELLO'\r\n" in got, got
    assert probe == b"+PONG\r\n"
    assert ejected == [False]


async def test_resp2_and_resp3_clients_never_share_a_shard_connection() -> None:
    """The shard sees HELLO 3 only on the connection carrying RESP3 clients' commands, first,
    and the RESP2 client's commands on another connection that never said HELLO."""
    async with scripted_shard(HELLO_REPLY, b"+OK\r\n") as (port, seen):
        env = {"AMBASSADOR_MODE": "redis", "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{port}"}
        env["AMBASSADOR_HEALTH_CHECK"] = "none"
        async with ambassador(env) as amb:
            two = await asyncio.open_connection("127.0.0.1", amb.port)
            three = await asyncio.open_connection("127.0.0.1", amb.port)
            three[1].write(b"HELLO 3\r\n")
            parser = resp3.ReplyReader(resp.Limits())
            assert (await read_reply(three[0], parser)).startswith(b"%7")
            for reader, writer in (two, three):
                writer.write(b"SET k v\r\n")
                assert await read_reply(reader, parser) == b"+OK\r\n"
            listener = next(iter(amb.service.running.values())).listener
            shards = getattr(listener, "shards", {}), getattr(listener, "shards3", {})
            assert [len(table) for table in shards] == [1, 1]
            upstreams = await asyncio.to_thread(admin_upstreams, amb.admin_port)
            for _, writer in (two, three):
                writer.close()
    assert seen.count(resp.command(b"HELLO", b"3")) == 1
    assert len(upstreams) == 1
