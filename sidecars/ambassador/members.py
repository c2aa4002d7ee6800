"""A cluster member's state: health, passive ejection with growing time, load and counters."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sidecars.runtime.logs import utc_iso

RAMP_FLOOR = 0.1  # share of its weight a member gets as its slow start begins (Envoy's default)


def ramp_share(member: Member, now: float, span: float) -> float:
    """The share of its weight a member in its slow start of `span` seconds gets at `now`."""
    return min(1.0, max(RAMP_FLOOR, (now - member.ramp_from) / span))


def _wall(at: float, now: float) -> str:
    """A monotonic-clock time `at` as UTC wall-clock time (ISO 8601, milliseconds)."""
    return utc_iso(time.time() + (at - now))


@dataclass(slots=True)
class EjectPolicy:
    """Passive outlier detection: `failures` in a row eject for base * 2^(n-1), capped."""

    failures: int = 3
    base: float = 5.0
    cap: float = 300.0


@dataclass(eq=False, slots=True)
class Member:
    """One resolved member (IP or name, port). `active` is open connections (tcp) or requests
    in flight (http); it drives least_conn and p2c."""

    host: str
    port: int
    weight: int = 1
    source: str = "static"
    healthy: bool = True  # the active checks' verdict
    ejected_until: float = 0.0
    ejections_in_row: int = 0
    failures_in_row: int = 0
    check_fails: int = 0
    check_passes: int = 0
    active: int = 0
    current_weight: int = 0  # smooth weighted round robin state
    requests: int = 0
    ejections: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_ejected: float = 0.0
    tls_failures: Counter[str] = field(default_factory=Counter)  # handshakes failed, by reason
    tls_error: str = ""  # the last handshake's failure, "" once one passed
    tls_handshakes: int = 0
    tls_resumed: int = 0
    ramp_from: float = 0.0  # slow start: when its share began to grow (monotonic clock)
    backoffs: int = 0  # answers with Retry-After that kept it out
    backoff_until: float = 0.0  # the last Retry-After keeps it out until then (monotonic clock)

    @property
    def key(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def available(self, now: float) -> bool:
        return self.healthy and not self.ejected(now)

    def record_success(self) -> None:
        self.failures_in_row = 0

    def record_failure(self, kind: str, policy: EjectPolicy, now: float | None = None) -> bool:
        """Count an error of `kind`; True when this failure ejected the member."""
        self.errors[kind] += 1
        self.failures_in_row += 1
        now = time.monotonic() if now is None else now
        if self.failures_in_row < policy.failures or self.ejected(now):
            return False
        # A member that stayed in for a whole cap period starts again from the base time.
        if now - self.ejected_until > policy.cap:
            self.ejections_in_row = 0
        self.ejections_in_row += 1
        duration = min(policy.cap, policy.base * 2.0 ** min(self.ejections_in_row - 1, 30))
        self.last_ejected = now
        self.ejected_until = now + duration
        self.ejections += 1
        self.failures_in_row = 0
        return True

    def record_check(self, ok: bool, rise: int, fall: int) -> bool | None:
        """Feed one active check result; returns the new health when it changed."""
        if ok:
            self.check_passes, self.check_fails = self.check_passes + 1, 0
            if not self.healthy and self.check_passes >= rise:
                self.healthy = True
                self.ejected_until = 0.0  # the active check vouches for it again
                self.failures_in_row = 0
                return True
        else:
            self.check_fails, self.check_passes = self.check_fails + 1, 0
            if self.healthy and self.check_fails >= fall:
                self.healthy = False
                return False
        return None

    def snapshot(self, now: float, slow_start: float = 0.0) -> dict[str, Any]:
        """The member's state for /upstreams (`slow_start`: the cluster's ramp length)."""
        ramping = slow_start > 0 and now < self.ramp_from + slow_start
        return {
            "address": self.key,
            "weight": self.weight,
            "source": self.source,
            "healthy": self.healthy,
            "ejected": self.ejected(now),
            "ejected_for_seconds": round(max(0.0, self.ejected_until - now), 3),
            "ejections": self.ejections,
            "active": self.active,
            "requests": self.requests,
            "errors": dict(self.errors),
            "ramp_share": round(ramp_share(self, now, slow_start), 3) if ramping else 1.0,
            "ramp_until": _wall(self.ramp_from + slow_start, now) if ramping else None,
            "backoffs": self.backoffs,
            "backoff_until": _wall(self.backoff_until, now) if self.backoff_until > now else None,
            **({"tls": self._tls()} if self.tls_handshakes or self.tls_failures else {}),
        }

    def _tls(self) -> dict[str, Any]:
        return {
            "ok": not self.tls_error,
            "error": self.tls_error,
            "handshakes": self.tls_handshakes,
            "resumed": self.tls_resumed,
            "failures": dict(self.tls_failures),
        }
