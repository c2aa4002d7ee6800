"""Metrics from health: read the app's JSON health endpoint and expose it as Prometheus gauges."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecars.adapter.appclient import AppClient
from sidecars.adapter.fetch import FetchError, fetch
from sidecars.adapter.metrics import AdapterMetrics

ACCEPT = "application/health+json, application/json;q=0.9, */*;q=0.1"
# Health vocabularies (IETF draft, Spring Boot, MicroProfile, traffic lights) -> one number.
STATUS_VALUES = {
    **dict.fromkeys(("pass", "ok", "up", "healthy", "green", "true", "serving"), 1.0),
    **dict.fromkeys(("warn", "warning", "degraded", "yellow", "amber"), 0.5),
    **dict.fromkeys(("fail", "down", "error", "unhealthy", "red", "false", "critical"), 0.0),
    **dict.fromkeys(("out_of_service", "not_serving"), 0.0),
}
UNKNOWN = -1.0
_MAX_CHECKS = 500
_MAX_DEPTH = 4


@dataclass(slots=True)
class Probe:
    """One read of the health endpoint."""

    up: bool
    seconds: float
    http_status: int = 0
    status: float = UNKNOWN
    checks: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def status_value(raw: Any) -> float:
    """A health status (string or boolean) as 1 (healthy), 0.5 (degraded), 0, or -1 (unknown)."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, str):
        return STATUS_VALUES.get(raw.strip().lower(), UNKNOWN)
    return UNKNOWN


def read_checks(doc: dict[str, Any]) -> dict[str, float]:
    """Per-check statuses from the IETF draft, Spring Boot or MicroProfile shapes."""
    out: dict[str, float] = {}
    checks = doc.get("checks")
    if isinstance(checks, dict):  # IETF draft: {"name": [{"status": ...}, ...]}
        for name, entries in checks.items():
            items = entries if isinstance(entries, list) else [entries]
            values = [status_value(e.get("status")) for e in items if isinstance(e, dict)]
            known = [v for v in values if v != UNKNOWN]
            out[str(name)] = min(known) if known else UNKNOWN
    elif isinstance(checks, list):  # MicroProfile: [{"name": ..., "status": ...}]
        for entry in checks:
            if isinstance(entry, dict) and "name" in entry:
                out[str(entry["name"])] = status_value(entry.get("status"))
    _components(doc, "", out, 0)
    return dict(list(out.items())[:_MAX_CHECKS])


def read_health(body: bytes) -> tuple[float, dict[str, float]] | None:
    """(overall status, per-check statuses) from a health body; None when it is not a JSON
    object with a `status`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "status" not in doc:
        return None
    return status_value(doc["status"]), read_checks(doc)


def _components(node: dict[str, Any], prefix: str, out: dict[str, float], depth: int) -> None:
    """Spring Boot: {"components": {"db": {"status": "UP", "components": {...}}}} (or details)."""
    if depth >= _MAX_DEPTH or len(out) >= _MAX_CHECKS:
        return
    for key in ("components", "details"):
        children = node.get(key)
        if not isinstance(children, dict):
            continue
        for name, child in children.items():
            if isinstance(child, dict) and "status" in child:
                full = f"{prefix}{name}"
                out[full] = status_value(child["status"])
                _components(child, full + ".", out, depth + 1)


class HealthProbe:
    """Reads the endpoint once per call; wrap it in a SingleFlight for the cache."""

    def __init__(
        self,
        client: AppClient,
        path: str,
        deadline: float,
        max_bytes: int,
        metrics: AdapterMetrics,
    ) -> None:
        self.client, self.path, self.deadline, self.max_bytes = client, path, deadline, max_bytes
        self.metrics = metrics

    async def probe(self) -> Probe:
        started = time.monotonic()
        try:
            got = await fetch(self.client, self.path, self.deadline, self.max_bytes, ACCEPT)
        except FetchError as exc:
            self.metrics.scrapes.labels(exc.reason).inc()
            return Probe(False, self.deadline if exc.reason == "timeout" else 0.0, reason=str(exc))
        finally:
            self.metrics.scrape_seconds.observe(time.monotonic() - started)
        read = read_health(got.body)
        if read is None:
            self.metrics.scrapes.labels("not_health_json").inc()
            reason = f"HTTP {got.status}: the body is not a JSON object with a status"
            return Probe(False, got.seconds, got.status, reason=reason)
        self.metrics.scrapes.labels("ok").inc()
        return Probe(True, got.seconds, got.status, *read)


class ProbeCollector(Collector):
    """Turns the latest Probe into gauges at collect() time (const metrics, no state)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.latest: Probe | None = None

    def collect(self) -> Iterator[Metric]:
        probe, p = self.latest, self.prefix
        if probe is None:
            return
        yield _gauge(f"{p}_up", "1 if the health endpoint answered a JSON status", probe.up)
        yield _gauge(f"{p}_response_seconds", "Time the health endpoint took", probe.seconds)
        yield _gauge(f"{p}_http_status", "HTTP status of the health endpoint", probe.http_status)
        doc = "Overall status: 1 healthy, 0.5 degraded, 0 unhealthy, -1 unknown or unread"
        yield _gauge(f"{p}_status", doc, probe.status)
        checks = GaugeMetricFamily(
            f"{p}_check_status",
            "Status per check: 1 healthy, 0.5 degraded, 0 unhealthy, -1 unknown",
            labels=["check"],
        )
        for name, value in probe.checks.items():
            checks.add_metric([name], value)
        yield checks


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value) if math.isfinite(value) else UNKNOWN)
