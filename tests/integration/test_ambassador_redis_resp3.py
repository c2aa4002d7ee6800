"""RESP3 and scripts in the ambassador's redis mode, against real Debian redis-server shards
and redis-py speaking RESP3."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from redis.driver_info import DriverInfo

from sidecars.ambassador import resp, resp3
from tests.ambassador_support import RedisServer, ambassador, started

pytestmark = pytest.mark.integration

NO_INFO = DriverInfo(name=None, lib_version=None)


def env(servers: list[RedisServer]) -> dict[str, str]:
    members = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return {"AMBASSADOR_MODE": "redis", "AMBASSADOR_UPSTREAMS": members}


def direct(port: int) -> redis.Redis:
    return redis.Redis(port=port, protocol=2, socket_timeout=10, driver_info=NO_INFO)


def split(stream: bytes) -> list[bytes]:
    reader = resp3.ReplyReader(resp.Limits())
    replies = reader.feed(stream)
    assert not reader.buf and not reader.pushes
    return replies


async def converse(port: int, commands: list[list[bytes]]) -> list[bytes]:
    """Send `commands` then QUIT on one connection; every reply, read until the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(resp.command(*c) for c in [*commands, [b"QUIT"]]))
        async with asyncio.timeout(10):
            return split(await reader.read(-1))
    finally:
        writer.close()


async def test_redis_py_speaks_resp3_through_the_ambassador() -> None:
    """redis-py with protocol=3, a password and a name: HELLO 3 AUTH ... SETNAME is answered
    by the ambassador, hashes come back as maps and sets as sets, split MSET/MGET/EXISTS/DEL
    are merged, pipelines keep their order; a RESP2 client beside it still gets arrays; each
    shard sees the ambassador's RESP3 connection apart from its RESP2 one."""
    async with started(RedisServer, 3) as servers, ambassador(env(servers)) as amb:
        three = redis.Redis(
            port=amb.port,
            protocol=3,
            username="default",
            password="any",
            client_name="app",
            socket_timeout=10,
            driver_info=NO_INFO,
        )
        two = redis.Redis(port=amb.port, protocol=2, socket_timeout=10, driver_info=NO_INFO)

        def run() -> None:
            assert three.ping() and three.client_getname() == b"app"
            assert three.hset("h", mapping={"x": 1, "y": 2}) == 2
            assert three.hgetall("h") == {b"x": b"1", b"y": b"2"}
            assert three.sadd("s", "a", "b") == 2 and three.smembers("s") == {b"a", b"b"}
            keys = [f"k{i}" for i in range(30)]
            assert three.mset({k: k for k in keys})
            assert three.mget([*keys, "missing"]) == [k.encode() for k in keys] + [None]
            assert three.exists(*keys) == 30
            pipe = three.pipeline(transaction=False)
            for k in keys:
                pipe.incr(f"n:{k}")
                pipe.get(k)
            pipe.hgetall("h")
            got = pipe.execute()
            assert got[:-1] == [x for k in keys for x in (1, k.encode())]
            assert got[-1] == {b"x": b"1", b"y": b"2"}
            assert three.delete(*keys) == 30
            for refused in (["SUBSCRIBE", "c"], ["CLIENT", "TRACKING", "on"], ["MONITOR"]):
                with pytest.raises(redis.ResponseError, match=f"{refused[0]}.*push messages"):
                    three.execute_command(*refused)
            assert three.get("k0") is None  # the connection goes on
            assert two.hgetall("h") == {b"x": b"1", b"y": b"2"}  # redis-py folds the array
            assert two.incr("n:k0") == 2
            for server in servers:
                plain = direct(server.port)
                mine = plain.client_id()
                ours = [c for c in plain.client_list() if int(c["id"]) != mine]
                assert sorted(c["resp"] for c in ours) in (["2", "3"], ["3"]), ours
                plain.close()

        await asyncio.to_thread(run)
        three.close()
        two.close()


