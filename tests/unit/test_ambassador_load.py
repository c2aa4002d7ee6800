"""Unit tests: slow start weights, the per-member limit and Retry-After parsing."""

from __future__ import annotations

import time
from collections import Counter
from email.utils import formatdate

import pytest

from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.members import EjectPolicy, Member
from sidecars.ambassador.retryafter import MAX_BACKOFF, delay
from sidecars.ambassador.spec import Address
from sidecars.runtime import ConfigError
from tests.unit.test_ambassador_logic import config

pytestmark = pytest.mark.unit


def cluster(n: int, policy: str = "round_robin") -> Cluster:
    c = Cluster("c", policy, EjectPolicy(), RetryBudget(1.0))
    c.set_source("static", [Address("127.0.0.1", 1000 + i, 1) for i in range(n)])
    c.primed = True  # as discovery's first pass leaves it: members added from now on ramp
    return c


def test_a_member_at_its_limit_is_skipped_and_all_at_it_refuse() -> None:
    """With a limit of 2, a member with 2 active is never picked; with every member at the
    limit, pick gives None and says so (no panic onto members that are down)."""
    c = cluster(3)
    c.set_load(0.0, 2)
    a, b, d = c.order
    a.active = 2
    assert {id(c.pick()) for _ in range(30)} == {id(b), id(d)}
    b.active = d.active = 2
    assert c.pick() is None and c.full and c.panics == 0
    d.active = 1
    assert c.pick() is d


def test_slow_start_share_grows_from_the_floor() -> None:
    """A member that joins with a 10 s slow start gets about a tenth of its share at first,
    about half halfway, and its full share once the ramp is over."""
    for policy in ("round_robin", "least_conn", "p2c"):
        c = cluster(1, policy)
        c.set_load(10.0, 0)
        c.set_source("static", [Address("127.0.0.1", 1000, 1), Address("127.0.0.1", 2000, 1)])
        new = c.members["127.0.0.1:2000"]
        assert new.ramp_from > 0

        def share(at: float, c: Cluster = c, new: Member = new) -> float:
            new.ramp_from = time.monotonic() - at
            got = Counter(c.pick().port for _ in range(4000))  # type: ignore[union-attr]
            return got[2000] / 4000

        assert share(0.0) < 0.2, policy
        assert 0.25 < share(5.0) < 0.45, policy
        new.ramp_from, c.ramp_until = time.monotonic() - 20.0, 0.0
        assert 0.4 < share(20.0) < 0.6, policy


def test_members_of_the_first_resolution_and_without_slow_start_do_not_ramp() -> None:
    """The first members start at full share; with slow start off nothing ramps."""
    c = Cluster("c", "round_robin", EjectPolicy(), RetryBudget(1.0))
    c.set_load(10.0, 0)
    c.set_source("static", [Address("127.0.0.1", 1000, 1)])
    assert c.order[0].ramp_from == 0.0 and c.careful_until == 0.0
    off = cluster(1)
    off.set_source("static", [Address("127.0.0.1", 1000, 1), Address("127.0.0.1", 2000, 1)])
    assert off.careful_until == 0.0


def test_an_ejected_member_ramps_from_the_end_of_its_ejection() -> None:
    c = cluster(2)
    c.set_load(5.0, 0)
    m = c.order[0]
    for _ in range(3):
        c.failed(m, "connect")
    assert m.ejected_until > time.monotonic()
    assert m.ramp_from == m.ejected_until and c.ramp_until == m.ejected_until + 5.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"5", 5.0),
        (b" 2 ", 2.0),
        (b"3600", MAX_BACKOFF),
        (b"99999999999999999999", MAX_BACKOFF),
        (b"0", None),
        (b"-1", None),
        (b"soon", None),
        (b"", None),
        (None, None),
        (b"Mon, 32 Foo 2026 99:00:00 GMT", None),
        (b"x" * 100, None),
        (b"\xb2", None),  # a digit to str.isdigit once decoded, not to int()
        (b"\xd9\xa3", None),
    ],
)
def test_retry_after_values(raw: bytes | None, expected: float | None) -> None:
    assert delay(raw) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    assert delay(formatdate(now + 10, usegmt=True).encode(), now) == pytest.approx(10.0)
    assert delay(formatdate(now - 10, usegmt=True).encode(), now) is None


def test_a_back_off_keeps_the_member_out_and_is_counted() -> None:
    c = cluster(2)
    m = c.order[0]
    c.back_off(m, 30.0)
    assert m.backoffs == 1 and not m.available(time.monotonic())
    assert all(c.pick() is c.order[1] for _ in range(10))


@pytest.mark.parametrize(
    ("name", "value"),
    [("member_max_connections", "-1"), ("slow_start", "2 days"), ("slow_start", "5h")],
)
def test_impossible_load_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"AMBASSADOR_{name.upper()}"):
        config(upstreams="127.0.0.1:1", **{name: value})
