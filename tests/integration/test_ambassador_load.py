"""Slow start, the per-member connection limit and Retry-After back-off, against real members
on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from sidecars.ambassador.cluster import Cluster
from tests.ambassador_support import ambassador, backends, metric_value, wait_for
from tests.helpers import free_port
from tests.integration.test_ambassador_http import http_env
from tests.integration.test_ambassador_reload import write_config
from tests.tls_support import write_leaf

pytestmark = pytest.mark.integration


def cluster_of(amb) -> Cluster:  # type: ignore[no-untyped-def]
    (running,) = amb.service.running.values()
    cluster: Cluster = running.cluster
    return cluster


async def shares(session: aiohttp.ClientSession, url: str, seconds: float) -> Counter[str]:
    """Requests one after the other for `seconds`: how many each member answered."""
    got: Counter[str] = Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        async with session.get(url) as resp:
            got[await resp.text()] += 1
    return got


async def test_a_member_back_up_gets_a_share_that_grows_over_the_slow_start() -> None:
    """With a 3 s slow start, a member whose active check passes again gets well under its
    half of the requests in the first 0.6 s and about half once the 3 s are over."""
    async with backends(2) as bs:
        env = http_env(bs, health_check="http:/health", health_fall="1", slow_start="3s")
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            cluster = cluster_of(amb)
            member = cluster.members[bs[1].addr]
            bs[1].healthy = False
            await wait_for(lambda: not member.healthy, 10.0, "b1 marked down")
            assert (await shares(s, amb.url + "/", 0.3))["b1"] == 0
            bs[1].healthy = True
            await wait_for(lambda: member.healthy, 10.0, "b1 marked up")
            up = time.monotonic()
            early = await shares(s, amb.url + "/", 0.6)
            await asyncio.sleep(max(0.0, up + 3.2 - time.monotonic()))
            late = await shares(s, amb.url + "/", 1.0)
            early_share = early["b1"] / early.total()
            late_share = late["b1"] / late.total()
            assert early.total() >= 20 and late.total() >= 20, (early, late)
            assert early_share < 0.35, early
            assert 0.35 < late_share < 0.65, late


class CountingMember:
    """A tcp member that counts its concurrent connections and holds each one until the
    client closes it."""

    def __init__(self) -> None:
        self.open = self.most = self.total = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.total += 1
        self.most = max(self.most, self.open)
        try:
            writer.write(b"hello\n")
            await writer.drain()
            await reader.read()
        except OSError:
            pass
        finally:
            self.open -= 1
            writer.close()


def one_at_a_time(member: CountingMember, connect_timeout: str) -> dict[str, str]:
    """tcp to `member` alone with a limit of one connection, no health checks."""
    return {
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member.port}",
        "AMBASSADOR_MEMBER_MAX_CONNECTIONS": "1",
        "AMBASSADOR_HEALTH_CHECK": "none",
        "AMBASSADOR_CONNECT_TIMEOUT": connect_timeout,
    }


@contextlib.asynccontextmanager
async def counting_members(n: int) -> AsyncIterator[list[CountingMember]]:
    members = [CountingMember() for _ in range(n)]
    servers = []
    for m in members:
        server = await asyncio.start_server(m.handle, "127.0.0.1", 0)
        m.port = server.sockets[0].getsockname()[1]
        servers.append(server)
    try:
        yield members
    finally:
        for server in servers:
            server.close()


async def test_the_per_member_limit_is_never_exceeded_and_refuses_beyond_it() -> None:
    """tcp with AMBASSADOR_MEMBER_MAX_CONNECTIONS=2 and two members: of 7 clients at once,
    4 get a member (never more than 2 open on one) and the others wait the connect timeout,
    are closed and counted; once clients leave, a new one gets through again."""
    async with counting_members(2) as ms:
        env = {
            "AMBASSADOR_UPSTREAMS": ",".join(f"127.0.0.1:{m.port}" for m in ms),
            "AMBASSADOR_MEMBER_MAX_CONNECTIONS": "2",
            "AMBASSADOR_HEALTH_CHECK": "none",
            "AMBASSADOR_CONNECT_TIMEOUT": "0.2s",
        }
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            clients = []
            greeted = refused = 0
            for _ in range(7):
                reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
                clients.append(writer)
                async with asyncio.timeout(10):
                    line = await reader.readline()
                if line == b"hello\n":
                    greeted += 1
                else:
                    refused += 1
            assert (greeted, refused) == (4, 3)
            assert [m.most for m in ms] == [2, 2] and [m.open for m in ms] == [2, 2]
            async with s.get(f"http://127.0.0.1:{amb.admin_port}/metrics") as resp:
                text = await resp.text()
            assert (
                metric_value(text, "ambassador_member_limit_refusals_total", listener="default")
                == 3
            )
            for w in clients[:2]:
                w.close()
            await wait_for(lambda: sum(m.open for m in ms) <= 2, 10.0, "two clients gone")
            reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
            async with asyncio.timeout(10):
                assert await reader.readline() == b"hello\n"
            clients.append(writer)
            assert max(m.most for m in ms) == 2
            for w in clients:
                w.close()


@pytest.mark.parametrize("tls", [False, True])
async def test_a_tcp_client_at_the_limit_waits_for_a_member_to_free_up(
    tmp_path: Path, tls: bool
) -> None:
    """tcp, one member, a limit of 1: a second client waits (counted in
    ambassador_member_limit_waits_total) and is relayed as soon as the first leaves, within the
    connect timeout; a third one that no member frees up for is closed after the connect
    timeout and counted as a refusal. The same with TLS on the listener."""
    async with counting_members(1) as (m,):
        env = one_at_a_time(m, "3s")
        ctx: ssl.SSLContext | None = None
        if tls:
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1")
            crt, key = write_leaf(cert, tmp_path, "server")
            env["AMBASSADOR_LISTEN_TLS_CERT_FILE"] = crt
            env["AMBASSADOR_LISTEN_TLS_KEY_FILE"] = key
            ctx = ssl.create_default_context()
            ca.configure_trust(ctx)
        async with ambassador(env) as amb:
            cluster = next(iter(amb.service.running.values())).cluster
            r1, w1 = await asyncio.open_connection("127.0.0.1", amb.port, ssl=ctx)
            async with asyncio.timeout(10):
                assert await r1.readline() == b"hello\n"
            r2, w2 = await asyncio.open_connection("127.0.0.1", amb.port, ssl=ctx)
            await wait_for(lambda: cluster.waits == 1, 10.0, "the second client waits")
            w1.close()
            async with asyncio.timeout(10):
                assert await r2.readline() == b"hello\n"  # relayed once the first left
            assert m.most == 1 and cluster.at_limit == 0
            loop = asyncio.get_running_loop()
            started = loop.time()
            r3, w3 = await asyncio.open_connection("127.0.0.1", amb.port, ssl=ctx)
            async with asyncio.timeout(10):
                try:
                    assert await r3.read() == b""  # closed, never relayed
                except (ConnectionResetError, ssl.SSLError):
                    pass
            assert 2.5 < loop.time() - started < 8
            assert cluster.waits == 2 and cluster.at_limit == 1 and m.total == 2
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{amb.admin_port}/metrics") as resp:
                    text = await resp.text()
            assert (
                metric_value(text, "ambassador_member_limit_waits_total", listener="default") == 2
            )
            for w in (w2, w3):
                w.close()


async def test_upstreams_shows_each_members_ramp_and_back_off() -> None:
    """/upstreams gives each member's current slow-start share and when its ramp ends (a member
    back up ramps, the other is at 1.0 with no end), and how long a Retry-After keeps a member
    out (until when, as UTC wall-clock time) with the count of such answers."""
    async with backends(2) as bs:
        env = http_env(bs, health_check="http:/health", health_fall="1", slow_start="4s")
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:

            async def members() -> dict[str, dict[str, Any]]:
                async with s.get(f"http://127.0.0.1:{amb.admin_port}/upstreams") as resp:
                    body = await resp.json()
                return {m["address"]: m for m in body["listeners"][0]["members"]}

            def wall(text: str) -> float:
                return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

            cluster = cluster_of(amb)
            b0, b1 = bs
            assert {m["ramp_share"] for m in (await members()).values()} == {1.0}
            b1.healthy = False
            await wait_for(lambda: not cluster.members[b1.addr].healthy, 10.0, "b1 down")
            b1.healthy = True
            await wait_for(lambda: cluster.members[b1.addr].healthy, 10.0, "b1 up")
            got = await members()
            assert 0.1 <= got[b1.addr]["ramp_share"] < 0.9, got[b1.addr]
            assert time.time() < wall(got[b1.addr]["ramp_until"]) < time.time() + 4.5
            assert got[b0.addr]["ramp_share"] == 1.0 and got[b0.addr]["ramp_until"] is None
            assert got[b0.addr]["backoff_until"] is None and got[b0.addr]["backoffs"] == 0
            b0.fail_with, b0.retry_after = 429, "3"
            for _ in range(20):
                async with s.get(amb.url + "/") as resp:
                    if resp.status == 429:
                        break
            else:
                raise AssertionError("no request reached b0")
            got = await members()
            assert got[b0.addr]["backoffs"] == 1
            assert time.time() + 1.5 < wall(got[b0.addr]["backoff_until"]) < time.time() + 3.5
            assert got[b1.addr]["backoff_until"] is None


async def test_retry_after_backs_a_member_off_for_that_long() -> None:
    """A member answering 429 with Retry-After: 2 passes its answer to the client, then gets
    no request for about 2 s (the other member takes them all in the first 1 s), then gets
    requests again; the back-off is counted."""
    async with backends(2) as bs:
        bs[0].fail_with, bs[0].retry_after = 429, "2"
        env = http_env(bs, health_check="none")
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            statuses = []
            for _ in range(2):
                async with s.get(amb.url + "/") as resp:
                    statuses.append(resp.status)
            backed_off = time.monotonic()
            assert sorted(statuses) == [200, 429]
            bs[0].fail_with = 0
            seen = len(bs[0].seen)
            during = await shares(s, amb.url + "/", 1.0)
            assert during["b0"] == 0 and during["b1"] >= 10, during
            assert len(bs[0].seen) == seen
            while not (await shares(s, amb.url + "/", 0.1))["b0"]:
                assert time.monotonic() - backed_off < 10.0, "b0 never got traffic again"
            assert time.monotonic() - backed_off >= 1.8
            async with s.get(f"http://127.0.0.1:{amb.admin_port}/metrics") as resp:
                text = await resp.text()
            backoffs = metric_value(
                text, "ambassador_upstream_backoffs_total", listener="default", member=bs[0].addr
            )
            assert backoffs == 1


async def test_http_requests_wait_for_a_member_under_its_limit_within_the_connect_timeout() -> None:
    """http with a limit of 1 request in flight per member and two members answering in 0.3 s:
    6 requests at once all get their answer (they wait for a member to free up), a member
    never has 2 at once; with a connect timeout shorter than an answer the ones that cannot
    get a member in time get a 503, counted."""
    async with backends(2) as bs:
        env = http_env(bs, health_check="none", member_max_connections="1", connect_timeout="5s")

        async def get(s: aiohttp.ClientSession, url: str) -> int:
            async with s.get(url + "/slow?s=0.3") as resp:
                await resp.read()
                return resp.status

        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            async with asyncio.timeout(20):
                statuses = await asyncio.gather(*(get(s, amb.url) for _ in range(6)))
            assert statuses == [200] * 6
            assert [b.slow_most for b in bs] == [1, 1]
        env["AMBASSADOR_CONNECT_TIMEOUT"] = "100ms"
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            async with asyncio.timeout(20):
                statuses = await asyncio.gather(*(get(s, amb.url) for _ in range(6)))
            assert sorted(statuses) == [200, 200, 503, 503, 503, 503]
            async with s.get(f"http://127.0.0.1:{amb.admin_port}/metrics") as resp:
                text = await resp.text()
            refused = metric_value(
                text, "ambassador_member_limit_refusals_total", listener="default"
            )
            assert refused == 4
            assert max(b.slow_most for b in bs) == 1


async def test_tcp_clients_connecting_at_once_never_exceed_the_per_member_limit() -> None:
    """20 tcp clients connecting at the same moment to two members with a limit of 3: no member
    ever has more than 3 open, 6 clients are served and the rest closed after their wait."""
    async with counting_members(2) as ms:
        env = {
            "AMBASSADOR_UPSTREAMS": ",".join(f"127.0.0.1:{m.port}" for m in ms),
            "AMBASSADOR_MEMBER_MAX_CONNECTIONS": "3",
            "AMBASSADOR_HEALTH_CHECK": "none",
            "AMBASSADOR_CONNECT_TIMEOUT": "0.2s",
        }
        async with ambassador(env) as amb:

            async def client() -> tuple[bytes, asyncio.StreamWriter]:
                reader, writer = await asyncio.open_connection("127.0.0.1", amb.port)
                async with asyncio.timeout(10):
                    return await reader.readline(), writer

            got = await asyncio.gather(*(client() for _ in range(20)))
            assert sum(line == b"hello\n" for line, _ in got) == 6
            assert [m.most for m in ms] == [3, 3]
            for _, writer in got:
                writer.close()


async def test_a_reload_applies_the_load_settings_and_a_member_it_adds_ramps(
    tmp_path: Path,
) -> None:
    """A config file reload that lifts the member limit and sets a slow start applies both to
    the running listener, and the member the reload adds starts its ramp (the first one not)."""
    async with backends(2) as bs:
        conf = tmp_path / "ambassador.json"
        port = free_port()
        api = {"listen": f"127.0.0.1:{port}", "mode": "http", "health_check": "none"}
        write_config(conf, {"api": {**api, "upstreams": [bs[0].addr], "member_max_connections": 1}})
        env = {"AMBASSADOR_CONFIG": str(conf), "AMBASSADOR_FILE_INTERVAL": "0.05s"}
        async with ambassador(env) as amb:
            cluster = cluster_of(amb)
            assert (cluster.member_limit, cluster.slow_start) == (1, 0.0)
            upstreams = [bs[0].addr, bs[1].addr]
            write_config(conf, {"api": {**api, "upstreams": upstreams, "slow_start": "2s"}})
            await wait_for(lambda: len(cluster.members) == 2, 10.0, "reload applied")
            assert (cluster.member_limit, cluster.slow_start) == (0, 2.0)
            assert cluster.members[bs[0].addr].ramp_from == 0.0
            assert cluster.members[bs[1].addr].ramp_from > 0.0
            assert cluster.ramp_until > time.monotonic()
