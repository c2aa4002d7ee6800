"""bench/_record.py: what a bench run keeps, and what it refuses to keep."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from bench._record import Record, recording

pytestmark = pytest.mark.unit


def test_ratios_that_are_not_finite_are_left_out_and_better_is_checked() -> None:
    """An anchor at 0 gives an infinite or NaN ratio: it has no place in a history, so it is
    dropped; `better` is `higher` or `lower`, anything else is a bug in the bench."""
    record = Record("unit")
    record.ratio("rate", 2.0, ours=4.0, anchor=2.0)
    record.ratio("over zero", math.inf)
    record.ratio("zero over zero", math.nan)
    record.figure("rss", 12.5)
    record.figure("no figure", math.nan)
    assert record.ratios == {"rate": {"value": 2.0, "better": "higher", "ours": 4.0, "anchor": 2.0}}
    assert record.figures == {"rss": 12.5}
    with pytest.raises(ValueError, match="better must be 'higher' or 'lower'"):
        record.ratio("memory", 0.5, better="smaller")


def test_runs_in_the_same_second_get_a_file_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two records of one bench started in the same second do not overwrite each other."""
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path))
    first, second = Record("unit"), Record("unit")
    second.started = first.started
    paths = [first.save("a\n"), second.save("b\n")]
    assert paths[0] != paths[1]
    assert [json.loads(p.read_text())["table"] for p in paths] == ["a\n", "b\n"]


def test_recording_keeps_what_was_printed_and_a_failed_run_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table is what the bench printed on stdout (still printed), a ratio keeps the paired
    ratios of the rounds it is the median of; a run that raises writes no record, so the
    history never holds a half-measured run."""
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path))
    with recording("unit") as record:
        print("figure  ours  anchor  ratio")
        record.ratio("rate", 1.5, rounds=(1.4, 1.5, 1.7))
    assert "figure  ours  anchor  ratio" in capsys.readouterr().out
    (saved,) = tmp_path.glob("unit-*.json")
    doc = json.loads(saved.read_text())
    assert doc["table"] == "figure  ours  anchor  ratio\n"
    assert doc["ratios"]["rate"] == {"value": 1.5, "better": "higher", "rounds": [1.4, 1.5, 1.7]}
    assert doc["args"] == sys.argv[1:]
    with pytest.raises(RuntimeError), recording("failing"):
        print("half a table")
        raise RuntimeError("the anchor did not start")
    assert not list(tmp_path.glob("failing-*.json"))


def test_a_record_that_cannot_be_written_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The results folder cannot be made (a file is in the way): one line naming it and why,
    exit 1, no traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("BENCH_RESULTS", str(blocker / "bench"))
    with pytest.raises(SystemExit) as exit_info, recording("unit"):
        print("the table")
    assert (
        exit_info.value.code
        == f"unit: cannot write its record to {blocker / 'bench'}: Not a directory"
    )
