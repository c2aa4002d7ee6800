"""JSON-lines logging on stderr: one object per record, with the sidecar's name and extra fields."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra=` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def utc_iso(epoch: float) -> str:
    """A Unix time as UTC ISO 8601 with milliseconds (`2026-01-02T03:04:05.678Z`), without
    `datetime` (0.1-0.2 MiB more for a sidecar that needs it nowhere else)."""
    whole = int(epoch // 1)
    micros = round((epoch - whole) * 1_000_000)  # as datetime rounds, then cut to milliseconds
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{micros // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "sidecar", "logger", "msg", ...fields}`."""

    def __init__(self, sidecar: str) -> None:
        super().__init__()
        self.sidecar = sidecar

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": utc_iso(record.created),
            "level": record.levelname.lower(),
            "sidecar": self.sidecar,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


@dataclass(slots=True)
class _Window:
    start: float
    passed: int = 0
    held: int = 0


_Key = tuple[str, int, str]
_MAX_KEYS = 4096  # distinct templates tracked at once; beyond that lines pass untracked


class RateLimit(logging.Filter):
    """The same logger, level and message template passes at most `burst` times per `every`
    seconds; the rest is counted and reported in one summary line once that window is over.
    A flood of one repeated warning costs a few lines per window, and no count is lost."""

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        burst: int = 10,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.emit, self.burst, self.every, self.clock = emit, burst, every, clock
        self.windows: dict[_Key, _Window] = {}
        self._sweep_at = 0.0
        self._lock = threading.Lock()  # records also come from worker threads

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_summary", False):
            return True  # our own summary
        now = self.clock()
        key = (record.name, record.levelno, str(record.msg))
        with self._lock:
            due = self._expired(now) if now >= self._sweep_at else []
            window = self.windows.get(key)
            if window is None and len(self.windows) < _MAX_KEYS:
                window = self.windows[key] = _Window(now)
            passes = window is None or window.passed < self.burst
            if window is not None:
                if passes:
                    window.passed += 1
                else:
                    window.held += 1
        self._report(due)
        return passes

    def flush(self, everything: bool = False) -> None:
        """Report the windows that are over (all of them when `everything`, e.g. at exit)."""
        now = self.clock()
        with self._lock:
            due = self._expired(now + self.every if everything else now)
        self._report(due)

    def _expired(self, now: float) -> list[tuple[_Key, _Window]]:
        self._sweep_at = now + self.every / 4
        over = [(k, w) for k, w in self.windows.items() if now - w.start >= self.every]
        for key, _ in over:
            del self.windows[key]
        return [(k, w) for k, w in over if w.held]

    def _report(self, due: list[tuple[_Key, _Window]]) -> None:
        for (name, level, template), window in due:
            record = logging.makeLogRecord(
                {
                    "name": name,
                    "levelno": level,
                    "levelname": logging.getLevelName(level),
                    "msg": "suppressed %d similar lines in %.0fs: %s",
                    "args": (window.held, self.every, template),
                    "suppressed": window.held,
                    "_summary": True,
                }
            )
            self.emit(record)


_limit: RateLimit | None = None


def flush(everything: bool = False) -> None:
    """Report the held-back counts of windows that are over, or of all (at exit)."""
    if _limit is not None:
        _limit.flush(everything)


def setup(sidecar: str, level: str) -> logging.Logger:
    """Route the root logger to stderr as JSON lines, repeats rate-limited; return the
    sidecar's logger."""
    global _limit
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(sidecar))
    _limit = RateLimit(handler.handle)
    handler.addFilter(_limit)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp logs per request at INFO; keep it at WARNING unless we debug.
    noisy = logging.getLogger("aiohttp.access")
    noisy.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return logging.getLogger(f"sidecars.{sidecar}")
