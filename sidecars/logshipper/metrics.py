"""The logshipper's Prometheus metrics, registered on the sidecar's own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from sidecars.runtime.metrics import Counter, Family, Gauge, GaugeFamily, Histogram, Registry

LagSource = Callable[[], Iterable[tuple[str, int]]]
MAX_REASONS = 64  # distinct reason labels an answer from Elasticsearch can make; then "other"


class _LagCollector:
    """Per file, bytes not yet delivered (size minus checkpoint), read at scrape time."""

    def __init__(self, source: LagSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Family]:
        family = GaugeFamily(
            "logshipper_file_lag_bytes",
            "Bytes of a file not yet acknowledged by Elasticsearch (size minus checkpoint)",
            labels=["path"],
        )
        for path, lag in self.source():
            family.add_metric([path], lag)
        yield family


class Metrics:
    """Every metric the logshipper exports."""

    def __init__(self, registry: Registry) -> None:
        r = registry
        self._reasons: set[str] = set()
        self.lines_read = Counter("logshipper_lines_read", "Lines read from files", registry=r)
        self.bytes_read = Counter("logshipper_read_bytes", "Bytes read from files", registry=r)
        self.delivered = Counter(
            "logshipper_documents_delivered", "Documents Elasticsearch acknowledged", registry=r
        )
        self.retried = Counter(
            "logshipper_documents_retried",
            "Documents sent again after a retryable failure",
            ["reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "logshipper_documents_dead_lettered",
            "Documents refused for good and written to the dead-letter file",
            ["reason"],
            registry=r,
        )
        self.dead_letter_index = Counter(
            "logshipper_dead_letter_index_documents",
            "Dead letters copied to the dead-letter index, by result (indexed, refused, failed)",
            ["result"],
            registry=r,
        )
        self.bulk_seconds = Histogram(
            "logshipper_bulk_seconds",
            "Latency of bulk requests",
            # a node nearby answers a small bulk in a few ms; a bulk that times out
            # (LOGSHIPPER_ES_TIMEOUT, 30 s by default) is seen near its timeout
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
            registry=r,
        )
        self.bulk_errors = Counter(
            "logshipper_bulk_errors",
            "Bulk requests that failed as a whole, by reason",
            ["reason"],
            registry=r,
        )
        self.queue_bytes = Gauge(
            "logshipper_queue_bytes", "Bytes of documents read and not yet resolved", registry=r
        )
        self.file_errors = Counter(
            "logshipper_file_errors", "Problems with log files, by reason", ["reason"], registry=r
        )
        self.files_tracked = Gauge("logshipper_files_tracked", "Files followed", registry=r)
        self.files_open = Gauge("logshipper_files_open", "Files held open", registry=r)
        self.files_waiting = Gauge(
            "logshipper_files_waiting",
            "Matching files not followed because LOGSHIPPER_MAX_FILES are followed already",
            registry=r,
        )
        self.checkpoint_errors = Counter(
            "logshipper_checkpoint_errors", "Failed checkpoint writes", registry=r
        )

    def reason(self, value: str) -> str:
        """`value` as a reason label, or "other" once MAX_REASONS distinct ones were used:
        the reasons come from Elasticsearch's answers, and each one is a series kept for
        good."""
        if value in self._reasons:
            return value
        if len(self._reasons) >= MAX_REASONS:
            return "other"
        self._reasons.add(value)
        return value

    def lag_source(self, registry: Registry, source: LagSource) -> None:
        registry.register(_LagCollector(source))
