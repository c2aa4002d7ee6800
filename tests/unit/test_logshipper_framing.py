"""Line framing, multiline joining and file identity: pure logic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecars.logshipper.framing import Framer
from sidecars.logshipper.identity import (
    FINGERPRINT_MAX,
    digest,
    file_uid,
    fingerprint,
    read_fingerprint,
    still_matches,
)
from sidecars.logshipper.multiline import Joiner

pytestmark = pytest.mark.unit


def test_complete_lines_are_framed_with_offsets_and_the_partial_tail_is_left() -> None:
    lines, used = Framer(100).frame(b"ab\n\ncd\nef", 10)
    assert lines == [
        (10, 13, b"ab", False),
        (13, 14, b"", False),
        (14, 17, b"cd", False),
    ]
    assert used == 7  # "ef" is read again once its newline arrives


def test_partial_tail_is_emitted_on_flush() -> None:
    lines, used = Framer(100).frame(b"ab\nef", 0, flush=True)
    assert lines[-1] == (3, 5, b"ef", False)
    assert used == 5


def test_long_line_inside_a_chunk_is_cut_and_marked() -> None:
    lines, used = Framer(4).frame(b"0123456789\nok\n", 0)
    assert lines == [(0, 11, b"0123", True), (11, 14, b"ok", False)]
    assert used == 14


def test_long_line_without_newline_is_cut_then_its_rest_skipped_chunk_by_chunk() -> None:
    framer = Framer(4)
    lines, used = framer.frame(b"0123456789", 0)
    # the head's record ends where the line starts: no checkpoint inside the line
    assert lines == [(0, 0, b"0123", True)] and used == 10 and framer.skipping
    lines, used = framer.frame(b"abcdefgh", 10)  # still the same line: nothing, all consumed
    assert lines == [] and used == 8
    lines, used = framer.frame(b"xy\nnext\n", 18)
    assert lines == [(21, 26, b"next", False)] and used == 8
    assert not framer.skipping


def test_exactly_max_size_line_is_not_cut() -> None:
    lines, _ = Framer(4).frame(b"abcd\n", 0)
    assert lines == [(0, 5, b"abcd", False)]


def test_multiline_joins_continuations_to_the_start_line() -> None:
    joiner = Joiner(r"^\d{4}-", 10, 1000)
    out = []
    for i, data in enumerate([b"2024- a", b"  at x", b"  at y", b"2024- b"]):
        record = joiner.push((i * 10, i * 10 + 10, data, False))
        if record:
            out.append(record)
    assert out == [(0, 30, b"2024- a\n  at x\n  at y", False)]
    assert joiner.flush() == (30, 40, b"2024- b", False)
    assert joiner.flush() is None


def test_multiline_limits_lines_and_bytes_and_marks_the_cut() -> None:
    joiner = Joiner(r"^S", 3, 1000)
    for i in range(6):
        joiner.push((i, i + 1, b"S" if i == 0 else b"c", False))
    record = joiner.flush()
    assert record == (0, 6, b"S\nc\nc", True)  # end covers the dropped lines too
    joiner = Joiner(r"^S", 100, 8)
    joiner.push((0, 4, b"S12", False))
    joiner.push((4, 14, b"456789012", False))
    record = joiner.flush()
    assert record is not None and len(record[2]) == 8 and record[3]


def test_fingerprint_is_the_first_line_and_needs_no_minimum_size() -> None:
    assert fingerprint(b"") is None
    assert fingerprint(b"a\n") == fingerprint(b"a\nmore lines later\n")
    assert fingerprint(b"a\n") != fingerprint(b"b\n")
    long = b"x" * (FINGERPRINT_MAX + 50)
    assert fingerprint(long) == fingerprint(long + b"\nz")
    # an incomplete first line is no identity yet (a reader may see half a write) ...
    assert fingerprint(b"abc") is None
    # ... unless it is about to be shipped as it is (partial flush); it stays checkable
    fp = fingerprint(b"abc", partial=True)
    assert fp is not None and fp[1] == 3 and fp[0] == digest(b"abc")


def test_uid_differs_per_inode_fingerprint_and_generation(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"first\nsecond\n")
    fd = os.open(p, os.O_RDONLY)
    try:
        fp = read_fingerprint(fd)
        assert fp is not None and still_matches(fd, *fp)
        assert not still_matches(fd, digest(b"other\n"), 6)
    finally:
        os.close(fd)
    assert fp == fingerprint(b"first\n")
    uids = {
        file_uid(1, 2, "a", 0),
        file_uid(1, 3, "a", 0),
        file_uid(1, 2, "b", 0),
        file_uid(1, 2, "a", 1),
    }
    assert len(uids) == 4 and all(len(u) == 16 for u in uids)
    assert file_uid(1, 2, "a", 0) == file_uid(1, 2, "a", 0)
