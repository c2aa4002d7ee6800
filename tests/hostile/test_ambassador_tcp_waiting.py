"""tcp clients that reset while their connection waits for a member (its connect under way, or
a member slot under the member limit): they are let go at once, not held until the connect
timeout, also when bytes they sent before the reset hide it from a read (a client is not read
before its member is connected)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator

import pytest

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.tcp import TcpListener
from tests.ambassador_support import (
    Running,
    admin_metrics,
    ambassador,
    metric_value,
    wait_for,
)
from tests.integration.test_ambassador_load import counting_members, one_at_a_time

pytestmark = pytest.mark.integration

OPEN_UP = "ambassador_upstream_open_connections"
CLIENTS = "ambassador_client_connections"


async def first_client(
    amb: Running,
) -> tuple[Cluster, TcpListener, asyncio.StreamReader, asyncio.StreamWriter]:
    """The first client of a one-at-a-time ambassador, greeted by its member."""
    running = amb.service.running["default"]
    r1, w1 = await asyncio.open_connection("127.0.0.1", amb.port)
    async with asyncio.timeout(10):
        assert await r1.readline() == b"hello\n"
    listener = running.listener
    assert isinstance(listener, TcpListener)
    return running.cluster, listener, r1, w1


async def test_a_client_resetting_while_it_waits_for_a_member_is_dropped_at_once() -> None:
    """tcp, one member, a limit of 1, a connect timeout of 10 s: a second client waits for the
    member; it resets (SO_LINGER 0): within 2 s the ambassador has closed its side (one client
    left, none waiting), no connection was made to the member for it, and the first client is
    still relayed."""
    async with counting_members(1) as (m,):
        async with ambassador(one_at_a_time(m, "10s")) as amb:
            cluster, listener, _, w1 = await first_client(amb)
            _, w2 = await asyncio.open_connection("127.0.0.1", amb.port)
            await wait_for(lambda: cluster.waits == 1, 10.0, "the second client waits")
            sock = w2.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w2.close()
            await wait_for(
                lambda: len(listener.conns) == 1 and not listener.waiting.queue,
                2.0,
                "the reset client let go before the connect timeout",
            )
            assert m.total == 1 and cluster.at_limit == 0
            w1.write(b"still here\n")
            await w1.drain()
            assert m.open == 1
            w1.close()
            await wait_for(lambda: m.open == 0 and not listener.conns, 10.0, "all closed")


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A listener that never accepts, its queue filled: a connect to it gets no answer."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(hole.getsockname())
            filler.append(s)
        yield f"127.0.0.1:{hole.getsockname()[1]}"
    finally:
        for s in filler:
            s.close()
        hole.close()


async def send(port: int, data: bytes) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return writer


def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def metric(admin_port: int, name: str, **labels: str) -> float:
    return metric_value(await asyncio.to_thread(admin_metrics, admin_port), name, **labels)


async def until_metric(admin_port: int, name: str, want: float, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (got := await metric(admin_port, name)) != want:
        if loop.time() > deadline:
            raise AssertionError(f"{what}: {name} is {got}, not {want} within {within}s")
        await asyncio.sleep(0.02)


async def test_a_client_resetting_after_bytes_while_its_member_connect_hangs_is_let_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """tcp to a member that never answers a connect, a connect timeout of 30 s: a client
    sends bytes and resets while the connect is under way; within 3 s the ambassador has closed
    the client and the connect (no client, no open member connection in /metrics), the member
    is not blamed, and nothing was logged as a failure."""
    with black_hole() as hole:
        env = {
            "AMBASSADOR_MODE": "tcp",
            "AMBASSADOR_UPSTREAMS": hole,
            "AMBASSADOR_HEALTH_CHECK": "none",
            "AMBASSADOR_CONNECT_TIMEOUT": "30s",
        }
        caplog.set_level(logging.WARNING)
        async with ambassador(env) as amb:
            writer = await send(amb.port, b"x" * 1000)
            await until_metric(amb.admin_port, OPEN_UP, 1, 10.0, "the member connect under way")
            assert await metric(amb.admin_port, CLIENTS, listener="default") == 1
            reset(writer)
            await until_metric(amb.admin_port, OPEN_UP, 0, 3.0, "the member connect dropped")
            await until_metric(amb.admin_port, CLIENTS, 0, 3.0, "the client let go")
            listener = amb.service.running["default"].listener
            member = amb.service.running["default"].cluster.members[hole]
            assert not listener.dialing.entries
            assert member.active == 0 and member.errors["timeout"] == 0
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_resetting_after_bytes_while_it_waits_for_a_slot_is_let_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """tcp, one member, a limit of 1, a connect timeout of 30 s: a second and a third client
    wait for the member; the third sends bytes and resets. Within 3 s /metrics shows two
    clients left and only the second is queued (the third left from behind it), no connection
    was made to the member for the third, nothing was refused as at the limit; once the first
    client leaves, the second gets the member and is relayed."""
    caplog.set_level(logging.WARNING)
    async with counting_members(1) as (m,):
        async with ambassador(one_at_a_time(m, "30s")) as amb:
            cluster, listener, _, w1 = await first_client(amb)
            r2, w2 = await asyncio.open_connection("127.0.0.1", amb.port)
            await wait_for(lambda: cluster.waits == 1, 10.0, "the second client waits")
            w3 = await send(amb.port, b"y" * 1000)
            await wait_for(lambda: cluster.waits == 2, 10.0, "the third client waits")
            assert await metric(amb.admin_port, CLIENTS, listener="default") == 3
            reset(w3)
            await until_metric(amb.admin_port, CLIENTS, 2, 3.0, "the reset client let go")
            await wait_for(lambda: len(listener.waiting.queue) == 1, 3.0, "the third dequeued")
            assert m.total == 1 and cluster.at_limit == 0
            assert await metric(amb.admin_port, OPEN_UP) == 1
            w1.close()
            async with asyncio.timeout(10):
                assert await r2.readline() == b"hello\n"
            assert m.total == 2 and not listener.waiting.queue and not listener.waiting.gone
            w2.close()
            await wait_for(lambda: m.open == 0 and not listener.conns, 10.0, "all closed")
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
