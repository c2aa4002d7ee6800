"""Hostile Retry-After values from an http member: a member cannot keep itself out longer than
60 s, and a malformed, negative or past value keeps it out not at all; the answer always reaches
the client and the ambassador keeps serving."""

from __future__ import annotations

import time

import aiohttp
import pytest

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.retryafter import MAX_BACKOFF
from tests.ambassador_support import ambassador, backends
from tests.integration.test_ambassador_http import http_env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("value", "kept_out"),
    [
        ("99999999999999999999999999", True),
        ("Fri, 31 Dec 9999 23:59:59 GMT", True),
        ("-1", False),
        ("1.5", False),
        ("0", False),
        ("Thu, 01 Jan 1970 00:00:00 GMT", False),
        ("Mon, 99 Foo 2026 25:61:61 GMT", False),
        ("9" * 8000, False),  # too long to be read: not a back-off
        ("soon, please", False),
    ],
)
async def test_retry_after_values_are_bounded_or_ignored(value: str, kept_out: bool) -> None:
    async with backends(2) as bs:
        bs[0].fail_with, bs[0].retry_after = 429, value
        env = http_env(bs, health_check="none")
        async with ambassador(env) as amb, aiohttp.ClientSession() as s:
            (running,) = amb.service.running.values()
            cluster: Cluster = running.cluster
            member = cluster.members[bs[0].addr]
            statuses = []
            for _ in range(4):
                async with s.get(amb.url + "/") as resp:
                    await resp.read()
                    statuses.append(resp.status)
            assert 429 in statuses and 200 in statuses
            left = member.ejected_until - time.monotonic()
            if kept_out:
                assert 0 < left <= MAX_BACKOFF and member.backoffs == 1
                assert statuses.count(429) == 1
            else:
                assert left <= 0 and member.backoffs == 0
                assert statuses.count(429) == 2
