"""adapter settings (`ADAPTER_*` variables or flags)."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.settings import choice, host_port


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    listen: tuple[str, int] = setting(
        "0.0.0.0:9280",
        "address the monitoring system calls",
        host_port("0.0.0.0"),
        metavar="HOST:PORT",
    )
    target: str = setting(
        "http://127.0.0.1:8080/metrics", "the app's URL the adapter reads", metavar="URL"
    )
    rules: str = setting("", "health rules: a file path, or inline rules", metavar="RULES")
    mode: str = setting(
        "health-from-metrics",
        "what the adapter translates",
        choice("health-from-metrics", "metrics-from-health", "paths"),
        metavar="MODE",
    )
