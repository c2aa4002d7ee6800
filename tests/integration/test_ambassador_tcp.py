"""tcp mode: Redis through the ambassador, half-close, bulk bytes, retries and limits."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
from collections import Counter

import pytest

from sidecars.ambassador.balancer import Ring
from sidecars.ambassador.members import Member
from tests.ambassador_support import (
    RedisServer,
    ambassador,
    raw_exchange,
    redis_command,
    wait_for,
)
from tests.helpers import free_port

pytestmark = pytest.mark.integration


def tcp_env(*addrs: str, **extra: str) -> dict[str, str]:
    env = {"AMBASSADOR_MODE": "tcp", "AMBASSADOR_UPSTREAMS": ",".join(addrs)}
    env.update({f"AMBASSADOR_{k.upper()}": v for k, v in extra.items()})
    return env


@pytest.fixture
async def redises():  # type: ignore[no-untyped-def]
    servers = [RedisServer(), RedisServer()]
    try:
        for r in servers:
            await r.ready()
        yield servers
    finally:
        for r in servers:
            r.stop()


async def test_redis_through_the_ambassador_round_robin(redises: list[RedisServer]) -> None:
    env = tcp_env(*(f"127.0.0.1:{r.port}" for r in redises))
    async with ambassador(env) as amb:
        for i in range(6):
            assert await redis_command(amb.port, b"SET", b"k", str(i).encode()) == b"+OK\r\n"
        # each connection went to one member, alternating: each holds one of the last values
        for r in redises:
            value = await redis_command(r.port, b"GET", b"k")
            assert value == b"$1\r\n"
        # a pipelined session on one connection stays on one member
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        writer.write(b"*3\r\n$3\r\nSET\r\n$1\r\np\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\np\r\n")
        async with asyncio.timeout(5):
            assert await reader.readline() == b"+OK\r\n"
            assert await reader.readline() == b"$1\r\n"
            assert await reader.readline() == b"1\r\n"
        writer.close()


async def test_hash_by_client_address_keeps_one_member(redises: list[RedisServer]) -> None:
    env = tcp_env(*(f"127.0.0.1:{r.port}" for r in redises), policy="hash")
    async with ambassador(env) as amb:
        for _ in range(5):
            await redis_command(amb.port, b"INCR", b"hits")
        counts = [await redis_command(r.port, b"GET", b"hits") for r in redises]
        assert sorted(counts) == [b"$-1\r\n", b"$1\r\n"]  # all five on one member


async def echo_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads everything until the client half-closes, then answers its digest and a tail."""
    data = await reader.read(-1)
    writer.write(hashlib.sha256(data).hexdigest().encode() + b" %d" % len(data))
    await writer.drain()
    writer.close()


