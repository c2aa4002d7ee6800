"""Reading JSON health documents: IETF draft, Spring Boot, MicroProfile shapes."""

from __future__ import annotations

import pytest

from sidecars.adapter.reverse import Probe, ProbeCollector, read_checks, status_value

pytestmark = pytest.mark.unit


def test_status_values() -> None:
    assert [status_value(s) for s in ("UP", "pass", " Healthy ", True)] == [1.0] * 4
    assert [status_value(s) for s in ("DOWN", "fail", "OUT_OF_SERVICE", False)] == [0.0] * 4
    assert [status_value(s) for s in ("warn", "DEGRADED")] == [0.5] * 2
    assert [status_value(s) for s in ("UNKNOWN", None, 3, "")] == [-1.0] * 4


def test_shapes() -> None:
    assert read_checks({"status": "UP", "checks": [{"name": "db", "status": "DOWN"}]}) == {
        "db": 0.0
    }
    ietf = {"checks": {"a:b": [{"status": "pass"}, {"status": "fail"}], "c": {"status": "warn"}}}
    assert read_checks(ietf) == {"a:b": 0.0, "c": 0.5}
    spring = {"components": {"x": {"status": "UP", "components": {"y": {"status": "DOWN"}}}}}
    assert read_checks(spring) == {"x": 1.0, "x.y": 0.0}
    old_spring = {"details": {"disk": {"status": "UP", "details": {"free": 1}}}}
    assert read_checks(old_spring) == {"disk": 1.0}


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
    collector = ProbeCollector("app_health")
    assert list(collector.collect()) == []
    collector.latest = Probe(True, 0.25, 200, 1.0, {"db": 0.0})
    families = {m.name: m for m in collector.collect()}
    assert families["app_health_up"].samples[0].value == 1.0
    assert families["app_health_check_status"].samples[0].labels == {"check": "db"}
