"""The ambassador's memcached mode against real Debian memcached shards, with nutcracker
(twemproxy) as the reference for where each key lands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from sidecars.ambassador.ketama import Continuum, key_hash, server_name
from tests.ambassador_support import (
    FAST_EJECTION,
    MemcachedServer,
    admin_metrics,
    admin_upstreams,
    ambassador,
    mc_exchange,
    metric_value,
    nutcracker,
    started,
    wait_for,
)

pytestmark = pytest.mark.integration

KEYS = [f"key:{i}".encode() for i in range(300)] + [b"{user:7}:name", b"{user:7}:mail", b"x{}y"]


def shards(n: int) -> contextlib.AbstractAsyncContextManager[list[MemcachedServer]]:
    return started(MemcachedServer, n)


@contextlib.asynccontextmanager
async def spread_shards(n: int, keys: list[bytes]) -> AsyncIterator[list[MemcachedServer]]:
    """`n` shards whose ring puts some of `keys` on each of them. The ring hashes the shards'
    ports, free ones that change every run: about 1 set of 3 in 200 holds 18 keys on 2 shards."""
    for _ in range(20):
        async with shards(n) as servers:
            ring = Continuum([(server_name("127.0.0.1", s.port), 1) for s in servers])
            if len({ring.owner(key_hash(key)) for key in keys}) == n:
                yield servers
                return
    raise AssertionError(f"20 sets of {n} shards, none spreading {keys!r} over all")


def env(servers: list[MemcachedServer], weights: list[int], **more: str) -> dict[str, str]:
    members = ",".join(f"127.0.0.1:{s.port}*{w}" for s, w in zip(servers, weights, strict=True))
    return {"AMBASSADOR_MODE": "memcached", "AMBASSADOR_UPSTREAMS": members, **more}


def sets(keys: list[bytes], value: bytes = b"v") -> bytes:
    return b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(value), value) for k in keys)


async def placement(servers: list[MemcachedServer]) -> dict[bytes, int]:
    """Which server (by index) holds each key of KEYS; flush_all afterwards."""
    where: dict[bytes, int] = {}
    for index, server in enumerate(servers):
        got = await mc_exchange(server.port, b"get " + b" ".join(KEYS) + b"\r\n")
        for line in got.split(b"\r\n"):
            if line.startswith(b"VALUE "):
                key = line.split()[1]
                assert key not in where, f"{key!r} on two servers"
                where[key] = index
        assert await mc_exchange(server.port, b"flush_all\r\n") == b"OK\r\n"
    return where


@pytest.mark.parametrize("weights", [[1, 1, 1], [1, 2, 5]])
async def test_keys_land_where_nutcracker_puts_them(weights: list[int]) -> None:
    """Every key, hash-tagged or not, is stored on the same memcached through the ambassador
    as through nutcracker with the same servers and weights."""
    async with shards(3) as servers, ambassador(env(servers, weights)) as amb:
        got = await mc_exchange(amb.port, sets(KEYS), replies=len(KEYS))
        assert got == b"STORED\r\n" * len(KEYS)
        by_us = await placement(servers)
        with nutcracker([(s.port, w) for s, w in zip(servers, weights, strict=True)], False) as p:
            got = await mc_exchange(p, sets(KEYS), replies=len(KEYS))
            assert got == b"STORED\r\n" * len(KEYS)
        by_them = await placement(servers)
    assert len(by_us) == len(KEYS)
    assert by_us == by_them
    assert len(set(by_us.values())) == 3
    assert by_us[b"{user:7}:name"] == by_us[b"{user:7}:mail"]


async def test_commands_pipelined_across_shards_answer_in_request_order() -> None:
    """A pipeline of every keyed command over three shards gets its answers in request
    order; a get of keys on several shards is merged in the order asked (misses left out);
    noreply commands answer nothing; version is answered locally; quit closes."""
    keys = [b"k%d" % i for i in range(30)]
    kept = [k for k in keys[:20] if k not in (b"k2", b"k3")]  # set, and not deleted below
    async with spread_shards(3, kept) as servers, ambassador(env(servers, [1, 1, 1])) as amb:
        pipeline = (
            sets(keys[:20])
            + b"get " + b" ".join(reversed(keys)) + b"\r\n"
            + b"add k0 0 0 1\r\nx\r\nreplace k25 0 0 1\r\nx\r\n"
            + b"append k1 0 0 2\r\n-a\r\nprepend k1 0 0 2\r\np-\r\n"
            + b"set n 5 0 1\r\n7\r\nincr n 5\r\ndecr n 2\r\ntouch n 100\r\n"
            + b"set q 0 0 1 noreply\r\nq\r\ndelete k2 noreply\r\n"
            + b"delete k3\r\ndelete k3\r\nversion\r\ngets k1\r\n"
            + b"get k1 n q k2\r\nquit\r\nget k4\r\n"
        )  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        writer.write(pipeline)
        async with asyncio.timeout(10):
            got = await reader.read(-1)  # quit: the ambassador closes after its answers
        writer.close()
        expected_get = b"".join(b"VALUE %s 0 1\r\nv\r\n" % k for k in reversed(keys[:20]))
        assert got.startswith(b"STORED\r\n" * 20 + expected_get + b"END\r\n")
        rest = got[len(b"STORED\r\n" * 20 + expected_get + b"END\r\n") :]
        lines = rest.split(b"\r\n")
        assert lines[:10] == [
            b"NOT_STORED", b"NOT_STORED", b"STORED", b"STORED",
            b"STORED", b"12", b"10", b"TOUCHED", b"DELETED", b"NOT_FOUND",
        ]  # fmt: skip
        assert lines[10] == b"VERSION ambassador"
        assert lines[11].startswith(b"VALUE k1 0 5 ") and lines[12] == b"p-v-a"
        assert lines[13] == b"END"
        assert lines[14:] == [
            b"VALUE k1 0 5", b"p-v-a", b"VALUE n 5 2", b"10", b"VALUE q 0 1", b"q", b"END", b"",
        ]  # fmt: skip
        held = [await mc_exchange(s.port, b"get " + b" ".join(keys) + b"\r\n") for s in servers]
        assert all(h.count(b"VALUE") > 0 for h in held), held


async def test_commands_that_span_shards_are_refused_by_name() -> None:
    """stats, flush_all and verbosity get a SERVER_ERROR naming the command, an unknown
    command gets ERROR, and the connection stays usable."""
    async with shards(2) as servers, ambassador(env(servers, [1, 1])) as amb:
        got = await mc_exchange(
            amb.port,
            b"stats\r\nflush_all\r\nverbosity 1\r\nbogus\r\nset a 0 0 1\r\n1\r\nget a\r\n",
            replies=6,
        )
        lines = got.split(b"\r\n")
        assert lines[0].startswith(b"SERVER_ERROR") and b"stats" in lines[0]
        assert lines[1].startswith(b"SERVER_ERROR") and b"flush_all" in lines[1]
        assert lines[2].startswith(b"SERVER_ERROR") and b"verbosity" in lines[2]
        assert lines[3:] == [b"ERROR", b"STORED", b"VALUE a 0 1", b"1", b"END", b""]


async def test_dead_shard_is_ejected_errors_its_keys_and_comes_back() -> None:
    """With a shard stopped its keys get SERVER_ERROR naming it (not moved), the other keys
    work, it is ejected within a second of failed commands, and once restarted on its port
    it serves its keys again; per-shard counters are exported."""
    async with shards(2) as servers, ambassador(env(servers, [1, 1], **FAST_EJECTION)) as amb:
        await mc_exchange(amb.port, sets(KEYS), replies=len(KEYS))
        where = await placement(servers)
        dead_keys = [k for k, i in where.items() if i == 0]
        live_keys = [k for k, i in where.items() if i == 1]
        port = servers[0].port
        servers[0].stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await mc_exchange(amb.port, sets(dead_keys[:5]), replies=5)
        lines = got.split(b"\r\n")[:5]
        assert all(
            line.startswith(b"SERVER_ERROR") and f"127.0.0.1:{port}".encode() in line
            for line in lines
        ), lines
        got = await mc_exchange(amb.port, sets(live_keys[:20]), replies=20)
        assert got == b"STORED\r\n" * 20
        members = await asyncio.to_thread(admin_upstreams, amb.admin_port)
        down = [m for m in members if m["address"] == f"127.0.0.1:{port}"]
        assert down[0]["ejected"] or not down[0]["healthy"]
        assert loop.time() - started < 1.0 + 0.5  # the exchanges themselves take some time
        got = await mc_exchange(amb.port, b"get " + b" ".join(live_keys[:20]) + b"\r\n")
        assert got.count(b"VALUE") == 20  # nothing moved
        servers[0] = MemcachedServer(port)
        await servers[0].ready()

        async def back() -> bool:
            return await mc_exchange(amb.port, sets(dead_keys[:1], b"again")) == b"STORED\r\n"

        deadline = loop.time() + 10
        while not await back():
            assert loop.time() < deadline, "the restarted shard serves its keys: not in 10s"
            await asyncio.sleep(0.05)
        got = await mc_exchange(port, b"get %s\r\n" % dead_keys[0])
        assert got == b"VALUE %s 0 5\r\nagain\r\nEND\r\n" % dead_keys[0]
        text = await asyncio.to_thread(admin_metrics, amb.admin_port)
        shard = {"listener": "default", "member": f"127.0.0.1:{port}"}
        assert metric_value(text, "ambassador_memcached_commands_total", **shard) > 0


async def test_rehash_moves_keys_of_a_dead_shard_when_asked() -> None:
    """With redis_rehash (it serves memcached mode too) the keys of a down shard are served
    by the others."""
    settings = {"AMBASSADOR_REDIS_REHASH": "true", "AMBASSADOR_HEALTH_FALL": "1"}
    async with shards(2) as servers, ambassador(env(servers, [1, 1], **settings)) as amb:
        servers[0].stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await mc_exchange(amb.port, sets(KEYS[:50]), replies=50) != b"STORED\r\n" * 50:
            assert loop.time() < deadline, "every key set with one shard down: not in 10s"
            await asyncio.sleep(0.05)
        got = await mc_exchange(servers[1].port, b"get " + b" ".join(KEYS[:50]) + b"\r\n")
        assert got.count(b"VALUE") == 50
        listener = next(iter(amb.service.running.values())).listener
        await wait_for(lambda: len(listener.conns) == 0, 5.0, "clients gone")


async def test_a_real_client_works_through_the_ambassador() -> None:
    """pymemcache (its sets are noreply by default) stores, reads back in one get_many over
    three shards, counts, checks and sets, deletes and touches as against one memcached."""
    from pymemcache.client.base import Client

    async with shards(3) as servers, ambassador(env(servers, [1, 1, 1])) as amb:

        def run() -> None:
            client = Client(("127.0.0.1", amb.port), timeout=10, connect_timeout=10)
            values = {f"c:{i}": str(i).encode() for i in range(100)}
            assert client.set_many(values) == []
            assert client.get_many(list(values)) == values
            assert client.add("c:1", b"x", noreply=False) is False
            assert client.set("n", b"10", noreply=False) is True
            assert client.incr("n", 5) == 15 and client.decr("n", 20) == 0
            value, token = client.gets("c:2")
            assert value == b"2"
            assert client.cas("c:2", b"two", token, noreply=False) is True
            assert client.cas("c:2", b"again", token, noreply=False) is False
            assert client.get("c:2") == b"two"
            assert client.touch("c:3", 100, noreply=False) is True
            assert client.delete("c:3", noreply=False) is True
            assert client.get("c:3") is None
            assert client.version() == b"ambassador"
            client.close()

        await asyncio.to_thread(run)
        held = [await mc_exchange(s.port, b"get c:10 c:20 c:30 c:40 c:50\r\n") for s in servers]
        assert sum(h.count(b"VALUE") for h in held) == 5
