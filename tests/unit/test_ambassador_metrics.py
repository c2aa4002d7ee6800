"""The latency histograms kept as plain counts expose standard Prometheus histograms: time to
a response head for http listeners, time to connect for tcp listeners, from tens of
microseconds. Member states are one series per state."""

from __future__ import annotations

import time

import pytest

from sidecars.ambassador.cluster import Cluster, RetryBudget
from sidecars.ambassador.members import EjectPolicy
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.spec import Address
from sidecars.runtime import exposition
from sidecars.runtime.metrics import Registry

pytestmark = pytest.mark.unit


def test_latency_histogram_is_cumulative_per_listener() -> None:
    registry = Registry()
    metrics = Metrics(registry, lambda: [])
    latency = metrics.latency("api", "http")
    for seconds in (0.00004, 0.0004, 0.001, 0.02, 100.0):
        latency.observe(seconds)
    assert metrics.latency("api", "http") is latency  # one histogram per listener name
    text = exposition.text(registry.collect()).decode()
    name = "ambassador_upstream_request_seconds"
    assert f'{name}_bucket{{le="2.5e-05",listener="api"}} 0.0' in text
    assert f'{name}_bucket{{le="5e-05",listener="api"}} 1.0' in text
    assert f'{name}_bucket{{le="0.0005",listener="api"}} 2.0' in text
    assert f'{name}_bucket{{le="0.001",listener="api"}} 3.0' in text  # le: bound included
    assert f'{name}_bucket{{le="0.025",listener="api"}} 4.0' in text
    assert f'{name}_bucket{{le="30.0",listener="api"}} 4.0' in text
    assert f'{name}_bucket{{le="+Inf",listener="api"}} 5.0' in text
    assert f'{name}_count{{listener="api"}} 5.0' in text
    assert f"# TYPE {name} histogram" in text


def test_tcp_listeners_time_connects_under_their_own_name() -> None:
    registry = Registry()
    metrics = Metrics(registry, lambda: [])
    metrics.latency("redis", "tcp").observe(0.00007)
    text = exposition.text(registry.collect()).decode()
    assert 'ambassador_upstream_connect_seconds_bucket{le="0.0001",listener="redis"} 1.0' in text
    assert 'ambassador_upstream_request_seconds_count{listener="redis"}' not in text
    assert "# TYPE ambassador_upstream_request_seconds histogram" in text  # shown, empty


def test_member_state_is_one_series_per_state() -> None:
    """Each member has one `ambassador_upstream_state` series per state, 1 for the one it is
    in: up, down (its active check fails) or ejected (passively, its check still up)."""
    cluster = Cluster("api", "round_robin", EjectPolicy(), RetryBudget(0.2))
    cluster.set_source("static", [Address(f"10.0.0.{i}", 80) for i in range(3)])
    up, down, ejected = cluster.members.values()
    down.healthy = False
    ejected.ejected_until = time.monotonic() + 60
    registry = Registry()
    Metrics(registry, lambda: [("tcp", cluster)])
    page = {
        (s.labels["member"], s.labels["state"]): s.value
        for family in registry.collect()
        if family.name == "ambassador_upstream_state"
        for s in family.samples
    }
    for member, now_in in ((up, "up"), (down, "down"), (ejected, "ejected")):
        for state in ("up", "down", "ejected"):
            assert page[(member.key, state)] == float(state == now_in), (member.key, state)
    healthy = registry.get_sample_value
    assert [
        healthy("ambassador_upstream_healthy", {"listener": "api", "member": m.key})
        for m in (up, down, ejected)
    ] == [1.0, 0.0, 0.0]
