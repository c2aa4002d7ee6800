"""The ambassador's redis mode against real Debian redis-server shards, with nutcracker
(twemproxy) as the reference for where each key lands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
import redis
from redis.driver_info import DriverInfo

from sidecars.ambassador.redis import RedisListener
from tests.ambassador_support import (
    FAST_EJECTION,
    RedisServer,
    admin_metrics,
    admin_upstreams,
    ambassador,
    metric_value,
    nutcracker,
    started,
    wait_for,
)

pytestmark = pytest.mark.integration

KEYS = [f"key:{i}".encode() for i in range(300)] + [
    b"{user:7}:name",
    b"{user:7}:mail",
    b"x{}y",
    b"{}{tag}",
    b"a{b}c{d}",
]


def shards(n: int) -> contextlib.AbstractAsyncContextManager[list[RedisServer]]:
    return started(RedisServer, n)


def connect(port: int) -> redis.Redis:
    """redis-py speaking RESP2 without CLIENT SETINFO (nutcracker closes on it)."""
    info = DriverInfo(name=None, lib_version=None)
    return redis.Redis(port=port, protocol=2, socket_timeout=10, driver_info=info)


def placement(servers: list[RedisServer]) -> dict[bytes, int]:
    """Which server (by index) holds each key of KEYS; FLUSHALL afterwards."""
    where: dict[bytes, int] = {}
    for index, server in enumerate(servers):
        direct = connect(server.port)
        for key in KEYS:
            if direct.exists(key):
                assert key not in where, f"{key!r} on two servers"
                where[key] = index
        direct.flushall()
        direct.close()
    return where


def env(servers: list[RedisServer], weights: list[int], **more: str) -> dict[str, str]:
    members = ",".join(f"127.0.0.1:{s.port}*{w}" for s, w in zip(servers, weights, strict=True))
    return {"AMBASSADOR_MODE": "redis", "AMBASSADOR_UPSTREAMS": members, **more}


@pytest.mark.parametrize("weights", [[1, 1, 1], [1, 2, 5]])
async def test_keys_land_where_nutcracker_puts_them(weights: list[int]) -> None:
    """Every key, hash-tagged or not, is stored on the same redis-server through the
    ambassador as through nutcracker with the same servers and weights."""
    async with shards(3) as servers, ambassador(env(servers, weights)) as amb:
        ours = connect(amb.port)
        await asyncio.to_thread(lambda: [ours.set(k, b"v") for k in KEYS])
        by_us = placement(servers)
        with nutcracker([(s.port, w) for s, w in zip(servers, weights, strict=True)]) as port:
            theirs = connect(port)
            await asyncio.to_thread(lambda: [theirs.set(k, b"v") for k in KEYS])
            theirs.close()
        by_them = placement(servers)
        ours.close()
    assert len(by_us) == len(KEYS)
    assert by_us == by_them
    assert len(set(by_us.values())) == 3
    assert by_us[b"{user:7}:name"] == by_us[b"{user:7}:mail"]


async def test_pipeline_replies_keep_request_order_across_shards() -> None:
    """A pipeline mixing shards gets its replies in request order even while one shard is
    paused, and MSET/MGET/EXISTS/DEL are split across shards and merged."""
    async with shards(3) as servers, ambassador(env(servers, [1, 1, 1])) as amb:
        slow = connect(servers[0].port)
        slow.execute_command("CLIENT", "PAUSE", "300", "ALL")
        client = connect(amb.port)

        def run() -> list[object]:
            pipe = client.pipeline(transaction=False)
            for i in range(100):
                pipe.set(f"p:{i}", str(i))
            for i in range(100):
                pipe.get(f"p:{i}")
            pipe.mset({f"m:{i}": str(i) for i in range(50)})
            pipe.mget([f"m:{i}" for i in range(50)] + ["missing"])
            pipe.exists(*[f"m:{i}" for i in range(50)], "missing")
            pipe.delete(*[f"m:{i}" for i in range(50)])
            pipe.exists(*[f"m:{i}" for i in range(50)])
            return pipe.execute()

        got = await asyncio.to_thread(run)
        assert got[:100] == [True] * 100
        assert got[100:200] == [str(i).encode() for i in range(100)]
        assert got[200] is True
        assert got[201] == [str(i).encode() for i in range(50)] + [None]
        assert got[202:] == [50, 50, 0]
        held = [connect(s.port).dbsize() for s in servers]
        assert all(n > 0 for n in held), held
        client.close()
        slow.close()


async def test_reply_times_count_every_command_once() -> None:
    """The reply-time histogram counts each command sent to a shard once, however many are
    pipelined and answered together: with one shard paused for 0.4 s under a pipeline of 300,
    the commands of that shard are above the 0.25 s bucket and all the others in it."""
    async with shards(3) as servers, ambassador(env(servers, [1, 1, 1])) as amb:
        client = connect(amb.port)
        await asyncio.to_thread(client.ping)  # a local command: not timed
        connect(servers[0].port).execute_command("CLIENT", "PAUSE", "400", "ALL")

        def run() -> list[object]:
            pipe = client.pipeline(transaction=False)
            for i in range(150):
                pipe.set(f"t:{i}", "v")
                pipe.get(f"t:{i}")
            return pipe.execute()

        assert len(await asyncio.to_thread(run)) == 300
        paused = 2 * sum(connect(servers[0].port).exists(f"t:{i}") for i in range(150))
        assert 0 < paused < 300
        text = await asyncio.to_thread(admin_metrics, amb.admin_port)
        name, on = "ambassador_redis_reply_seconds", {"listener": "default"}
        assert metric_value(text, f"{name}_count", **on) == 300
        assert metric_value(text, f"{name}_bucket", le="0.25", **on) == 300 - paused
        assert metric_value(text, f"{name}_sum", **on) >= 0.3 * paused
        client.close()


async def test_commands_that_cannot_be_sharded_are_refused_by_name() -> None:
    """KEYS, FLUSHALL, MULTI, SUBSCRIBE and SELECT 1 get an error naming the command; the
    connection stays usable; SELECT 0 and PING are answered."""
    async with shards(2) as servers, ambassador(env(servers, [1, 1])) as amb:
        client = connect(amb.port)

        def run() -> None:
            for cmd in (["KEYS", "*"], ["FLUSHALL"], ["MULTI"], ["SUBSCRIBE", "c"]):
                with pytest.raises(redis.ResponseError, match=cmd[0]):
                    client.execute_command(*cmd)
            with pytest.raises(redis.ResponseError, match="SELECT"):
                client.execute_command("SELECT", "1")
            assert client.execute_command("SELECT", "0") is True
            assert client.ping()
            assert client.set("after", "1") and client.get("after") == b"1"

        await asyncio.to_thread(run)
        client.close()


async def poll(check: Callable[[], bool], within: float, what: str) -> None:
    """Run a blocking `check` in a thread (the ambassador runs on this loop) until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await asyncio.to_thread(check):
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not true within {within}s")
        await asyncio.sleep(0.05)


