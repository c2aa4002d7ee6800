"""The shipper's multiline joiner over framed lines: records in order, each within the line
and byte limits (plus the first line, itself within the line limit), joined from the lines
it spans; nothing raises."""

from __future__ import annotations

from sidecars.logshipper.framing import Framer
from sidecars.logshipper.multiline import Joiner

from ._common import split

MAX_LEN = 4096
_PATTERNS = (r"^\S", r"^\d{4}-\d\d-\d\d", r"^(?!\s|Caused by|\.\.\.)", r"^\[")


def fuzz(data: bytes) -> None:
    (pick, lines_limit, bytes_limit), file = split(data, 3)
    max_lines, max_bytes, max_line = lines_limit % 8 + 1, bytes_limit % 200 + 1, 64
    lines, used = Framer(max_line).frame(file, 0, flush=True)
    assert used == len(file)
    joiner = Joiner(_PATTERNS[pick % len(_PATTERNS)], max_lines, max_bytes)
    records = [r for r in map(joiner.push, lines) if r is not None]
    last = joiner.flush()
    if last is not None:
        records.append(last)
    assert not joiner.pending
    end = 0
    for start, stop, text, cut in records:
        assert end <= start <= stop and (start < stop or cut), (end, start, stop)
        end = stop
        first = text.split(b"\n", 1)[0]
        assert len(text) <= max(max_bytes, len(first)) or text.count(b"\n") == 0, text
        assert text.count(b"\n") < max_lines, text
        assert len(first) <= max_line
        whole = file[start:stop]
        if not cut:
            assert whole in (text + b"\n", text), (whole, text)
    assert end == (records[-1][1] if records else 0)
