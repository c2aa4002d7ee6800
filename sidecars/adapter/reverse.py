"""Metrics from health: read the app's JSON health endpoint and expose it as Prometheus gauges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecars.adapter.appclient import AppClient
from sidecars.adapter.fetch import FetchError, fetch
from sidecars.adapter.metrics import AdapterMetrics
from sidecars.runtime.metrics import Family, GaugeFamily

ACCEPT = "application/health+json, application/json;q=0.9, */*;q=0.1"
# The states, one series each (1 for the state it is in, 0 for the others), worst known last.
STATES = ("ok", "degraded", "failing", "unknown")
UNKNOWN = "unknown"
_RANK = {"ok": 0, "degraded": 1, "failing": 2}
# Health vocabularies (IETF draft, Spring Boot, MicroProfile, traffic lights) -> a state.
STATUS_STATES = {
    **dict.fromkeys(("pass", "ok", "up", "healthy", "green", "true", "serving"), "ok"),
    **dict.fromkeys(("warn", "warning", "degraded", "yellow", "amber"), "degraded"),
    **dict.fromkeys(("fail", "down", "error", "unhealthy", "red", "false", "critical"), "failing"),
    **dict.fromkeys(("out_of_service", "not_serving"), "failing"),
}
_MAX_CHECKS = 500
_MAX_DEPTH = 4


@dataclass(slots=True)
class Probe:
    """One read of the health endpoint."""

    up: bool
    seconds: float
    http_status: int = 0
    status: str = UNKNOWN
    checks: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def status_state(raw: Any) -> str:
    """A health status (string or boolean) as one of STATES."""
    if isinstance(raw, bool):
        return "ok" if raw else "failing"
    if isinstance(raw, str):
        return STATUS_STATES.get(raw.strip().lower(), UNKNOWN)
    return UNKNOWN


def read_checks(doc: dict[str, Any]) -> dict[str, str]:
    """Per-check states from the IETF draft, Spring Boot or MicroProfile shapes."""
    out: dict[str, str] = {}
    checks = doc.get("checks")
    if isinstance(checks, dict):  # IETF draft: {"name": [{"status": ...}, ...]}
        for name, entries in checks.items():
            items = entries if isinstance(entries, list) else [entries]
            states = [status_state(e.get("status")) for e in items if isinstance(e, dict)]
            known = [v for v in states if v != UNKNOWN]
            out[str(name)] = max(known, key=_RANK.__getitem__) if known else UNKNOWN
    elif isinstance(checks, list):  # MicroProfile: [{"name": ..., "status": ...}]
        for entry in checks:
            if isinstance(entry, dict) and "name" in entry:
                out[str(entry["name"])] = status_state(entry.get("status"))
    _components(doc, "", out, 0)
    return dict(list(out.items())[:_MAX_CHECKS])


def read_health(body: bytes) -> tuple[str, dict[str, str]] | None:
    """(overall status, per-check statuses) from a health body; None when it is not a JSON
    object with a `status`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "status" not in doc:
        return None
    return status_state(doc["status"]), read_checks(doc)


def _components(node: dict[str, Any], prefix: str, out: dict[str, str], depth: int) -> None:
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
                out[full] = status_state(child["status"])
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


class ProbeCollector:
    """Turns the latest Probe into gauges at collect() time (const metrics, no state). A
    state is one series per possible state, 1 for the one it is in (as kube-state-metrics
    does), so that an alert on `{state="failing"} == 1` or `{state="ok"} == 0` misses none."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.latest: Probe | None = None

    def collect(self) -> Iterator[Family]:
        probe, p = self.latest, self.prefix
        if probe is None:
            return
        yield _gauge(f"{p}_up", "1 if the health endpoint answered a JSON status", probe.up)
        yield _gauge(f"{p}_response_seconds", "Time the health endpoint took", probe.seconds)
        yield _gauge(f"{p}_http_status", "HTTP status of the health endpoint", probe.http_status)
        overall = GaugeFamily(
            f"{p}_state",
            "Overall health, 1 for the state it is in: ok, degraded, failing, unknown (or unread)",
            labels=["state"],
        )
        for state in STATES:
            overall.add_metric([state], float(state == probe.status))
        yield overall
        checks = GaugeFamily(
            f"{p}_check_state",
            "Health per check, 1 for the state it is in: ok, degraded, failing, unknown",
            labels=["check", "state"],
        )
        for name, status in probe.checks.items():
            for state in STATES:
                checks.add_metric([name, state], float(state == status))
        yield checks


def _gauge(name: str, doc: str, value: float) -> GaugeFamily:
    return GaugeFamily(name, doc, value=float(value))
