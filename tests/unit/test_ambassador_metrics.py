"""The latency histograms kept as plain counts expose standard Prometheus histograms: time to
a response head for http listeners, time to connect for tcp listeners, from tens of
microseconds."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecars.ambassador.metrics import Metrics

pytestmark = pytest.mark.unit


def test_latency_histogram_is_cumulative_per_listener() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, lambda: [])
    latency = metrics.latency("api", "http")
    for seconds in (0.00004, 0.0004, 0.001, 0.02, 100.0):
        latency.observe(seconds)
    assert metrics.latency("api", "http") is latency  # one histogram per listener name
    text = generate_latest(registry).decode()
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
    registry = CollectorRegistry()
    metrics = Metrics(registry, lambda: [])
    metrics.latency("redis", "tcp").observe(0.00007)
    text = generate_latest(registry).decode()
    assert 'ambassador_upstream_connect_seconds_bucket{le="0.0001",listener="redis"} 1.0' in text
    assert 'ambassador_upstream_request_seconds_count{listener="redis"}' not in text
    assert "# TYPE ambassador_upstream_request_seconds histogram" in text  # shown, empty
