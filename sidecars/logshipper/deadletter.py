"""The dead-letter file: documents Elasticsearch refused for good, with the reason."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

from sidecars.logshipper.documents import iso_utc
from sidecars.runtime.files import write_fully


class DeadLetter:
    """Appends one JSON line per refused document to `<state_dir>/dead-letter.ndjson` and
    fsyncs before returning: a dead-lettered record counts as resolved, so its checkpoint
    may move only once the line is on disk. Rotated once to `.1` above `max_size`."""

    def __init__(self, state_dir: str, max_size: int) -> None:
        self.path = Path(state_dir) / "dead-letter.ndjson"
        self.max_size = max_size

    def write(self, entries: list[tuple[str, Any, bytes, bytes]]) -> None:
        """(reason, error, action, source) per document; blocking, so run it in a thread."""
        now = iso_utc(time.time())
        lines = []
        for reason, error, action, source in entries:
            try:
                doc: Any = orjson.loads(source)
            except orjson.JSONDecodeError:
                doc = source.decode(errors="replace")
            record = {
                "@timestamp": now,
                "reason": reason,
                "error": error,
                "action": orjson.loads(action),
                "document": doc,
            }
            lines.append(orjson.dumps(record, default=str) + b"\n")
        body = b"".join(lines)
        try:
            if self.path.stat().st_size + len(body) > self.max_size:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            write_fully(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
