"""The shipper's line framing over a file read in pieces: lines in order without overlap, each
at most the maximum (cut ones flagged), every uncut line the file's bytes up to its newline,
and the C fast path agreeing with the general one whenever it applies."""

from __future__ import annotations

from sidecars.logshipper.framing import Framer

from ._common import split

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    (limit, read), file = split(data, 2)
    max_line, read_size = limit % 64 + 1, read % 97 + 1
    framer = Framer(max_line)
    pos, last_end, rounds = 0, 0, 0
    while pos < len(file):
        rounds += 1
        assert rounds <= 2 * len(file) + 2, "no progress"
        chunk = file[pos : pos + read_size]
        at_end = pos + len(chunk) == len(file)
        if not framer.skipping and not at_end:
            plain = Framer(max_line).frame_plain(chunk, pos)
            if plain is not None:
                lines, starts, used = plain
                general, used2 = Framer(max_line).frame(chunk, pos)
                assert used == used2 and [ln[2] for ln in general] == lines, (chunk, general)
                assert starts == [ln[0] for ln in general] + [pos + used], (starts, general)
        lines2, used = framer.frame(chunk, pos, flush=at_end)
        assert 0 <= used <= len(chunk)
        for start, end, text, cut in lines2:
            # the head of a line still being cut ends where it starts (no checkpoint inside it)
            assert last_end <= start <= end <= pos + len(chunk), (start, end, last_end)
            assert start < end or cut, (start, end)
            assert len(text) <= max_line
            if cut:
                assert len(text) == max_line and file[start : start + max_line] == text
            else:
                assert file[start:end] in (text + b"\n", text), (file[start:end], text)
            last_end = end
        pos += used
        if not used:
            read_size *= 2  # an incomplete line: the tailer reads it again with more behind
    assert pos == len(file)
