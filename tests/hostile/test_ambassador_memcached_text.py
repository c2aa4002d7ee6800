"""Hostile memcached text in the ambassador's memcached mode: an app sending broken or
oversized commands gets the answers it is owed, then one CLIENT_ERROR naming the problem and
the connection closed, without the ambassador buffering what a data block size announces; a
shard sending garbage fails only the commands waiting on it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator

import pytest

from tests.ambassador_support import (
    MemcachedServer,
    ambassador,
    exchange_no_eof,
    mc_exchange,
    rss_bytes,
    started,
    through_garbage_shard,
)

pytestmark = pytest.mark.integration

LIMIT = {"AMBASSADOR_MEMCACHED_MAX_VALUE": "1MiB"}


@contextlib.asynccontextmanager
async def memcached_mode() -> AsyncIterator[int]:
    async with started(MemcachedServer, 1) as servers:
        env = {
            "AMBASSADOR_MODE": "memcached",
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{servers[0].port}",
            **LIMIT,
        }
        async with ambassador(env) as amb:
            yield amb.port


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"get " + b"k" * 251 + b"\r\n", b"key longer than 250 bytes"),
        (b"set " + b"k" * 251 + b" 0 0 1\r\nx\r\n", b"key longer than 250 bytes"),
        (b"get a\x01b\r\n", b"control character in a key"),
        (b"delete a\tb\r\n", b"control character in a key"),
        (b"set k 0 0 2000000\r\n" + b"x" * 1000, b"data block of 2000000 bytes is over the limit"),
        (b"set k 0 0 99999999999999999999999\r\n", b"invalid data block size"),
        (b"set k 0 0 -5\r\nxx\r\n", b"invalid data block size"),
        (b"set k x 0 1\r\nx\r\n", b"invalid flags"),
        (b"set k 0 0 2\r\nxyz\r\n", b"bad data chunk"),
        (b"set k 0 0\r\n", b"bad command line format of set"),
        (b"cas k 0 0 1\r\nx\r\n", b"bad command line format of cas"),
        (b"incr k -1\r\n", b"invalid delta"),
        (b"touch k\r\n", b"bad command line format of touch"),
        (b"get\r\n", b"get without a key"),
        (b"ms k 2000000 T0\r\n" + b"x" * 1000, b"data block of 2000000 bytes is over the limit"),
        (b"ms k x\r\nxx\r\n", b"invalid data block size"),
        (b"ms k\r\n", b"bad command line format of ms"),
        (b"ms k 2 q\r\nxyz\r\n", b"bad data chunk"),
        (b"mg\r\n", b"mg without a key"),
        (b"md " + b"k" * 251 + b" q\r\n", b"key longer than 250 bytes"),
        (b"ma a\x01b\r\n", b"control character in a key"),
        (b"mg !!!! b v\r\n", b"key is not base64"),
        (b"mg " + base64.b64encode(b"k" * 251) + b" b v\r\n", b"decoded key empty or longer"),
        (b"g" * 70000, b"command line longer than 65536 bytes"),
    ],
)
async def test_broken_commands_get_one_client_error_and_close(data: bytes, problem: bytes) -> None:
    """The commands before the broken one are answered in order, then one CLIENT_ERROR
    naming the problem, then the connection is closed by the ambassador."""
    async with memcached_mode() as port:
        got = await exchange_no_eof(port, b"version\r\nset ok 0 0 1\r\n1\r\n" + data)
    assert got.startswith(b"VERSION ambassador\r\nSTORED\r\nCLIENT_ERROR "), got[:200]
    assert problem in got, got[:200]
    assert got.count(b"\r\n") == 3


async def test_announced_data_blocks_are_not_buffered() -> None:
    """Many clients announcing data blocks just under the limit and sending them slowly cost
    at most what they really sent, and the ambassador still answers."""
    async with memcached_mode() as port:
        before = rss_bytes(os.getpid())
        writers = []
        for i in range(50):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"set k%d 0 0 1000000\r\n" % i + b"y" * 1000)
            writers.append(w)
        for w in writers:
            await w.drain()
        assert await mc_exchange(port, b"version\r\n") == b"VERSION ambassador\r\n"
        assert rss_bytes(os.getpid()) - before < 20 << 20
        for w in writers:
            w.close()


async def test_split_input_byte_by_byte_is_one_command() -> None:
    """Commands arriving one byte at a time are answered once each, whole."""
    async with memcached_mode() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in b"set k 3 0 2\r\nvv\r\nget k\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
        async with asyncio.timeout(10):
            got = await reader.readexactly(30)
        assert got == b"STORED\r\nVALUE k 3 2\r\nvv\r\nEND\r\n"
        writer.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"VALUE k 0 99999999999\r\n",
        b"VALUE k 0 2\r\nxyz\r\nEND\r\n",
        b"VALUE k\r\n",
        b"x" * 70000,
        b"STORED\r\nSTORED\r\n",
        b"VA 99999999999\r\n",
        b"VA 2\r\nxyz\r\n",
    ],
)
async def test_a_shard_sending_garbage_fails_its_commands_with_an_error(answer: bytes) -> None:
    """A shard answering with broken, oversized or unrequested text gets its connection
    dropped; the client gets SERVER_ERROR naming the shard and keeps its connection."""
    env = {"AMBASSADOR_MODE": "memcached", **LIMIT}
    line, probe = await through_garbage_shard(answer, env, b"get k\r\n", b"version\r\n")
    if answer == b"STORED\r\nSTORED\r\n":
        assert line == b"STORED\r\n"  # the first is an answer; the second is not
    else:
        assert line.startswith(b"SERVER_ERROR ambassador: shard 127.0.0.1:"), line
    assert probe == b"VERSION ambassador\r\n"


@pytest.mark.parametrize(
    ("answer", "line", "then"),
    [
        (b"MN\r\n", b"MN\r\n", b"MN\r\n"),  # kept quiet: nothing, then mn's own MN
        (b"VA 1\r\nx\r\nMN\r\n", b"VA 1\r\n", b"x\r\n"),
        (b"HD\r\nHD\r\nMN\r\n", b"SERVER_ERROR ambassador: shard 127.0.0.1:", b"MN\r\n"),
    ],
)
async def test_a_quiet_meta_command_is_answered_by_what_comes_before_its_mn(
    answer: bytes, line: bytes, then: bytes
) -> None:
    """A quiet meta command is sent with an mn after it: nothing or one answer before the
    shard's MN is its reply, the client's own mn answered after it; two answers are broken
    text that fails the shard's commands."""
    env = {"AMBASSADOR_MODE": "memcached", **LIMIT}
    got, more = await through_garbage_shard(answer, env, b"mg k v q\r\nmn\r\n", b"mn\r\n")
    assert got.startswith(line), got
    assert more == then
