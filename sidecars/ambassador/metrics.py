"""Prometheus metrics: event counters, latency histogram, and member state read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.tls import REASONS
from sidecars.runtime.metrics import (
    Counter,
    CounterFamily,
    Family,
    Gauge,
    GaugeFamily,
    HistogramFamily,
    Registry,
    go_float,
)

# From 25 us: a member on the same node or network answers in well under a millisecond, and a
# proxy's own share of latency is measured in tens of microseconds.
_BUCKETS = (
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10, 30,
)  # fmt: skip
# the same as floats, for the search per observation (compiled: compared as C doubles)
_UPPER: Final[tuple[float, ...]] = tuple(float(bound) for bound in _BUCKETS)
# per listener mode: what is timed, under which name
_FAMILIES = {
    "http": (
        "ambassador_upstream_request_seconds",
        "Time from sending a request to a member to its response head (http listeners)",
    ),
    "tcp": ("ambassador_upstream_connect_seconds", "Time to connect to a member (tcp listeners)"),
    "redis": (
        "ambassador_redis_reply_seconds",
        "Time from sending a command to a shard to its reply (redis listeners)",
    ),
    "memcached": (
        "ambassador_memcached_reply_seconds",
        "Time from sending a command to a shard to its reply (memcached listeners)",
    ),
}


class Latency:
    """One listener's latency histogram, kept as plain counts: an observation on the hot path
    is a search from the lowest bucket (replies come within a few buckets; a bisect of the
    tuple cost 2,400 instructions) and two additions (no lock: everything runs on the event
    loop). Observations are time.perf_counter() differences: the event loop's clock (uvloop's)
    has 1 ms steps."""

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        """`times` observations of `seconds` (commands sent together and answered together)."""
        index = 0
        for bound in _UPPER:  # the first bucket whose bound is at or above it
            if bound >= seconds:
                break
            index += 1
        counts = self.counts
        counts[index] = counts[index] + times  # (compiled: an int addition, `+=` a generic one)
        self.total += seconds * times


class LatencyCollector:
    """Every listener's Latency, under its mode's name (both families always shown)."""

    def __init__(self) -> None:
        self.by_listener: dict[tuple[str, str], Latency] = {}  # by (mode, listener name)

    def collect(self) -> Iterator[Family]:
        families = {
            mode: HistogramFamily(name, doc, labels=["listener"])
            for mode, (name, doc) in _FAMILIES.items()
        }
        bounds = [*map(go_float, _BUCKETS), "+Inf"]
        for (mode, name), latency in self.by_listener.items():
            cumulative, running = [], 0
            for bound, n in zip(bounds, latency.counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            families[mode].add_metric([name], cumulative, latency.total)
        yield from families.values()


MEMBER_STATES = ("up", "down", "ejected")
# per listener mode: what is sent to a member (a counter) and what is open to it (a gauge)
_LOAD = {
    "http": (
        ("ambassador_upstream_requests", "Requests sent to a member (http listeners)"),
        ("ambassador_upstream_in_flight", "Requests in flight to a member (http listeners)"),
    ),
    "tcp": (
        ("ambassador_upstream_connections", "Connections to a member attempted (tcp listeners)"),
        ("ambassador_upstream_open_connections", "Open or opening connections to a member (tcp)"),
    ),
    "redis": (
        ("ambassador_redis_commands", "Commands sent to a shard (redis listeners)"),
        ("ambassador_redis_in_flight", "Commands awaiting a shard's reply (redis listeners)"),
    ),
    "memcached": (
        ("ambassador_memcached_commands", "Commands sent to a shard (memcached listeners)"),
        (
            "ambassador_memcached_in_flight",
            "Commands awaiting a shard's reply (memcached listeners)",
        ),
    ),
}
Clusters = Callable[[], Iterable[tuple[str, Cluster]]]  # (listener mode, its cluster)


class MemberCollector:
    """Per member state straight from the clusters on each scrape: members that leave simply
    disappear from the output instead of leaving stale series behind."""

    def __init__(self, clusters: Clusters) -> None:
        self.clusters = clusters

    def collect(self) -> Iterator[Family]:
        labels = ["listener", "member"]
        sent = {m: CounterFamily(*_LOAD[m][0], labels=labels) for m in _LOAD}
        open_ = {m: GaugeFamily(*_LOAD[m][1], labels=labels) for m in _LOAD}
        errors = CounterFamily(
            "ambassador_upstream_errors",
            "Failures talking to a member, by kind",
            labels=[*labels, "kind"],
        )
        ejections = CounterFamily(
            "ambassador_upstream_ejections", "Passive ejections of a member", labels=labels
        )
        backoffs = CounterFamily(
            "ambassador_upstream_backoffs",
            "http: 429 or 503 answers whose Retry-After kept a member out",
            labels=labels,
        )
        at_limit = CounterFamily(
            "ambassador_member_limit_refusals",
            "Connections or requests refused because every member was at its connection limit",
            labels=["listener"],
        )
        waits = CounterFamily(
            "ambassador_member_limit_waits",
            "Connections (tcp) or requests (http) that found every member at its connection limit"
            " and waited for one to free up",
            labels=["listener"],
        )
        healthy = GaugeFamily(
            "ambassador_upstream_healthy",
            "1 when a member receives traffic (active check up and not ejected)",
            labels=labels,
        )
        state = GaugeFamily(
            "ambassador_upstream_state",
            "1 for the state a member is in: up, down (active check failing) or ejected",
            labels=[*labels, "state"],
        )
        panics = CounterFamily(
            "ambassador_panic_picks",
            "Picks made with every member down or ejected (all members tried)",
            labels=["listener"],
        )
        retries = CounterFamily(
            "ambassador_retries", "Attempts retried on another member", labels=["listener"]
        )
        tls_failures = CounterFamily(
            "ambassador_upstream_tls_handshake_failures",
            "TLS handshakes with a member that failed, by reason: " + ", ".join(REASONS),
            labels=[*labels, "reason"],
        )
        tls_done = CounterFamily(
            "ambassador_upstream_tls_handshakes",
            "TLS handshakes with a member that passed, by whether a session was resumed",
            labels=[*labels, "resumed"],
        )
        now = time.monotonic()
        for mode, cluster in self.clusters():
            for m in cluster.members.values():
                key = [cluster.name, m.key]
                sent[mode].add_metric(key, m.requests)
                open_[mode].add_metric(key, m.active)
                ejections.add_metric(key, m.ejections)
                backoffs.add_metric(key, m.backoffs)
                healthy.add_metric(key, float(m.available(now)))
                now_in = "down" if not m.healthy else "ejected" if m.ejected(now) else "up"
                for name in MEMBER_STATES:
                    state.add_metric([*key, name], float(name == now_in))
                for kind, n in m.errors.items():
                    errors.add_metric([*key, kind], n)
                for reason, n in m.tls_failures.items():
                    tls_failures.add_metric([*key, reason], n)
                if m.tls_handshakes:
                    tls_done.add_metric([*key, "true"], m.tls_resumed)
                    tls_done.add_metric([*key, "false"], m.tls_handshakes - m.tls_resumed)
            panics.add_metric([cluster.name], cluster.panics)
            retries.add_metric([cluster.name], cluster.retries)
            at_limit.add_metric([cluster.name], cluster.at_limit)
            waits.add_metric([cluster.name], cluster.waits)
        yield from (*sent.values(), *open_.values(), errors, ejections, healthy, state)
        yield from (panics, retries, tls_failures, tls_done, backoffs, at_limit, waits)


class Metrics:
    """Every ambassador metric, registered on the sidecar's own registry."""

    def __init__(self, registry: Registry, clusters: Clusters) -> None:
        registry.register(MemberCollector(clusters))
        self.latencies = LatencyCollector()
        registry.register(self.latencies)
        self.clients = Gauge(
            "ambassador_client_connections",
            "Open client connections",
            ["listener"],
            registry=registry,
        )
        self.rejected = Counter(
            "ambassador_rejected",
            "Client requests or connections refused by the ambassador itself, by reason",
            ["listener", "reason"],
            registry=registry,
        )
        self.accept_errors = Counter(
            "ambassador_accept_errors",
            "accept(2) failures (accepting then pauses), by reason: emfile, enfile, enobufs, ...",
            ["listener", "reason"],
            registry=registry,
        )
        self.spliced = Counter(
            "ambassador_spliced_connections",
            "tcp connections moved to splice(2) for bulk relaying",
            ["listener"],
            registry=registry,
        )
        self.client_tls_failures = Counter(
            "ambassador_listener_tls_handshake_failures",
            "TLS handshakes of clients on a listener that failed, by reason: timeout, closed,"
            " protocol, client_refused, no_certificate, verify_failed, expired, other",
            ["listener", "reason"],
            registry=registry,
        )
        self.client_tls_handshakes = Counter(
            "ambassador_listener_tls_handshakes",
            "TLS handshakes of clients on a listener that passed",
            ["listener"],
            registry=registry,
        )
        self.discovery = Counter(
            "ambassador_discovery",
            "DNS resolutions and member file reads, by outcome",
            ["listener", "kind", "outcome"],
            registry=registry,
        )
        self.reloads = Counter(
            "ambassador_config_reloads",
            "Config file reloads, by outcome (error: refused, the old config stays)",
            ["outcome"],
            registry=registry,
        )

    def latency(self, listener: str, mode: str) -> Latency:
        """The histogram of one listener in `mode` (http or tcp), kept across reloads under the
        same name and mode."""
        return self.latencies.by_listener.setdefault((mode, listener), Latency())
