"""tcp clients that reset while their connection waits for a member: they are let go at once,
not held until the connect timeout (a client is not read before its member is connected)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from tests.ambassador_support import ambassador, wait_for
from tests.integration.test_ambassador_load import counting_members, one_at_a_time

pytestmark = pytest.mark.integration


async def test_a_client_resetting_while_it_waits_for_a_member_is_dropped_at_once() -> None:
    """tcp, one member, a limit of 1, a connect timeout of 10 s: a second client waits for the
    member; it resets (SO_LINGER 0): within 2 s the ambassador has closed its side (one client
    left, none waiting), no connection was made to the member for it, and the first client is
    still relayed."""
    async with counting_members(1) as (m,):
        async with ambassador(one_at_a_time(m, "10s")) as amb:
            running = amb.service.running["default"]
            cluster, listener = running.cluster, running.listener
            r1, w1 = await asyncio.open_connection("127.0.0.1", amb.port)
            async with asyncio.timeout(10):
                assert await r1.readline() == b"hello\n"
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
