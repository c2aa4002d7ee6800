"""The dead-letter file: documents Elasticsearch refused for good, with the reason."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
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
            try:
                line = orjson.dumps(record, default=str)
            except TypeError:  # nested deeper than orjson writes (255): keep it as text
                record["document"] = source.decode(errors="replace")
                record["error"] = str(error)[:2000]
                line = orjson.dumps(record, default=str)
            lines.append(line + b"\n")
        body = b"".join(lines)
        fd = self._open()
        try:
            start = os.fstat(fd).st_size
            if start and start + len(body) > self.max_size:
                os.close(fd)
                fd = -1
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                fd, start = self._open(), 0
            try:
                write_fully(fd, body)
                os.fsync(fd)
            except OSError:
                # a full volume may have taken part of it: cut that back, so the retry
                # appends every record once and no torn line is left behind
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            if fd >= 0:
                os.close(fd)

    def _open(self) -> int:
        """Append to the file itself: a symlink, FIFO or device planted at its path is
        refused (an error the caller retries), never followed or blocked on."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "a symlink is planted at its path; not followed") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "its path is not a regular file")
        return fd
