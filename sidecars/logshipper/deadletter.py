"""The dead-letter file: documents Elasticsearch refused for good, with the reason."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from typing import Any

import orjson

from sidecars.logshipper.documents import iso_utc
from sidecars.runtime.files import write_fully

_Key = tuple[Any, Any]  # (index, id) of a dead-lettered document
_CHUNK = 1 << 20


class DeadLetter:
    """Appends one JSON line per refused document to `<state_dir>/dead-letter.ndjson` and
    fsyncs before returning: a dead-lettered record counts as resolved, so its checkpoint
    may move only once the line is on disk. Rotated once to `.1` above `max_size`.

    A crash after that fsync but before the checkpoint moved makes the next run read the
    document again and have it refused again: the ids in the file's last `window` bytes
    (loaded at the first write) are not written a second time."""

    def __init__(self, state_dir: str, max_size: int, window: int = 16 << 20) -> None:
        self.path = os.path.join(state_dir, "dead-letter.ndjson")
        self.max_size = max_size
        self.window = window
        self.repeats = 0  # records not written again (their id was in the window)
        self._seen: set[_Key] | None = None
        self._lock = threading.Lock()  # senders write from several threads

    def write(self, entries: list[tuple[str, Any, bytes, bytes]]) -> None:
        """(reason, error, action, source) per document; blocking, so run it in a thread."""
        with self._lock:
            if self._seen is None:
                self._seen = self._recent()
            fresh = []
            for entry in entries:
                key = _key(orjson.loads(entry[2]))
                if key[1] is not None and key in self._seen:
                    self.repeats += 1
                else:
                    fresh.append((key, entry))
            if fresh:
                self._append([entry for _, entry in fresh])
                self._seen.update(key for key, _ in fresh)

    def _recent(self) -> set[_Key]:
        """(index, id) of the records in the file's last `window` bytes."""
        seen: set[_Key] = set()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return seen
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return seen
            pos = max(0, st.st_size - self.window)
            rest = b""
            first = pos > 0  # starts inside a record: skip to the next line
            while pos < st.st_size:
                data = rest + os.pread(fd, min(_CHUNK, st.st_size - pos), pos)
                if not data or len(data) == len(rest):
                    break
                pos += len(data) - len(rest)
                *lines, rest = data.split(b"\n")
                for line in lines[1:] if first else lines:
                    with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
                        seen.add(_key(orjson.loads(line)["action"]))
                first = False
        except OSError:
            return seen
        finally:
            os.close(fd)
        return seen

    def _append(self, entries: list[tuple[str, Any, bytes, bytes]]) -> None:
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
                os.replace(self.path, self.path + ".1")
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


def _key(action: Any) -> _Key:
    """(index, id) of a bulk action `{"<op>": {"_index": ..., "_id": ...}}`."""
    if not isinstance(action, dict) or len(action) != 1:
        raise ValueError("not a bulk action")
    (meta,) = action.values()
    if not isinstance(meta, dict):
        raise ValueError("not a bulk action")
    return meta.get("_index"), meta.get("_id")
