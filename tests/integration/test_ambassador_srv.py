"""`srv://` members against a real DNS server (dnsmasq): the records' targets, ports and
weights become members, the lowest priority group with a target that resolves is used, a
change is picked up at the next interval, and a failed lookup keeps the last good members."""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.ambassador_support import ambassador, backends, wait_for
from tests.dns_support import Dnsmasq

pytestmark = pytest.mark.integration

NAME = "_http._tcp.api.test"


def records(*srv: tuple[str, int, int, int]) -> list[str]:
    """srv-host lines (target, port, priority, weight); a.test, b.test, c.test are 127.0.0.1."""
    hosts = [f"host-record={h}.test,127.0.0.1" for h in "abc"]
    return hosts + [f"srv-host={NAME},{t},{port},{prio},{w}" for t, port, prio, w in srv]


@pytest.fixture
async def dns() -> AsyncIterator[Dnsmasq]:
    server = Dnsmasq()
    try:
        yield server
    finally:
        server.stop()


def env(server: str) -> dict[str, str]:
    return {
        "AMBASSADOR_UPSTREAMS": f"srv://{NAME}",
        "AMBASSADOR_MODE": "http",
        "AMBASSADOR_DNS_SERVER": server,
        "AMBASSADOR_DNS_INTERVAL": "0.1s",
        "AMBASSADOR_HEALTH_CHECK": "none",
    }


def members(amb: object) -> dict[str, int]:
    cluster = amb.service.running["default"].cluster  # type: ignore[attr-defined]
    return {key: m.weight for key, m in cluster.members.items()}


async def shares(port: int, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                seen[await resp.text()] += 1
    return seen


async def test_srv_records_give_members_ports_and_weights(dns: Dnsmasq) -> None:
    """a.test:P0 weight 10 and b.test:P1 weight 30 at priority 10, c.test:P2 at priority 20: the
    members are P0 and P1 only, weighted 10 and 30, and traffic follows the weights (b0 gets
    about a quarter of 400 requests)."""
    async with backends(3) as bs:
        b0, b1, b2 = (b.port for b in bs)
        await dns.start(
            records(("a.test", b0, 10, 10), ("b.test", b1, 10, 30), ("c.test", b2, 20, 50)), NAME
        )
        async with ambassador(env(dns.server)) as amb:
            assert members(amb) == {f"127.0.0.1:{b0}": 10, f"127.0.0.1:{b1}": 30}
            seen = await shares(amb.port, 400)
            assert seen["b2"] == 0
            assert 60 <= seen["b0"] <= 140, seen
            assert seen["b0"] + seen["b1"] == 400


async def test_a_record_change_is_picked_up_and_a_dead_group_falls_back(dns: Dnsmasq) -> None:
    """The records change: the next resolution replaces the members (the existing change
    path: /upstreams shows them). A priority group whose only target has no address is
    skipped for the next one."""
    async with backends(2) as bs:
        b0, b1 = bs[0].port, bs[1].port
        await dns.start(records(("a.test", b0, 1, 5)), NAME)
        async with ambassador(env(dns.server)) as amb:
            assert members(amb) == {f"127.0.0.1:{b0}": 5}
            await dns.restart(records(("nowhere.test", b0, 1, 5), ("b.test", b1, 2, 0)), NAME)
            await wait_for(lambda: members(amb) == {f"127.0.0.1:{b1}": 1}, 10, "new members")
            assert (await shares(amb.port, 5)) == Counter({"b1": 5})


async def test_nxdomain_and_timeouts_keep_the_last_good_members(
    dns: Dnsmasq, caplog: pytest.LogCaptureFixture
) -> None:
    """The name disappears (NXDOMAIN), later the server stops answering at all (a socket that
    reads and never replies): the members stay, the failures are counted, and each outage is
    logged in one line however many lookups fail."""
    caplog.set_level(logging.INFO)
    async with backends(1) as bs:
        b0 = bs[0].port
        good = records(("a.test", b0, 1, 7))
        await dns.start(good, NAME)
        async with ambassador(env(dns.server)) as amb:
            expected = {f"127.0.0.1:{b0}": 7}
            assert members(amb) == expected

            def count(outcome: str) -> float:
                labels = {"listener": "default", "kind": "srv", "outcome": outcome}
                value = amb.runtime.registry.get_sample_value("ambassador_discovery_total", labels)
                return value or 0.0

            def warned() -> list[str]:
                return [
                    m for r in caplog.records if "cannot resolve srv://" in (m := r.getMessage())
                ]

            await dns.restart(
                [*records(), "srv-host=_other._tcp.test,a.test,1"], "_other._tcp.test"
            )
            await wait_for(lambda: count("error") >= 5, 10, "failed lookups")
            assert members(amb) == expected
            assert (await shares(amb.port, 3)) == Counter({"b0": 3})
            assert len(warned()) == 1 and "NXDOMAIN" in warned()[0], warned()

            await dns.restart(good, NAME)
            ok = count("success")
            await wait_for(lambda: count("success") > ok, 10, "lookups that work again")
            caplog.clear()
            dns.stop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
                hole.bind(("127.0.0.1", dns.port))
                errors = count("error")
                await wait_for(lambda: count("error") >= errors + 2, 20, "lookups timing out")
            assert members(amb) == expected
            assert len(warned()) == 1 and "timeout" in warned()[0], warned()


async def test_dns_names_are_asked_of_the_dns_server_when_set(dns: Dnsmasq) -> None:
    """With AMBASSADOR_DNS_SERVER set, a dns:// name is resolved by that server too (a.test is
    known only to dnsmasq), next to an srv:// member."""
    async with backends(2) as bs:
        b0, b1 = bs[0].port, bs[1].port
        await dns.start(records(("b.test", b1, 1, 2)), NAME)
        settings = {**env(dns.server), "AMBASSADOR_UPSTREAMS": f"dns://a.test:{b0},srv://{NAME}"}
        async with ambassador(settings) as amb:
            assert members(amb) == {f"127.0.0.1:{b0}": 1, f"127.0.0.1:{b1}": 2}