DIFFERENTIAL = [
    [b"HSET", b"h", b"a", b"1", b"b", b"2"],
    [b"HGETALL", b"h"],
    [b"SADD", b"s", b"x"],
    [b"SMEMBERS", b"s"],
    [b"GET", b"nope"],
    [b"ZADD", b"z", b"1.5", b"m"],
    [b"ZSCORE", b"z", b"m"],
    [b"ZRANGE", b"z", b"0", b"-1", b"WITHSCORES"],
    [b"HSET", b"one", b"f", b"v"],
    [b"HRANDFIELD", b"one", b"-1", b"WITHVALUES"],
    [b"INCRBYFLOAT", b"f", b"2.5"],
    [b"SET", b"k", b"v"],
    [b"MGET", b"k", b"nope"],
    [b"EXISTS", b"k", b"nope"],
    [b"HGET", b"nope", b"a"],
    [b"EVAL", b"return redis.call('HGETALL', KEYS[1])", b"1", b"h"],
    [b"EVAL", b"redis.setresp(3); return redis.call('HGETALL', KEYS[1])", b"1", b"h"],
    [b"EVAL", b"return {double=1.5}", b"1", b"k"],
    [b"EVAL", b"return", b"5", b"k"],
    [b"EVAL", b"return", b"-1"],
    [b"EVAL", b"return", b"x"],
    [b"HELLO", b"4"],
    [b"HELLO", b"x"],
    [b"HELLO", b"3", b"AUTH", b"bob", b"pw"],
    [b"HELLO", b"3", b"FOO"],
]


@pytest.mark.parametrize("proto", [b"3", b"2"])
async def test_replies_are_a_real_redis_replies_byte_for_byte(proto: bytes) -> None:
    """After HELLO 3 (and back after HELLO 2) every reply of a command mix (maps, sets,
    doubles, nulls, script results, the errors of bad numkeys and bad HELLOs) is the same
    bytes through the ambassador as from a redis-server asked directly."""
    commands = [[b"HELLO", b"3"], [b"HELLO", proto], *DIFFERENTIAL]
    async with started(RedisServer, 2) as servers, ambassador(env(servers[:1])) as amb:
        ours = await converse(amb.port, commands)
        theirs = await converse(servers[1].port, commands)
    assert len(ours) == len(theirs) == len(commands) + 1
    for reply in (ours[0], theirs[0]):
        assert reply.startswith(b"%7\r\n") and b"$5\r\nproto\r\n:3\r\n" in reply
    assert b"$4\r\nmode\r\n$5\r\nproxy\r\n" in ours[0]
    assert ours[1][:1] == theirs[1][:1] == (b"%" if proto == b"3" else b"*")
    assert ours[2:] == theirs[2:]


async def test_the_resp3_reader_splits_what_a_real_redis_sends() -> None:
    """Every type a real redis-server sends in RESP3 (DEBUG PROTOCOL's samples, a real
    invalidation push from client tracking) is split into its replies however it is cut,
    the pushes counted and left out."""
    kinds = b"string integer double bignum null array set map attrib push verbatim true false"
    commands = [[b"HELLO", b"3"]] + [[b"DEBUG", b"PROTOCOL", k] for k in kinds.split()]
    commands += [[b"CLIENT", b"TRACKING", b"on"], [b"GET", b"a"], [b"SET", b"a", b"1"]]
    commands += [[b"QUIT"]]
    async with started(lambda port: RedisServer(port, "--enable-debug-command", "local"), 1) as rs:
        reader, writer = await asyncio.open_connection("127.0.0.1", rs[0].port)
        writer.write(b"".join(resp.command(*c) for c in commands))
        async with asyncio.timeout(10):
            stream = await reader.read(-1)
        writer.close()
    parser = resp3.ReplyReader(resp.Limits())
    replies = [reply for byte in range(len(stream)) for reply in parser.feed(stream[byte:][:1])]
    assert len(replies) == len(commands) and parser.pushes == 2 and not parser.buf
    assert replies[4] == b"(1234567999999999999999999999999999999\r\n"
    assert replies[9].startswith(b"|1\r\n") and replies[9].endswith(b"the attribute\r\n")
    assert replies[10].startswith(b"$40\r\nSome real reply following the push")
    assert replies[11].startswith(b"=29\r\ntxt:")


