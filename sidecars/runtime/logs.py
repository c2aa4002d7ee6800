"""JSON-lines logging on stderr: one object per record, with the sidecar's name and extra fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra=` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "sidecar", "logger", "msg", ...fields}`."""

    def __init__(self, sidecar: str) -> None:
        super().__init__()
        self.sidecar = sidecar

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
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


def setup(sidecar: str, level: str) -> logging.Logger:
    """Route the root logger to stderr as JSON lines; return the sidecar's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(sidecar))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log per request at INFO; keep them at WARNING unless we debug.
    for noisy in ("aiohttp.access", "elastic_transport.transport", "watchfiles.main"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return logging.getLogger(f"sidecars.{sidecar}")
