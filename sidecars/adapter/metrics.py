"""The adapter's own metrics, served on the admin port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class AdapterMetrics:
    """Scrapes of the target, their failures by reason, rule outcomes, requests served."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.scrapes = Counter(
            "adapter_scrapes_total",
            "Reads of the target, by result (ok or the reason it failed)",
            ["result"],
            registry=registry,
        )
        self.scrape_seconds = Histogram(
            "adapter_scrape_seconds",
            "Time to read and parse the target",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.rule_outcomes = Counter(
            "adapter_rule_outcomes_total",
            "Rule evaluations, by rule and status (pass, warn, fail)",
            ["rule", "status"],
            registry=registry,
        )
        self.requests = Counter(
            "adapter_requests_total",
            "Requests answered on the service port, by route and HTTP status",
            ["route", "code"],
            registry=registry,
        )
