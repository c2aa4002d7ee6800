"""A bench run leaves a JSON record of its figures, and bench/plot draws their history."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def run_bench(results: Path) -> subprocess.CompletedProcess[str]:
    """bench/httpparse.py with a tiny bounded load: one round of 10 ms per parser and head."""
    return subprocess.run(
        [sys.executable, "bench/httpparse.py", "--rounds", "1", "--seconds", "0.01"],
        cwd=ROOT,
        env={**os.environ, "BENCH_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bench_run_writes_its_record_and_plot_draws_the_history(tmp_path: Path) -> None:
    """Each run writes one JSON file (bench, commit, date, machine load, finite ratios with the
    direction that is better, the printed table); bench/plot turns two runs into a PNG, and
    names each file that is not a record (or has a ratio without a number) instead of failing."""
    results = tmp_path / "bench"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for _ in range(2):
        done = run_bench(results)
        assert done.returncode == 0, done.stderr
    records = sorted(results.glob("httpparse-*.json"))
    assert len(records) == 2, records
    for path in records:
        doc = json.loads(path.read_text())
        assert doc["bench"] == "httpparse"
        assert doc["commit"] == head
        assert isinstance(doc["dirty"], bool)
        date = dt.datetime.strptime(doc["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        assert before <= date <= dt.datetime.now(dt.UTC)
        assert doc["machine"]["cpus"] == os.cpu_count()
        for load in ("load_before", "load_after"):
            assert len(doc["machine"][load]) == 3
            assert all(x >= 0 for x in doc["machine"][load])
        assert doc["args"] == ["--rounds", "1", "--seconds", "0.01"]
        ratios = doc["ratios"]
        assert len(ratios) == 10  # five heads, against httptools and httptools with our rules
        for name, ratio in ratios.items():
            assert math.isfinite(ratio["value"]) and ratio["value"] > 0, name
            assert ratio["value"] == pytest.approx(ratio["ours"] / ratio["anchor"]), name
            assert ratio["better"] == "higher", name
        assert "corpus cases read differently" in doc["figures"]
        assert "browser GET, 8 headers" in doc["table"] and "ratio" in doc["table"]
    (results / "notes.json").write_text('{"not": "a record"}')
    bad = {"bench": "httpparse", "date": "2026-01-01T00:00:00Z", "ratios": {"rate": "fast"}}
    (results / "httpparse-bad.json").write_text(json.dumps(bad))
    png = tmp_path / "history.png"
    plot = subprocess.run(
        [str(ROOT / "bench" / "plot"), "--dir", str(results), "--out", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert plot.returncode == 0, plot.stderr
    assert "2 run(s) of httpparse" in plot.stdout
    assert "notes.json: not a bench record" in plot.stderr
    assert "httpparse-bad.json: not a bench record (ratio 'rate' has no numeric value)" in (
        plot.stderr
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert width >= 800 and height >= 200, (width, height)
    assert len(data) > 20_000  # lines, labels and a legend, not an empty canvas


def test_plot_without_records_says_so(tmp_path: Path) -> None:
    """No record in the folder: one line on stderr naming it, exit 1, no PNG."""
    done = subprocess.run(
        [str(ROOT / "bench" / "plot"), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (f"plot: no bench records in {tmp_path} (bench/run writes them)")
    assert not list(tmp_path.iterdir())
