"""Clients that give up while their request waits for a member under its limit: nothing is
leaked (requests in flight, member counts) and the next request is served."""

from __future__ import annotations

import asyncio
import socket
import struct

import aiohttp
import pytest

from sidecars.ambassador.cluster import Cluster
from tests.ambassador_support import ambassador, backends, wait_for
from tests.integration.test_ambassador_http import http_env

pytestmark = pytest.mark.integration


async def test_clients_leaving_while_waiting_leak_nothing() -> None:
    """Limit 1, one member answering in 0.5 s, six requests: one is sent, five wait; the five
    clients leave: requests in flight fall to one, nothing is sent for them later, and once
    the first is answered nothing is counted anywhere and a new request is served. (A client
    that half-closes still gets its answer: the ambassador cannot tell that from leaving.)"""
    async with backends(1) as bs:
        env = http_env(bs, health_check="none", member_max_connections="1", connect_timeout="5s")
        async with ambassador(env) as amb:
            (running,) = amb.service.running.values()
            cluster: Cluster = running.cluster
            listener = running.listener
            member = cluster.members[bs[0].addr]
            head = b"GET /slow?s=0.5 HTTP/1.1\r\nhost: x\r\n\r\n"
            writers = []
            for _ in range(6):
                _, writer = await asyncio.open_connection("127.0.0.1", amb.port)
                writer.write(head)
                writers.append(writer)
            await wait_for(lambda: listener.pending == 6, 10.0, "6 requests in flight")
            assert member.active == 1 and len(listener.waiting.queue) == 5
            for writer in writers[1:]:  # the waiting ones leave: a reset, not a half-close
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()
            await wait_for(lambda: listener.pending == 1, 10.0, "the waiting ones gone")
            writers[0].close()
            await wait_for(lambda: member.active == 0 and listener.pending == 0, 10.0, "all done")
            await wait_for(lambda: not listener.waiting.queue, 10.0, "the queue emptied")
            await asyncio.sleep(0.6)  # a request wrongly sent for a client gone would show now
            assert member.requests == 1  # nothing was sent for the clients that left
            async with aiohttp.ClientSession() as s, s.get(amb.url + "/") as resp:
                assert resp.status == 200 and await resp.text() == "b0"
            assert member.active == 0 and listener.pending == 0
