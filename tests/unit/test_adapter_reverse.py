"""Reading JSON health documents: IETF draft, Spring Boot, MicroProfile shapes."""

from __future__ import annotations

import pytest

from sidecars.adapter.reverse import Probe, ProbeCollector, read_checks, status_state

pytestmark = pytest.mark.unit


def test_status_states() -> None:
    assert [status_state(s) for s in ("UP", "pass", " Healthy ", True)] == ["ok"] * 4
    assert [status_state(s) for s in ("DOWN", "fail", "OUT_OF_SERVICE", False)] == ["failing"] * 4
    assert [status_state(s) for s in ("warn", "DEGRADED")] == ["degraded"] * 2
    assert [status_state(s) for s in ("UNKNOWN", None, 3, "")] == ["unknown"] * 4


def test_shapes() -> None:
    assert read_checks({"status": "UP", "checks": [{"name": "db", "status": "DOWN"}]}) == {
        "db": "failing"
    }
    ietf = {"checks": {"a:b": [{"status": "pass"}, {"status": "fail"}], "c": {"status": "warn"}}}
    assert read_checks(ietf) == {"a:b": "failing", "c": "degraded"}  # the worst entry
    spring = {"components": {"x": {"status": "UP", "components": {"y": {"status": "DOWN"}}}}}
    assert read_checks(spring) == {"x": "ok", "x.y": "failing"}
    old_spring = {"details": {"disk": {"status": "UP", "details": {"free": 1}}}}
    assert read_checks(old_spring) == {"disk": "ok"}


def test_nesting_and_count_are_bounded() -> None:
    deep: dict[str, object] = {"status": "UP"}
    node = deep
    for i in range(10):
        child: dict[str, object] = {"status": "UP"}
        node["components"] = {f"c{i}": child}
        node = child
    assert len(read_checks(deep)) == 4
    many = {"checks": {f"k{i}": {"status": "pass"} for i in range(2000)}}
    assert len(read_checks(many)) == 500


def test_collector_gauges() -> None:
    """States are one series per state, 1 for the state it is in and 0 for the others."""
    collector = ProbeCollector("app_health")
    assert list(collector.collect()) == []
    collector.latest = Probe(True, 0.25, 200, "ok", {"db": "failing"})
    families = {m.name: m for m in collector.collect()}
    assert families["app_health_up"].samples[0].value == 1.0
    overall = {s.labels["state"]: s.value for s in families["app_health_state"].samples}
    assert overall == {"ok": 1.0, "degraded": 0.0, "failing": 0.0, "unknown": 0.0}
    checks = {tuple(s.labels.values()): s.value for s in families["app_health_check_state"].samples}
    assert checks == {
        ("db", "ok"): 0.0,
        ("db", "degraded"): 0.0,
        ("db", "failing"): 1.0,
        ("db", "unknown"): 0.0,
    }
