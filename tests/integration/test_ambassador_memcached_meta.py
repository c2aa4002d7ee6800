"""memcached's meta commands (mg, ms, md, ma, me, mn) in the ambassador's memcached mode,
against real Debian memcached shards: answers as one memcached gives them, keys placed where
the classic commands place them."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tests.ambassador_support import MemcachedServer, ambassador, mc_exchange, started

pytestmark = pytest.mark.integration


def env(servers: list[MemcachedServer]) -> dict[str, str]:
    members = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return {"AMBASSADOR_MODE": "memcached", "AMBASSADOR_UPSTREAMS": members}


async def until_close(port: int, data: bytes) -> bytes:
    """Send `data` (ending in quit) and read until the peer closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


def b64(key: bytes) -> bytes:
    return base64.b64encode(key)


KEYS = [b"m%d" % i for i in range(24)]
PIPELINE = (
    b"".join(b"ms %s 2 T0 F%d\r\nv%d\r\n" % (k, i, i % 10) for i, k in enumerate(KEYS))
    + b"".join(b"mg %s v f k s O%d\r\n" % (k, i) for i, k in enumerate(KEYS))
    + b"".join(b"mg %s q v k\r\n" % k for k in KEYS[:8])  # hits: answered despite q
    + b"".join(b"mg miss%d q v\r\n" % i for i in range(8))  # misses: nothing
    + b"mn\r\n"
    + b"".join(b"ms %s 1 q MA\r\nx\r\n" % k for k in KEYS[:4])  # appended, quietly
    + b"".join(b"ms %s 1 q ME\r\nx\r\n" % k for k in KEYS[4:8])  # NS: not quiet
    + b"".join(b"md %s q\r\n" % k for k in KEYS[8:12])  # deleted, quietly
    + b"".join(b"md %s q\r\n" % k for k in KEYS[8:10])  # NF: not quiet
    + b"ma cnt N0 J5 v\r\nma cnt D10 v\r\nma cnt MD D3 q\r\nma cnt v\r\nma nocnt q\r\n"
    + b"mg %s b v k\r\nms %s 3 b\r\nbin\r\nmg %s v\r\n" % (b64(KEYS[0]), b64(b"bin"), b"bin")
    + b"".join(b"mg %s v\r\n" % k for k in KEYS[:12])
    + b"mg m0 zz\r\nmn\r\nquit\r\n"
)


async def test_meta_commands_answer_as_one_memcached_answers_them() -> None:
    """A pipeline of meta commands over three shards (values, flags, opaques, base64 keys,
    append and add modes, arithmetic, deletes, quiet mode hits and misses, mn, a bad flag)
    gets byte for byte the answers one memcached gives the same pipeline, in order."""
    async with started(MemcachedServer, 4) as servers, ambassador(env(servers[:3])) as amb:
        ours = await until_close(amb.port, PIPELINE)
        theirs = await until_close(servers[3].port, PIPELINE)
        held = [await mc_exchange(s.port, b"mg m1\r\nmg m2\r\nmg m3\r\n", 3) for s in servers]
    assert ours == theirs
    assert ours.count(b"MN\r\n") == 2 and b"CLIENT_ERROR invalid flag\r\n" in ours
    assert sum(h.count(b"HD") for h in held[:3]) == 3  # each key on one shard


async def test_meta_keys_land_where_the_classic_commands_put_them() -> None:
    """A key stored with ms (plain or base64) is on the shard a classic get of it goes to:
    each read through the ambassador with `get` finds it, and it is on exactly one shard,
    the one `set` through the ambassador put the same key on."""
    keys = [b"key:%d" % i for i in range(60)]
    async with started(MemcachedServer, 3) as servers, ambassador(env(servers)) as amb:
        stored = b"".join(b"set %s 0 0 1\r\nc\r\n" % k for k in keys)
        assert await mc_exchange(amb.port, stored, len(keys)) == b"STORED\r\n" * len(keys)
        classic = [
            {k for k in keys if b"VALUE %s " % k in got}
            for got in [
                await mc_exchange(s.port, b"get " + b" ".join(keys) + b"\r\n") for s in servers
            ]
        ]
        for server in servers:
            assert await mc_exchange(server.port, b"flush_all\r\n") == b"OK\r\n"
        meta = b"".join(
            b"ms %s 1 b\r\nm\r\n" % b64(k) if i % 2 else b"ms %s 1\r\nm\r\n" % k
            for i, k in enumerate(keys)
        )
        assert await mc_exchange(amb.port, meta, len(keys)) == b"HD\r\n" * len(keys)
        got = await mc_exchange(amb.port, b"get " + b" ".join(keys) + b"\r\n")
        assert got.count(b"VALUE ") == len(keys)
        placed = [
            {k for k in keys if b"VALUE %s " % k in got}
            for got in [
                await mc_exchange(s.port, b"get " + b" ".join(keys) + b"\r\n") for s in servers
            ]
        ]
    assert placed == classic
    assert all(placed) and sum(len(p) for p in placed) == len(keys)
