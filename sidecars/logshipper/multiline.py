"""Join continuation lines (stack traces) to the line that starts a record, within limits."""

from __future__ import annotations

import re

from sidecars.logshipper.framing import Line


class Joiner:
    """Groups lines into records: a line matching `pattern` starts a record, any other line
    continues the current one. A record holds at most `max_lines` lines and `max_bytes`
    bytes; further continuation lines are dropped (their offsets still count as consumed)
    and the record is marked cut. The pending record is what `flush` returns."""

    __slots__ = ("rx", "max_lines", "max_bytes", "_parts", "_start", "_end", "_size", "_cut")

    def __init__(self, pattern: str, max_lines: int, max_bytes: int) -> None:
        self.rx = re.compile(pattern.encode())
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._start = 0
        self._end = 0
        self._size = 0
        self._cut = False

    @property
    def pending(self) -> bool:
        return bool(self._parts)

    def push(self, line: Line) -> Line | None:
        """Add a line; returns the record it completed, if any."""
        start, end, data, cut = line
        done = None
        if self._parts and self.rx.search(data):
            done = self.flush()
        if not self._parts:
            self._parts = [data]
            self._start, self._end = start, end
            self._size, self._cut = len(data), cut
            return done
        self._end = end
        room = self.max_bytes - self._size - 1
        if len(self._parts) >= self.max_lines or room <= 0:
            self._cut = True
        elif len(data) > room:
            self._parts.append(data[:room])
            self._size = self.max_bytes
            self._cut = True
        else:
            self._parts.append(data)
            self._size += len(data) + 1
            self._cut = self._cut or cut
        return done

    def flush(self) -> Line | None:
        """The pending record, if any, as one Line spanning all its lines."""
        if not self._parts:
            return None
        record = (self._start, self._end, b"\n".join(self._parts), self._cut)
        self._parts = []
        return record
