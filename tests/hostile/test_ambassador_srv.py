"""Hostile SRV answers from a real DNS server (dnsmasq): more records and addresses than the
ambassador keeps. Members stay bounded at 4,096, said once in a warning, and re-resolution
goes on without a hang."""

from __future__ import annotations

import logging

import pytest

from tests.ambassador_support import ambassador, wait_for
from tests.dns_support import Dnsmasq

pytestmark = pytest.mark.integration

NAME = "_redis._tcp.many.test"


def settings(server: str) -> dict[str, str]:
    return {
        "AMBASSADOR_UPSTREAMS": f"srv://{NAME}",
        "AMBASSADOR_DNS_SERVER": server,
        "AMBASSADOR_DNS_INTERVAL": "0.1s",
        "AMBASSADOR_HEALTH_CHECK": "none",
    }


async def test_srv_targets_with_5000_addresses_keep_4096_members(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10 targets of 500 addresses each: 4,096 members, one warning however many times the
    name is re-resolved."""
    lines = [
        f"host-record=t{t}.test,127.{t + 1}.{i >> 8}.{i & 255 or 1}"
        for t in range(10)
        for i in range(1, 501)
    ]
    lines += [f"srv-host={NAME},t{t}.test,6379,1,10" for t in range(10)]
    caplog.set_level(logging.WARNING)
    dns = Dnsmasq()
    try:
        await dns.start(lines, NAME)
        async with ambassador(settings(dns.server)) as amb:
            running = amb.service.running["default"]
            assert len(running.cluster.members) == 4096

            def resolved() -> float:
                labels = {"listener": "default", "kind": "srv", "outcome": "success"}
                value = amb.runtime.registry.get_sample_value("ambassador_discovery_total", labels)
                return value or 0.0

            await wait_for(lambda: resolved() >= 3, 90, "several re-resolutions")
            assert len(running.cluster.members) == 4096
    finally:
        dns.stop()
    warnings = [r.getMessage() for r in caplog.records if "more than 4096" in r.getMessage()]
    assert len(warnings) == 1, warnings


async def test_an_answer_of_5000_srv_records_is_bounded() -> None:
    """5,000 SRV records (more than fit one DNS message): whatever part arrives becomes at most
    4,096 members, each on its record's port; the lookups neither fail nor hang."""
    lines = ["host-record=a.test,127.0.0.1"]
    lines += [f"srv-host={NAME},a.test,{10000 + i},1,1" for i in range(5000)]
    dns = Dnsmasq()
    try:
        await dns.start(lines, NAME)
        async with ambassador(settings(dns.server)) as amb:
            members = amb.service.running["default"].cluster.members
            assert 0 < len(members) <= 4096
            assert all(10000 <= m.port < 15000 for m in members.values())
    finally:
        dns.stop()
