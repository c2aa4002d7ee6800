"""warloader's metrics and the periodic progress lines for long loads."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sidecars.runtime.metrics import Counter, Gauge, Histogram, Registry

if TYPE_CHECKING:
    from sidecars.warloader.copier import Progress

OUTCOMES = (
    "installed",
    "unchanged",
    "source_unavailable",
    "digest_mismatch",
    "unsafe_archive",
    "destination_not_writable",
    "bad_configuration",
    "failure",
)


class Metrics:
    """Every warloader metric, on the sidecar's own registry."""

    def __init__(self, registry: Registry) -> None:
        self.artifacts = Counter(
            "warloader_artifacts_total",
            "Sources processed, by outcome (installed, unchanged, or the failure kind)",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.artifacts.labels(outcome)
        self.bytes = Counter(
            "warloader_bytes_total",
            "Bytes copied, downloaded or unpacked into the destination",
            registry=registry,
        )
        self.seconds = Histogram(
            "warloader_load_seconds",
            "Time to process one source, installed or unchanged",
            # from a source found unchanged (about a millisecond) to a download at its
            # deadline (WARLOADER_DOWNLOAD_DEADLINE, 1 h by default)
            buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300, 900, 3600),
            registry=registry,
        )
        self.last_install = Gauge(
            "warloader_last_install_timestamp_seconds",
            "Unix time of the last successful install of new content",
            registry=registry,
        )


class ProgressLog:
    """Loads in flight; a loop logs each one that has run longer than `interval`."""

    def __init__(self, log: logging.Logger, interval: float) -> None:
        self.log, self.interval = log, interval
        self.active: set[Progress] = set()

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set():
            try:
                async with asyncio.timeout(self.interval):
                    await done.wait()
            except TimeoutError:
                self.report()

    def report(self) -> None:
        now = time.monotonic()
        for p in sorted(self.active, key=lambda p: p.label):
            if now - p.started < self.interval:
                continue
            total = f" of {p.total}" if p.total else ""
            self.log.info(
                "loading %s: %d%s bytes at %.1f MB/s",
                p.label,
                p.done,
                total,
                p.rate() / 1e6,
                extra={"source": p.label, "bytes": p.done, "total": p.total, "rate": p.rate()},
            )