async def test_scripts_go_to_the_shard_of_their_keys() -> None:
    """SCRIPT LOAD and FUNCTION LOAD through the ambassador load on every shard (one answer);
    EVAL, EVALSHA (redis-py's registered scripts too), FCALL and their _RO forms run on the
    shard owning their declared keys (hash-tagged keys together); keys on several shards are
    refused naming the command and advising a hash tag, nothing run; no declared key is
    refused; in RESP3 too."""
    library = "#!lua name=lib\nredis.register_function('put', function(k, a) "
    library += "return redis.call('SET', k[1], a[1]) end)\n"
    library += "redis.register_function{function_name='peek', callback=function(k) "
    library += "return redis.call('GET', k[1]) end, flags={'no-writes'}}"
    script = "return redis.call('SET', KEYS[1], ARGV[1])"
    async with started(RedisServer, 3) as servers, ambassador(env(servers)) as amb:

        def run(proto: int) -> None:
            client = redis.Redis(
                port=amb.port, protocol=proto, socket_timeout=10, driver_info=NO_INFO
            )
            sha = client.script_load(script)
            assert client.script_exists(sha, "0" * 40) == [True, False]
            assert client.function_load(library, replace=True) == b"lib"
            registered = client.register_script("return redis.call('INCR', KEYS[1])")
            client.script_flush()
            assert registered(keys=[f"counter{proto}"]) == 1  # NOSCRIPT, loaded, run again
            tagged = [f"{{user{proto}}}:{i}" for i in range(20)]
            assert client.eval(script, 1, tagged[0], "a") in (True, b"OK")
            assert client.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, *tagged[:2]) == [
                b"a",
                None,
            ]
            assert client.evalsha(sha, 1, tagged[1], "b") in (True, b"OK")
            assert client.fcall("put", 1, tagged[2], "c") in (True, b"OK")
            assert client.fcall_ro("peek", 1, tagged[2]) == b"c"
            assert client.eval_ro("return redis.call('GET', KEYS[1])", 1, tagged[1]) == b"b"
            spread = [f"spread{proto}:{i}" for i in range(20)]
            with pytest.raises(redis.ResponseError, match="EVAL keys .* different shards.*hash"):
                client.eval(script, 20, *spread, "x")
            with pytest.raises(redis.ResponseError, match="FCALL keys .* different shards"):
                client.fcall("put", 20, *spread, "x")
            assert client.exists(*spread) == 0
            with pytest.raises(redis.ResponseError, match="EVAL without keys"):
                client.eval("return 1", 0)
            with pytest.raises(redis.ResponseError, match="EVALSHA without keys"):
                client.evalsha(sha, 0)
            client.close()

        await asyncio.to_thread(run, 2)
        await asyncio.to_thread(run, 3)
        held = [direct(s.port).dbsize() for s in servers]
        assert sum(held) == 8, held  # 4 keys per protocol, the refused scripts wrote none
        for server in servers:
            assert b"lib" in direct(server.port).function_list()[0]  # a flat list in RESP2


@pytest.mark.parametrize("rehash", [False, True])
async def test_loading_a_script_needs_every_shard(rehash: bool) -> None:
    """With a shard down, SCRIPT LOAD is refused naming it (it could not run there later);
    with redis_rehash, where that shard's keys go to the others, it loads on the live ones."""
    async with started(RedisServer, 2) as servers:
        settings = {**env(servers), "AMBASSADOR_REDIS_REHASH": str(rehash).lower()}
        async with ambassador(settings) as amb:
            servers[1].stop()
            client = redis.Redis(port=amb.port, protocol=3, socket_timeout=10, driver_info=NO_INFO)
            await until_true(lambda: loads(client, servers[1].port, rehash), "the shard out")
            client.close()
        if rehash:
            assert direct(servers[0].port).script_exists(SHA1_RETURN_1) == [True]


SHA1_RETURN_1 = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # of "return 1"


def loads(client: redis.Redis, down: int, rehash: bool) -> bool:
    """Whether SCRIPT LOAD does what it should with the shard on port `down` out: refused
    naming it, or (rehash) loaded on the live shard alone."""
    try:
        sha = client.script_load("return 1")
    except redis.ResponseError as exc:
        return not rehash and f"127.0.0.1:{down}" in str(exc)
    return rehash and sha == SHA1_RETURN_1 and client.eval("return 1", 1, "k") == 1


async def until_true(check: Callable[[], bool], what: str) -> None:
    """Run a blocking `check` in a thread until it is true, within 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not await asyncio.to_thread(check):
        assert loop.time() < deadline, f"{what}: not within 10 s"
        await asyncio.sleep(0.05)
