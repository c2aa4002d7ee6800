"""adapter settings (`ADAPTER_*` variables or flags)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.checks import local_address, readable_file
from sidecars.runtime.settings import choice, duration, host_port, listing, size
from sidecars.runtime.urls import is_path, parse_http_url

MODES = ("health-from-metrics", "metrics-from-health", "paths")


def http_url(raw: str) -> str:
    """An absolute http(s) URL with a host (checked strictly: it becomes a request line)."""
    if parse_http_url(raw).userinfo:
        # the target is logged at start: credentials belong in ADAPTER_AUTH_FILE
        raise ValueError("expected no user:password@ in the URL (use ADAPTER_AUTH_FILE)")
    return raw.strip()


def url_path(raw: str) -> str:
    value = raw.strip()
    if not is_path(value):
        raise ValueError("expected a path starting with / of URL characters (no ?query)")
    return value


def path_pair(raw: str) -> tuple[str, str]:
    """`/served=/on/the/app`."""
    served, sep, app = raw.partition("=")
    try:
        if not sep:
            raise ValueError
        return url_path(served), url_path(app)
    except ValueError:
        raise ValueError(f"expected /path=/app/path pairs, got {raw!r}") from None


def metric_prefix(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value):
        raise ValueError("expected a metric name prefix (letters, digits, _)")
    return value


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    listen: tuple[str, int] = setting(
        "0.0.0.0:9280",
        "address the monitoring system calls",
        host_port("0.0.0.0"),
        metavar="HOST:PORT",
        check=local_address,
    )
    target: str = setting(
        "http://127.0.0.1:8080/metrics",
        "the app's URL the adapter reads (its /metrics, or its JSON health endpoint)",
        http_url,
        metavar="URL",
    )
    rules: str = setting(
        "",
        "health rules: a file path, or inline YAML/JSON (empty: target up = pass)",
        metavar="RULES",
    )
    mode: str = setting(
        "health-from-metrics",
        "health-from-metrics, metrics-from-health or paths (forwarding only)",
        choice(*MODES),
        metavar="MODE",
    )
    health_path: str = setting("/health", "path of the health answer", url_path, metavar="PATH")
    metrics_path: str = setting(
        "/metrics", "path of the gauges in metrics-from-health mode", url_path, metavar="PATH"
    )
    metric_prefix: str = setting(
        "app_health",
        "name prefix of the gauges in metrics-from-health mode",
        metric_prefix,
        metavar="NAME",
    )
    paths: tuple[tuple[str, str], ...] = setting(
        "",
        "paths forwarded to the app as they are: /served=/app/path, comma-separated",
        listing(path_pair),
        metavar="PAIRS",
    )
    cache: float = setting(
        "1s",
        "how long one read of the target answers all probes",
        duration(0.0, 3600.0),
        metavar="DURATION",
    )
    timeout: float = setting(
        "2s", "deadline for reading the target", duration(0.001, 600.0), metavar="DURATION"
    )
    max_bytes: int = setting(
        "8MiB", "largest answer read from the target", size(1024, 1 << 30), metavar="SIZE"
    )
    auth_file: str = setting(
        "",
        "file holding the Authorization value sent to the app (Bearer ...), re-read each second",
        metavar="PATH",
        check=readable_file,
    )
    ca_file: str = setting(
        "",
        "PEM file of CAs that verify an https target (empty: the system CAs)",
        metavar="PATH",
        check=readable_file,
    )