async def test_dead_shard_is_ejected_errors_its_keys_and_comes_back() -> None:
    """With a shard stopped, its keys get an error reply (not moved), the other keys work,
    the shard is ejected after failed commands, and once restarted on its port it serves its
    keys again; per-shard counters are exported."""
    async with shards(2) as servers, ambassador(env(servers, [1, 1], **FAST_EJECTION)) as amb:
        client = connect(amb.port)
        await asyncio.to_thread(lambda: [client.set(k, b"v") for k in KEYS])
        where = placement(servers)
        dead_keys = [k for k, i in where.items() if i == 0]
        live_keys = [k for k, i in where.items() if i == 1]
        port = servers[0].port
        servers[0].stop()

        def fails(key: bytes) -> bool:
            try:
                client.set(key, b"v")
            except redis.ResponseError as exc:
                assert f"127.0.0.1:{port}" in str(exc)
                return True
            return False

        loop = asyncio.get_running_loop()
        started = loop.time()
        assert all(await asyncio.to_thread(lambda: [fails(k) for k in dead_keys[:5]]))
        assert not any(await asyncio.to_thread(lambda: [fails(k) for k in live_keys[:20]]))
        members = await asyncio.to_thread(admin_upstreams, amb.admin_port)
        down = [m for m in members if m["address"] == f"127.0.0.1:{port}"]
        assert down[0]["ejected"] or not down[0]["healthy"]
        assert loop.time() - started < 5
        assert connect(servers[1].port).dbsize() == 20  # nothing moved
        servers[0] = RedisServer(port)
        await servers[0].ready()

        def back() -> bool:
            try:
                return bool(client.set(dead_keys[0], b"again"))
            except redis.ResponseError:
                return False

        await poll(back, 10.0, "the restarted shard serves its keys")
        assert connect(port).get(dead_keys[0]) == b"again"
        text = await asyncio.to_thread(admin_metrics, amb.admin_port)
        shard = {"listener": "default", "member": f"127.0.0.1:{port}"}
        assert metric_value(text, "ambassador_redis_commands_total", **shard) > 0
        client.close()


async def test_rehash_moves_keys_of_a_dead_shard_when_asked() -> None:
    """With redis_rehash the keys of a down shard are served by the others."""
    settings = {"AMBASSADOR_REDIS_REHASH": "true", "AMBASSADOR_HEALTH_FALL": "1"}
    async with shards(2) as servers, ambassador(env(servers, [1, 1], **settings)) as amb:
        servers[0].stop()
        client = connect(amb.port)

        def all_set() -> bool:
            try:
                return all(client.set(k, b"v") for k in KEYS[:50])
            except redis.ResponseError:
                return False

        await poll(all_set, 10.0, "every key set with one shard down")
        assert connect(servers[1].port).dbsize() == 50
        client.close()


async def test_a_shard_closing_an_idle_connection_is_not_a_failure() -> None:
    """A shard that closes the ambassador's idle connection (a server `timeout`, CLIENT KILL)
    is not ejected for it: the next command opens a new connection and is answered."""
    settings = {"AMBASSADOR_EJECT_FAILURES": "1", "AMBASSADOR_HEALTH_CHECK": "none"}
    async with shards(1) as servers, ambassador(env(servers, [1], **settings)) as amb:
        client = connect(amb.port)
        assert await asyncio.to_thread(client.set, "k", "v")
        direct = connect(servers[0].port)
        assert direct.execute_command("CLIENT", "KILL", "TYPE", "normal") >= 1
        direct.close()
        listener = next(iter(amb.service.running.values())).listener
        assert isinstance(listener, RedisListener)
        await wait_for(lambda: not listener.shards, 5.0, "the shard connection dropped")
        assert await asyncio.to_thread(client.get, "k") == b"v"
        client.close()
