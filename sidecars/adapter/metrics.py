"""The adapter's own metrics, served on the admin port."""

from __future__ import annotations

from collections.abc import Iterator

from sidecars.runtime.metrics import Counter, Family, Histogram, Registry


class Tally:
    """Request counts kept as plain ints on the hot path (a Counter's inc() takes a lock and
    several calls) and folded into the Counter when the registry is read. Register it before
    the Counter: it yields nothing, it only brings the Counter up to date."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._cells: dict[tuple[str, str], list[int]] = {}

    def cell(self, route: str, code: str) -> list[int]:
        """A one-item list to add 1 to per request (`cell[0] += 1`)."""
        cell = self._cells.get((route, code))
        if cell is None:
            cell = self._cells[(route, code)] = [0]
            self.counter.labels(route, code)  # the series shows up at 0 from the start
        return cell

    def collect(self) -> Iterator[Family]:
        for (route, code), cell in self._cells.items():
            if cell[0]:
                count, cell[0] = cell[0], 0
                self.counter.labels(route, code).inc(count)
        return iter(())


class AdapterMetrics:
    """Scrapes of the target, their failures by reason, rule outcomes, requests served."""

    def __init__(self, registry: Registry) -> None:
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
            # an app in the pod answers in about a millisecond; a read that times out takes
            # ADAPTER_TIMEOUT (2 s by default)
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
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
            registry=None,
        )
        self.tally = Tally(self.requests)
        registry.register(self.tally)  # first, so a scrape sees the counts folded in
        registry.register(self.requests)
