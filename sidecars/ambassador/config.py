"""ambassador settings (`AMBASSADOR_*` variables or flags)."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.settings import choice, host_port, listing


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    listen: tuple[str, int] = setting(
        "127.0.0.1:7000",
        "address the app connects to (pod-local by default)",
        host_port("127.0.0.1"),
        metavar="HOST:PORT",
    )
    upstreams: tuple[str, ...] = setting(
        "",
        "comma-separated members: host:port, dns://name:port or file://path",
        listing(str),
        metavar="MEMBERS",
    )
    mode: str = setting("tcp", "proxy raw TCP or HTTP/1.1", choice("tcp", "http"), metavar="MODE")
    policy: str = setting(
        "round_robin",
        "how a member is chosen",
        choice("round_robin", "least_conn", "p2c", "hash"),
        metavar="POLICY",
    )
