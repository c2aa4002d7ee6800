"""The adapter's reading of an app's health JSON: a state and per-check states among the known
ones, at most the check limit, or None for a body that is not health JSON; never raises."""

from __future__ import annotations

from sidecars.adapter import reverse

MAX_LEN = 8192
_SCALE = set(reverse.STATES)


def fuzz(data: bytes) -> None:
    read = reverse.read_health(data)
    if read is None:
        return
    status, checks = read
    assert status in _SCALE, status
    assert len(checks) <= reverse._MAX_CHECKS
    assert all(isinstance(k, str) and v in _SCALE for k, v in checks.items()), checks
