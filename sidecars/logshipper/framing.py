"""Split file bytes into lines with offsets; cut over-long lines without ever holding them whole."""

from __future__ import annotations

from itertools import accumulate, repeat
from operator import add

# One line: where it starts, where the next one starts, its bytes (no newline), and whether
# it was cut at the maximum size. A plain tuple: it is built for every line read.
Line = tuple[int, int, bytes, bool]


class Framer:
    """Frames one file's bytes. The caller reads from `offset` and passes what it read;
    bytes of an incomplete last line are not consumed, so the caller reads them again
    later (nothing partial is held here). The only state is `skipping`: the head of an
    over-long line was emitted and its rest is being discarded up to the newline."""

    __slots__ = ("max_line", "skipping")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.skipping = False

    def frame(self, data: bytes, offset: int, flush: bool = False) -> tuple[list[Line], int]:
        """Lines found in `data` (read at file offset `offset`) and how many bytes they
        consumed. `flush` also emits an incomplete last line (it stayed unchanged too long)."""
        out: list[Line] = []
        pos = 0
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return out, len(data)
            self.skipping = False
            pos = nl + 1
        last = data.rfind(b"\n")
        limit = self.max_line
        if last >= pos:
            start = offset + pos
            for part in data[pos:last].split(b"\n"):
                end = start + len(part) + 1
                if len(part) > limit:
                    out.append((start, end, part[:limit], True))
                else:
                    out.append((start, end, part, False))
                start = end
            pos = last + 1
        rest = len(data) - pos
        if rest > limit:
            # no newline within the limit: ship the head now, discard the rest as it comes.
            # The head's record ends where the line starts: a checkpoint never points into a
            # line, so after a crash the line is read again from its start, and its head
            # (same offset, same id) replaces itself instead of its tail becoming a record
            out.append((offset + pos, offset + pos, data[pos : pos + limit], True))
            self.skipping = True
            pos = len(data)
        elif flush and rest:
            out.append((offset + pos, offset + len(data), data[pos:], False))
            pos = len(data)
        return out, pos

    def frame_plain(self, data: bytes, offset: int) -> tuple[list[bytes], list[int], int] | None:
        """The common case at C speed: complete lines, none over the limit, no line being
        skipped. Returns the lines, their start offsets followed by the end of the last one,
        and the bytes consumed; None when `frame` must handle `data` instead."""
        last = data.rfind(b"\n")
        if self.skipping or last < 0 or len(data) - last - 1 > self.max_line:
            return None
        parts = data.split(b"\n")
        parts.pop()  # what follows the last newline (not a slice of `data` split again)
        lengths = list(map(len, parts))
        if max(lengths) > self.max_line:
            return None
        # start of line i = offset + (lengths of the lines before it, each with its newline);
        # the last value is the end of the last line, its newline included
        starts = list(accumulate(map(add, lengths, repeat(1)), initial=offset))
        return parts, starts, last + 1
