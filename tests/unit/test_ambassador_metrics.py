"""The latency histogram kept as plain counts exposes a standard Prometheus histogram."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecars.ambassador.metrics import Metrics

pytestmark = pytest.mark.unit


def test_latency_histogram_is_cumulative_per_listener() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, lambda: [])
    latency = metrics.latency("api")
    for seconds in (0.0004, 0.001, 0.02, 100.0):
        latency.observe(seconds)
    assert metrics.latency("api") is latency  # one histogram per listener name
    text = generate_latest(registry).decode()
    name = "ambassador_upstream_request_seconds"
    assert f'{name}_bucket{{le="0.0005",listener="api"}} 1.0' in text
    assert f'{name}_bucket{{le="0.001",listener="api"}} 2.0' in text  # le: bound included
    assert f'{name}_bucket{{le="0.025",listener="api"}} 3.0' in text
    assert f'{name}_bucket{{le="30.0",listener="api"}} 3.0' in text
    assert f'{name}_bucket{{le="+Inf",listener="api"}} 4.0' in text
    assert f'{name}_count{{listener="api"}} 4.0' in text
    assert f"# TYPE {name} histogram" in text
