"""twemproxy's ketama distribution with md5 keys, so a key lands on the shard nutcracker would
pick for the same servers (`host:port`, or `host` alone for port 11211), weights and
`hash_tag`. twemproxy computes the points per server in single-precision floats; so does this."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, cast

POINTS_PER_SERVER = 160
POINTS_PER_HASH = 4
MAX_BUCKET_BITS = 16  # the bucket table in front of the ring: at most 65,536 entries
_F32 = struct.Struct("f")
_U32X4 = struct.Struct("<4I")


def _f32(x: float) -> float:
    return float(_F32.unpack(_F32.pack(x))[0])


def server_name(host: str, port: int) -> str:
    """The name twemproxy hashes for a server without an explicit name."""
    return host if port == 11211 else f"{host}:{port}"


def md5_function() -> Callable[[bytes], Any]:
    """md5 for key hashes: CPython's own (`_md5`), for a short key a third of the cost of
    hashlib's OpenSSL one (which looks the algorithm up on each call); hashlib's where the
    interpreter lacks it. Imported here, as for the balancer's ring: only listeners that hash
    load it."""
    import importlib

    try:
        return cast(Callable[[bytes], Any], importlib.import_module("_md5").md5)
    except ImportError:
        import hashlib

        return hashlib.md5


class KeyHash:
    """twemproxy's `hash: md5`: the digest's first four bytes, little-endian. The digest method
    is taken from the type once (no lookup by name per key) and the four bytes are read as
    integers (no struct tuple): 700 instructions a key less, compiled."""

    __slots__ = ("_md5", "_digest")

    def __init__(self) -> None:
        md5 = md5_function()
        self._md5 = md5
        self._digest: Callable[[Any], bytes] = type(md5(b"")).digest

    def of(self, key: bytes) -> int:
        digest = self._digest(self._md5(key))
        return digest[0] | digest[1] << 8 | digest[2] << 16 | digest[3] << 24


def key_hash(key: bytes) -> int:
    """twemproxy's `hash: md5` of one key."""
    return KeyHash().of(key)


def hash_tagged(key: bytes, tag: bytes) -> bytes:
    """The part of `key` between the two tag characters (`{}`), when that part is not empty."""
    if len(tag) != 2:
        return key
    start = key.find(tag[0:1])
    if start < 0:
        return key
    end = key.find(tag[1:2], start + 1)
    if end < 0 or end == start + 1:
        return key
    return key[start + 1 : end]


class Continuum:
    """The ring of points of some servers, each (name, weight); `owner` gives an index. A table
    of 2^k buckets of the hash space (about four per point) holds the first point of each, so
    that a key's owner is a step or two from its bucket's entry instead of a binary search
    (about 1,000 instructions a key, compiled, for 480 points)."""

    def __init__(self, servers: Sequence[tuple[str, int]]) -> None:
        import hashlib

        total = sum(weight for _, weight in servers)
        points: list[tuple[int, int]] = []
        for index, (name, weight) in enumerate(servers):
            pct = _f32(_f32(float(weight)) / _f32(float(total)))
            scaled = _f32(_f32(_f32(pct * POINTS_PER_SERVER) / 4) * _f32(float(len(servers))))
            count = int(math.floor(_f32(scaled + 0.0000000001))) * 4
            for pointer in range(count // POINTS_PER_HASH):
                digest = hashlib.md5(f"{name}-{pointer}".encode()).digest()
                for value in _U32X4.unpack(digest):
                    points.append((value, index))
        points.sort()
        self.values = values = [value for value, _ in points]
        self.owners = [index for _, index in points]
        bits = min(MAX_BUCKET_BITS, (4 * len(values)).bit_length())
        self.shift = 32 - bits
        self.first: list[int] = []  # by bucket: the index of the first point at or above it
        at = 0
        for bucket in range(1 << bits):
            start = bucket << self.shift
            while at < len(values) and values[at] < start:
                at += 1
            self.first.append(at)

    def owner(self, hashed: int) -> int:
        """The index of the server owning a key hash (32 bits); -1 for an empty ring."""
        values = self.values
        size = len(values)
        if not size:
            return -1
        at = self.first[hashed >> self.shift]  # the first point at or above the key's bucket
        while at < size and values[at] < hashed:
            at += 1
        return self.owners[at if at < size else 0]
