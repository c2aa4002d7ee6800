"""Hostile app: it holds idle connections up to the ambassador's connection limit. Idle ones
must make room for new clients (oldest first); busy ones are never cut for that."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import EjectPolicy
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.service import SIDECAR
from sidecars.runtime.metrics import Registry
from tests.ambassador_support import ambassador, echo_member, wait_for

pytestmark = pytest.mark.integration

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
REQUEST = {"tcp": b"ping", "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}
ANSWER = {"tcp": b"ping", "http": b"HTTP/1.1 200 OK\r\n"}


async def exchange(conn: Conn, mode: str) -> bool:
    """One request and its answer on an open connection; False when the connection is gone."""
    reader, writer = conn
    try:
        writer.write(REQUEST[mode])
        async with asyncio.timeout(5):
            if mode == "tcp":
                got = await reader.read(100)
            else:  # the head, then the 2-byte body
                got = await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2)
    except (OSError, asyncio.IncompleteReadError):
        return False
    return got.startswith(ANSWER[mode])


async def closed_by_ambassador(conn: Conn) -> bool:
    try:
        async with asyncio.timeout(5):
            return await conn[0].read(100) == b""
    except OSError:
        return True


def env(mode: str, member: int, limit: int) -> dict[str, str]:
    return {
        "AMBASSADOR_MODE": mode,
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member}",
        "AMBASSADOR_MAX_CONNECTIONS": str(limit),
        "AMBASSADOR_HEALTH_CHECK": "none",
    }


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_at_the_limit_the_oldest_idle_connection_makes_room(mode: str) -> None:
    """Three idle connections fill a limit of 3: a new client is served (once they have been
    idle a second) and the connection idle the longest is the one closed; the others stay."""
    async with echo_member() as member, ambassador(env(mode, member, 3)) as amb:
        held: list[Conn] = []
        for _ in range(3):
            held.append(await asyncio.open_connection("127.0.0.1", amb.port))
            assert await exchange(held[-1], mode)
            await asyncio.sleep(0.05)  # distinct idle times: held[0] is idle the longest
        newcomer: list[Conn] = []

        async def served() -> bool:
            conn = await asyncio.open_connection("127.0.0.1", amb.port)
            if await exchange(conn, mode):
                newcomer.append(conn)
                return True
            conn[1].close()
            return False

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await served():
            assert loop.time() < deadline, "a new client was never let in"
            await asyncio.sleep(0.1)
        rejected = amb.service.metrics.rejected.labels("default", "idle_evicted")
        assert rejected.value == 1
        assert await closed_by_ambassador(held[0]), "the oldest idle connection was not cut"
        assert await exchange(held[1], mode), "a younger idle connection was cut"
        assert await exchange(held[2], mode), "the youngest idle connection was cut"
        for _, writer in [*held, *newcomer]:
            writer.close()


async def test_busy_connections_are_not_cut_for_a_newcomer() -> None:
    """Three connections that keep exchanging fill a limit of 3: a new client is refused and
    none of the busy ones is cut."""
    async with echo_member() as member, ambassador(env("tcp", member, 3)) as amb:
        held = [await asyncio.open_connection("127.0.0.1", amb.port) for _ in range(3)]
        listener = amb.service.running["default"].listener
        await wait_for(lambda: len(listener.conns) == 3, 5, "three connections admitted")
        stop = asyncio.Event()

        async def chatter(conn: Conn) -> bool:
            while not stop.is_set():
                if not await exchange(conn, "tcp"):
                    return False
                await asyncio.sleep(0.1)
            return True

        chatting = [asyncio.create_task(chatter(conn)) for conn in held]
        refused = amb.service.metrics.rejected.labels("default", "max_connections")
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.0  # a window longer than the idle age that allows a cut
        while loop.time() < until:
            conn = await asyncio.open_connection("127.0.0.1", amb.port)
            assert await closed_by_ambassador(conn)
            conn[1].close()
            await asyncio.sleep(0.2)
        stop.set()
        assert all(await asyncio.gather(*chatting))
        assert refused.value >= 5
        for _, writer in held:
            writer.close()


async def test_half_closed_clients_at_the_limit_make_room() -> None:
    """Clients that send, half-close and then neither read nor close, toward a member that never
    closes either, fill a limit of 3: they are idle, so a new client still gets in."""
    release = asyncio.Event()

    async def holding(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
            await release.wait()  # the client's end came: keep our side open regardless
        writer.close()

    server = await asyncio.start_server(holding, "127.0.0.1", 0)
    member = server.sockets[0].getsockname()[1]
    try:
        async with ambassador(env("tcp", member, 3)) as amb:
            held = []
            for _ in range(3):
                conn = await asyncio.open_connection("127.0.0.1", amb.port)
                conn[1].write(b"ping")
                conn[1].write_eof()
                held.append(conn)
            listener = amb.service.running["default"].listener
            await wait_for(lambda: len(listener.conns) == 3, 5, "three half-closed clients")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                conn = await asyncio.open_connection("127.0.0.1", amb.port)
                if await exchange(conn, "tcp"):
                    break
                conn[1].close()
                assert loop.time() < deadline, "a new client was never let in"
                await asyncio.sleep(0.1)
            conn[1].close()
            for _, writer in held:
                writer.close()
    finally:
        release.set()
        server.close()


class _Conn:
    """A tracked connection that only counts how often the listener asks whether it is idle."""

    asked = 0

    def __init__(self, since: float | None) -> None:
        self.since = since
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.aborted = False

    def idle_since(self) -> float | None:
        _Conn.asked += 1
        return self.since

    def abort(self) -> None:
        self.aborted = True

    def busy(self) -> bool:
        return self.since is None

    def watch_idle(self) -> bool:
        return True


def _listener(limit: int) -> Listener:
    config = SIDECAR.load_config([], {"AMBASSADOR_MAX_CONNECTIONS": str(limit)})
    cluster = Cluster("t", "round_robin", EjectPolicy(), RetryBudget(0.2))
    metrics = Metrics(Registry(), lambda: [])
    return Listener("t", config, cluster, metrics, logging.getLogger("test"))


async def test_a_flood_at_the_limit_does_not_scan_every_connection_each_time() -> None:
    """5,000 busy connections at the limit and 5,000 newcomers refused in a row: the
    connections are looked over once or twice, not once per newcomer (25 million asks)."""
    listener = _listener(5000)
    for _ in range(5000):
        assert listener.admit(_Conn(None))
    _Conn.asked = 0
    for _ in range(5000):
        assert not listener.admit(_Conn(None))
    assert _Conn.asked <= 2 * 5000


async def test_a_flood_at_the_limit_evicts_oldest_first_from_one_scan() -> None:
    """At the limit with 100 idle connections (idle since 10 s to 109 s ago), 100 newcomers in
    a row each take the place of the oldest idle one left, at the cost of about one scan."""
    listener = _listener(100)
    now = asyncio.get_running_loop().time()
    held = [_Conn(now - 10 - i) for i in range(100)]
    for conn in held:
        assert listener.admit(conn)
    _Conn.asked = 0
    for i in range(100):
        assert listener.admit(_Conn(None))
        assert held[99 - i].aborted and not any(c.aborted for c in held[: 99 - i])
    assert _Conn.asked <= 3 * 100