async def test_half_close_and_bulk_bytes_are_relayed_intact() -> None:
    server = await asyncio.start_server(echo_after_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with ambassador(tcp_env(f"127.0.0.1:{port}")) as amb:
        payload = bytes(range(256)) * 40000  # ~10 MB, through bounded buffers
        out = await raw_exchange(amb.port, payload, within=30)
        assert out == hashlib.sha256(payload).hexdigest().encode() + b" %d" % len(payload)
        await wait_for(lambda: not amb.service.running["default"].listener.conns, 5, "closed")
    server.close()


async def test_many_short_connections_at_once_each_get_their_whole_answer() -> None:
    # answers of several reads each, some with the member's end arriving with the last bytes
    server = await asyncio.start_server(echo_after_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with ambassador(tcp_env(f"127.0.0.1:{port}")) as amb:
        payloads = [bytes([i]) * (i * 7919) for i in range(1, 41)]  # 7.9 KB to 317 KB
        outs = await asyncio.gather(*(raw_exchange(amb.port, p, within=30) for p in payloads))
        for p, out in zip(payloads, outs, strict=True):
            assert out == hashlib.sha256(p).hexdigest().encode() + b" %d" % len(p)
        listener = amb.service.running["default"].listener
        await wait_for(lambda: not listener.conns, 5, "all relays closed")
        member = next(iter(listener.cluster.members.values()))
        assert member.active == 0 and member.requests == len(payloads)
    server.close()


async def test_member_given_by_name_is_resolved_and_relayed() -> None:
    server = await asyncio.start_server(echo_after_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = tcp_env(f"localhost:{port}", health_check="none", dns_family="ipv4")
    async with ambassador(env) as amb:
        members = amb.service.running["default"].cluster.members.values()
        assert [m.host for m in members] == ["localhost"]  # connected to by name, resolved then
        out = await raw_exchange(amb.port, b"by name")
        assert out == hashlib.sha256(b"by name").hexdigest().encode() + b" 7"
    server.close()


async def test_least_conn_spreads_open_connections(redises: list[RedisServer]) -> None:
    env = tcp_env(*(f"127.0.0.1:{r.port}" for r in redises), policy="least_conn")
    async with ambassador(env) as amb:
        conns = [await asyncio.open_connection("127.0.0.1", amb.port) for _ in range(6)]
        for reader, writer in conns:
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            async with asyncio.timeout(5):
                assert await reader.readline() == b"+PONG\r\n"
        cluster = amb.service.running["default"].cluster
        assert Counter(m.active for m in cluster.members.values()) == {3: 2}
        for _, writer in conns:
            writer.close()
        await wait_for(lambda: all(m.active == 0 for m in cluster.members.values()), 5, "freed")


async def test_refused_member_is_retried_and_ejected(redises: list[RedisServer]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = tcp_env(closed, f"127.0.0.1:{redises[0].port}", health_check="none", eject_failures="2")
    async with ambassador(env) as amb:
        for _ in range(8):
            assert await redis_command(amb.port, b"PING") == b"+PONG\r\n"
        member = amb.service.running["default"].cluster.members[closed]
        assert member.errors["connect"] == 2 and member.ejections == 1


async def test_retry_goes_to_a_member_not_tried_yet(redises: list[RedisServer]) -> None:
    """Hashing by client address, a client whose member refuses is retried on the other member,
    never on the refusing one again (the hash alone would pick it again): every connection is
    served and the refusing member is tried once per connection."""
    good = f"127.0.0.1:{redises[0].port}"
    for _ in range(100):  # a refusing member that the client's address hashes to
        closed = f"127.0.0.1:{free_port()}"
        members = [Member("127.0.0.1", int(a.rsplit(":", 1)[1])) for a in (closed, good)]
        if Ring(members).lookup(b"127.0.0.1", {id(m) for m in members}) is members[0]:
            break
    else:
        pytest.fail("no free port hashes 127.0.0.1 to the refusing member")
    env = tcp_env(closed, good, policy="hash", health_check="none", eject_failures="100")
    async with ambassador(env) as amb:
        for _ in range(3):
            assert await redis_command(amb.port, b"PING") == b"+PONG\r\n"
        member = amb.service.running["default"].cluster.members[closed]
        assert member.errors["connect"] == 3


async def test_no_member_reachable_closes_the_client() -> None:
    env = tcp_env(f"127.0.0.1:{free_port()}", health_check="none")
    async with ambassador(env) as amb:
        try:
            assert await raw_exchange(amb.port, b"PING\r\n") == b""
        except ConnectionResetError:
            pass  # cut with a reset: the client learns at once either way
        except OSError as exc:  # cut before it wrote: its half-close finds the socket shut
            assert exc.errno == errno.ENOTCONN
        listener = amb.service.running["default"].listener
        await wait_for(lambda: not listener.conns, 5, "client released")
        assert listener.metrics.rejected.labels("default", "no_member").value == 1


async def test_max_connections_refuses_extra_clients(
    redises: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the held connections never count as idle long enough to make room (see tests/hostile)
    monkeypatch.setattr("sidecars.ambassador.listener.EVICT_IDLE_AFTER", 3600.0)
    env = tcp_env(f"127.0.0.1:{redises[0].port}", max_connections="2")
    async with ambassador(env) as amb:
        held = [await asyncio.open_connection("127.0.0.1", amb.port) for _ in range(2)]
        for reader, writer in held:
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            async with asyncio.timeout(5):
                assert await reader.readline() == b"+PONG\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        async with asyncio.timeout(5):
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass  # refused with a reset: also a clear refusal
        writer.close()
        for _, w in held:
            w.close()


async def test_idle_connections_are_closed(redises: list[RedisServer]) -> None:
    env = tcp_env(f"127.0.0.1:{redises[0].port}", idle_timeout="0.3s")
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        async with asyncio.timeout(5):
            assert await reader.readline() == b"+PONG\r\n"
            try:
                assert await reader.read() == b""  # then silence: the ambassador hangs up
            except ConnectionResetError:
                pass
        writer.close()


async def test_drain_lets_connections_run_then_cuts_them_and_exits_0(
    redises: list[RedisServer],
) -> None:
    env = tcp_env(f"127.0.0.1:{redises[0].port}", shutdown_timeout="1s")
    async with ambassador(env) as amb:
        reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        async with asyncio.timeout(5):
            assert await reader.readline() == b"+PONG\r\n"
        amb.stopping.set()
        # new connections are refused at once ...
        await wait_for(lambda: amb.service.running["default"].listener.draining, 5, "draining")
        with pytest.raises(OSError):
            await redis_command(amb.port, b"PING")
        # ... while the open one still works during the drain
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        async with asyncio.timeout(5):
            assert await reader.readline() == b"+PONG\r\n"
        async with asyncio.timeout(10):
            assert await amb.task == 0
            try:
                assert await reader.read() == b""  # cut at the end of the drain
            except ConnectionResetError:
                pass
        writer.close()


async def test_member_that_never_accepts_times_out_and_the_next_one_serves() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    good = await asyncio.start_server(echo, "127.0.0.1", 0)
    good_port = good.sockets[0].getsockname()[1]
    # A listener that never accepts, its queue filled: further connects get no answer at all.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    filler = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(blackhole.getsockname())
        filler.append(s)
    hole = f"127.0.0.1:{blackhole.getsockname()[1]}"
    env = tcp_env(hole, f"127.0.0.1:{good_port}", connect_timeout="200ms", health_check="none")
    try:
        async with ambassador(env) as amb:
            for _ in range(2):  # round robin: one of the two goes to the black hole first
                reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
                writer.write(b"ping")
                async with asyncio.timeout(10):
                    assert await reader.read(100) == b"ping"
                writer.close()
            member = amb.service.running["default"].cluster.members[hole]
            assert member.errors["timeout"] >= 1
    finally:
        for s in filler:
            s.close()
        blackhole.close()
        good.close()
