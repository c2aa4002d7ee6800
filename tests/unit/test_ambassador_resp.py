"""RESP2 reading for the redis mode, and twemproxy's ketama placement arithmetic."""

from __future__ import annotations

import bisect
import random

import pytest

from sidecars.ambassador import resp
from sidecars.ambassador.ketama import Continuum, hash_tagged, key_hash, server_name

pytestmark = pytest.mark.unit

STREAM = (
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    b"PING\r\n"
    b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n"
    b"\r\n"
    b"ECHO  x\r\n"
)
COMMANDS = [[b"SET", b"k", b""], [b"PING"], [b"GET", b"a\r\nb"], [b"ECHO", b"x"]]


@pytest.mark.parametrize("step", [1, 2, 3, 7, len(STREAM)])
def test_commands_are_the_same_however_the_stream_is_cut(step: int) -> None:
    """Commands split at any byte come out whole, once, in order; blank lines are skipped."""
    reader = resp.CommandReader(resp.Limits())
    got: list[list[bytes]] = []
    for at in range(0, len(STREAM), step):
        got += [args for args, _ in reader.feed(STREAM[at : at + step])]
    assert got == COMMANDS and not reader.error and not reader.buf


def test_a_command_keeps_its_bytes_for_forwarding() -> None:
    """An array command is forwarded as it came; an inline one has no bytes to forward."""
    reader = resp.CommandReader(resp.Limits())
    out = reader.feed(b"*1\r\n$4\r\nPING\r\nPING\r\n")
    assert out == [([b"PING"], b"*1\r\n$4\r\nPING\r\n"), ([b"PING"], b"")]


@pytest.mark.parametrize("step", [1, 5, 1000])
def test_replies_are_split_whole_however_the_stream_is_cut(step: int) -> None:
    """Every reply type, nested and null ones included, comes out as its exact bytes."""
    replies = [b"+OK\r\n", b"-ERR x\r\n", b":-12\r\n", b"$-1\r\n", b"$3\r\na\r\n\r\n"]
    replies += [b"*-1\r\n", b"*0\r\n", b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n"]
    stream = b"".join(replies)
    reader = resp.ReplyReader(resp.Limits())
    got: list[bytes] = []
    for at in range(0, len(stream), step):
        got += reader.feed(stream[at : at + step])
    assert got == replies


def test_array_elements_are_split_one_level() -> None:
    """MGET parts are merged from their elements."""
    assert resp.elements(b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:2\r\n") == [
        b"$1\r\na\r\n",
        b"$-1\r\n",
        b"*1\r\n:2\r\n",
    ]


def test_replies_nested_too_deep_are_refused() -> None:
    reader = resp.ReplyReader(resp.Limits())
    with pytest.raises(resp.ProtocolError, match="nested deeper"):
        reader.feed(b"*1\r\n" * (resp.MAX_DEPTH + 1) + b":1\r\n")


def test_hash_tags_as_twemproxy_reads_them() -> None:
    """The part between the first `{` and the next `}` is hashed when it is not empty."""
    assert hash_tagged(b"{user:7}:name", b"{}") == b"user:7"
    assert hash_tagged(b"a{b}c{d}", b"{}") == b"b"
    assert hash_tagged(b"x{}y", b"{}") == b"x{}y"
    assert hash_tagged(b"x{y", b"{}") == b"x{y"
    assert hash_tagged(b"{user}", b"") == b"{user}"


def test_ketama_points_follow_twemproxy_arithmetic() -> None:
    """160 points per server for equal weights; shares by weight rounded down to a multiple
    of 4 in single precision; port 11211 is left out of the name; md5 little-endian hash."""
    assert len(Continuum([("a:1", 1), ("b:1", 1), ("c:1", 1)]).values) == 3 * 160
    assert len(Continuum([("a:1", 1), ("b:1", 2), ("c:1", 5)]).values) == 60 + 120 + 300
    assert server_name("10.0.0.1", 11211) == "10.0.0.1"
    assert server_name("10.0.0.1", 6379) == "10.0.0.1:6379"
    assert key_hash(b"") == 0xD98C1DD4  # md5("") begins d4 1d 8c d9
    assert Continuum([]).owner(5) == -1


@pytest.mark.parametrize(
    "servers",
    [[("a:1", 1)], [("a:1", 1), ("b:1", 1), ("c:1", 1)], [("a:1", 1), ("b:1", 2), ("c:1", 5)]],
)
def test_ketama_bucket_table_gives_the_binary_search_owner(servers: list[tuple[str, int]]) -> None:
    """A key's owner found from its bucket is the owner of the first point at or above its
    hash (wrapping to the first point), as by binary search: at random hashes, at every point,
    a step either side of it, and at both ends of the hash space."""
    ring = Continuum(servers)
    rng = random.Random(18)
    hashes = [rng.getrandbits(32) for _ in range(20_000)] + [0, 2**32 - 1]
    hashes += [v + d for v in ring.values for d in (-1, 0, 1) if 0 <= v + d < 2**32]
    for hashed in hashes:
        at = bisect.bisect_left(ring.values, hashed)
        assert ring.owner(hashed) == ring.owners[at % len(ring.values)], hashed
