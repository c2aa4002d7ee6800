"""Hostile RESP in the ambassador's redis mode: an app sending broken or oversized commands
gets the replies it is owed, then one error reply and the connection closed, without the
ambassador buffering what the lengths announce; a shard sending garbage fails only the
commands waiting on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.ambassador_support import (
    RedisServer,
    ambassador,
    exchange_no_eof,
    raw_exchange,
    rss_bytes,
    started,
    through_garbage_shard,
)

pytestmark = pytest.mark.integration

LIMITS = {"AMBASSADOR_REDIS_MAX_BULK": "1MiB", "AMBASSADOR_REDIS_MAX_ARRAY": "100"}


@contextlib.asynccontextmanager
async def redis_mode(**more: str) -> AsyncIterator[int]:
    async with started(RedisServer, 1) as servers:
        env = {
            "AMBASSADOR_MODE": "redis",
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{servers[0].port}",
            **LIMITS,
            **more,
        }
        async with ambassador(env) as amb:
            yield amb.port


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"*1\r\n$99999999999\r\n", b"bulk length 99999999999 is over the limit"),
        (b"*1\r\n$2000000\r\n" + b"x" * 1000, b"bulk length 2000000 is over the limit"),
        (b"*1000\r\n$3\r\nGET\r\n", b"array length 1000 is over the limit"),
        (b"*1\r\n$-5\r\nxx\r\n", b"invalid bulk length"),
        (b"*x\r\n", b"invalid array length"),
        (b"*1\r\n*1\r\n$4\r\nPING\r\n", b"expected '$'"),
        (b"*1\r\n$4\r\nPINGxx", b"not followed by CRLF"),
        (b"G" * 70000, b"inline command longer than"),
        (b"*1\r\n$" + b"9" * 40, b"bulk header longer than"),
    ],
)
async def test_broken_commands_get_one_error_and_close(data: bytes, problem: bytes) -> None:
    """The commands before the broken one are answered in order, then one protocol error
    naming the problem, then the connection is closed by the ambassador."""
    async with redis_mode() as port:
        got = await exchange_no_eof(port, b"PING\r\n*1\r\n$4\r\nPING\r\n" + data)
    assert got.startswith(b"+PONG\r\n+PONG\r\n-ERR Protocol error: "), got[:200]
    assert problem in got, got[:200]
    assert got.count(b"\r\n") == 3


async def test_announced_lengths_are_not_buffered() -> None:
    """Many clients announcing bulks just under the limit and sending them slowly cost at
    most what they really sent, and the ambassador still answers."""
    async with redis_mode() as port:
        import os

        before = rss_bytes(os.getpid())
        writers = []
        for _ in range(50):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"*2\r\n$3\r\nGET\r\n$1000000\r\n" + b"y" * 1000)
            writers.append(w)
        for w in writers:
            await w.drain()
        got = await raw_exchange(port, b"PING\r\n")
        assert got == b"+PONG\r\n"
        assert rss_bytes(os.getpid()) - before < 20 << 20
        for w in writers:
            w.close()


async def test_split_input_byte_by_byte_is_one_command() -> None:
    """A command arriving one byte at a time is answered once, whole."""
    async with redis_mode() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.readexactly(13) == b"+OK\r\n$2\r\nvv\r\n"
        writer.close()


@pytest.mark.parametrize(
    "answer", [b"?what\r\n", b"$99999999999\r\n", b"*1\r\n" * 40, b"+OK\r\n+OK\r\n"]
)
async def test_a_shard_sending_garbage_fails_its_commands_with_an_error(answer: bytes) -> None:
    """A shard answering with broken or unrequested RESP gets its connection dropped; the
    client gets an error reply naming the shard and keeps its connection."""
    env = {"AMBASSADOR_MODE": "redis", **LIMITS}
    line, probe = await through_garbage_shard(answer, env, b"GET k\r\n", b"PING\r\n")
    if answer == b"+OK\r\n+OK\r\n":
        assert line == b"+OK\r\n"  # the first is an answer; the second is not
    else:
        assert line.startswith(b"-ERR ambassador: shard 127.0.0.1:"), line
    assert probe == b"+PONG\r\n"
