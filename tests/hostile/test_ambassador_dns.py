"""Hostile members on the network: a DNS name that answers with thousands of addresses. The
cluster keeps at most 4,096 of them, says so once, and health checks run at most 128 at once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sidecars.ambassador import health
from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.health import HealthChecker
from sidecars.ambassador.members import EjectPolicy, Member
from sidecars.ambassador.spec import Address
from tests.ambassador_support import ambassador, wait_for

pytestmark = pytest.mark.integration

HUGE = [f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 10_001)]


async def test_a_dns_answer_of_10000_addresses_keeps_4096_members(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 addresses for one name: 4,096 members, one warning over many re-resolutions."""
    resolved = 0

    async def resolve(name: str, port: int, family: str) -> list[str]:
        nonlocal resolved
        resolved += 1
        return HUGE

    env = {
        "AMBASSADOR_UPSTREAMS": "dns://many.example:6379",
        "AMBASSADOR_DNS_INTERVAL": "0.02s",
        "AMBASSADOR_HEALTH_CHECK": "none",
    }
    caplog.set_level(logging.WARNING)
    async with ambassador(env, resolve=resolve) as amb:
        cluster = amb.service.running["default"].cluster
        assert len(cluster.members) == 4096
        await wait_for(lambda: resolved >= 5, 10, "several re-resolutions")
        assert len(cluster.members) == 4096
    warnings = [r for r in caplog.records if "10000 addresses" in r.getMessage()]
    assert len(warnings) == 1


async def test_health_checks_of_a_huge_cluster_run_128_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 members, each check taking a while: every member is checked in the round, never
    more than 128 at once (each check holds a socket)."""
    running = most = checked = 0

    async def slow_probe(member: Member, check: str, limit: float, tls: object = None) -> bool:
        nonlocal running, most, checked
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.005)
        running -= 1
        checked += 1
        return True

    monkeypatch.setattr(health, "probe", slow_probe)
    cluster = Cluster("t", "round_robin", EjectPolicy(), RetryBudget(0.2))
    cluster.set_source("s", [Address(ip, 80) for ip in HUGE[:1000]])
    checker = HealthChecker(
        cluster, "tcp", interval=1, timeout=1, rise=1, fall=1, log=logging.getLogger("t")
    )
    async with asyncio.timeout(30):
        await checker.round()
    assert checked == 1000
    assert most <= 128
