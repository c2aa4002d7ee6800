"""logshipper settings (`LOGSHIPPER_*` variables or flags)."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.settings import listing


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    paths: tuple[str, ...] = setting(
        "/var/log/app/*.log",
        "comma-separated globs of the log files to ship",
        listing(str),
        metavar="GLOBS",
    )
    es_hosts: tuple[str, ...] = setting(
        "http://127.0.0.1:9200",
        "comma-separated Elasticsearch URLs (failover in order)",
        listing(str),
        metavar="URLS",
    )
    index: str = setting(
        "logs-app-%Y.%m.%d",
        "index name, date pattern (from the record time) or data stream",
        metavar="INDEX",
    )
    state_dir: str = setting(
        "/var/lib/logshipper", "directory for checkpoints and the dead-letter file", metavar="DIR"
    )
