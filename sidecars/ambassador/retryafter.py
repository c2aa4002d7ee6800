"""A member's `Retry-After` (RFC 9110 10.2.3): seconds or an HTTP-date, as a bounded delay."""

from __future__ import annotations

import time

MAX_BACKOFF = 60.0  # a member cannot keep itself out longer than this per answer


def delay(value: bytes | None, now: float | None = None) -> float | None:
    """Seconds to keep the member out (at most MAX_BACKOFF), None for a missing, malformed or
    past value."""
    if not value or len(value) > 64:
        return None
    text = value.decode("latin-1").strip()
    if text.isascii() and text.isdigit():
        seconds = float(int(text[:6]))
    else:
        from email.utils import parsedate_to_datetime  # rare: the email package on demand

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds <= 0:
        return None
    return min(seconds, MAX_BACKOFF)
