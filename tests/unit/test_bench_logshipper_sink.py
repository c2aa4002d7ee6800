"""The logshipper bench's bulk sink counts documents, whatever blank lines a shipper adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.logshipper import bulk_documents, write_log

pytestmark = pytest.mark.unit

ACTION = b'{"index":{"_index":"bench"}}'


def _bulk(lines: list[str], after_each: bytes) -> bytes:
    return b"".join(
        ACTION + b"\n" + json.dumps({"message": line}).encode() + after_each for line in lines
    )


@pytest.mark.parametrize(
    "after_each",
    [b"\n", b"\n\n"],  # ours and syslog-ng's; rsyslog's omelasticsearch adds a blank line
    ids=["one newline", "blank line after each (rsyslog)"],
)
def test_sink_counts_one_document_per_line_of_the_file(tmp_path: Path, after_each: bytes) -> None:
    """A file of N lines sent as bulk bodies counts N documents in the sink, not 1.5 N when
    every document is followed by a blank line."""
    log = tmp_path / "app.log"
    write_log(log, 1_001)
    lines = log.read_text().splitlines()
    bodies = [_bulk(lines[i : i + 100], after_each) for i in range(0, len(lines), 100)]
    assert sum(bulk_documents(body) for body in bodies) == len(lines) == 1_001
