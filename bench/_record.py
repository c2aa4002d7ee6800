"""What a bench run leaves behind: one JSON file per bench per run under build/bench/
(BENCH_RESULTS moves it) with the commit, the date, the machine's load, the ratios (ours against
the anchor), other figures and the table as printed. bench/plot draws the ratios' history.

    with recording("ambassador") as record:
        ...
        record.ratio("http req/s, 16 conns", ours / anchor, ours=ours, anchor=anchor)
        print(table)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS") or ROOT / "build" / "bench")


def commit() -> tuple[str | None, bool]:
    """(HEAD's hash, whether tracked files differ from it); (None, False) outside a checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return head, dirty


class Tee(io.TextIOBase):
    """Writes through to `out` and keeps a copy: the bench's table is what it printed."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


class Record:
    """The figures of one run of `bench`."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.started = dt.datetime.now(dt.UTC)
        self.load_before = os.getloadavg()
        self.ratios: dict[str, dict[str, Any]] = {}
        self.figures: dict[str, float] = {}

    def ratio(
        self,
        name: str,
        value: float,
        *,
        better: str = "higher",
        ours: float | None = None,
        anchor: float | None = None,
        rounds: Sequence[float] | None = None,
    ) -> None:
        """One ratio of ours to the anchor. `better`: whether a `higher` or `lower` value is
        the better one for us (a rate ours/anchor: higher; a latency or memory ours/anchor:
        lower). `rounds`: the per-round paired ratios whose median `value` is, kept to show
        their spread. Not finite (an anchor at 0): kept out of the history."""
        if better not in ("higher", "lower"):
            raise ValueError(f"better must be 'higher' or 'lower', not {better!r}")
        if not math.isfinite(value):
            return
        entry: dict[str, Any] = {"value": value, "better": better}
        if ours is not None:
            entry["ours"] = ours
        if anchor is not None:
            entry["anchor"] = anchor
        if rounds is not None:
            entry["rounds"] = list(rounds)
        self.ratios[name] = entry

    def figure(self, name: str, value: float) -> None:
        """A figure of ours with no anchor beside it (a peak RSS, a start time)."""
        if math.isfinite(value):
            self.figures[name] = value

    def save(self, table: str) -> Path:
        head, dirty = commit()
        doc = {
            "bench": self.bench,
            "commit": head,
            "dirty": dirty,
            "date": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "args": sys.argv[1:],
            "machine": {
                "cpus": os.cpu_count(),
                "load_before": [round(x, 2) for x in self.load_before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            },
            "ratios": self.ratios,
            "figures": self.figures,
            "table": table,
        }
        out = results_dir()
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{self.bench}-{self.started:%Y%m%dT%H%M%SZ}"
        for n in range(1, 1000):
            path = out / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
            try:
                with path.open("x") as f:
                    json.dump(doc, f, indent=1)
                    f.write("\n")
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"{out}: no free name for {stem}")


@contextlib.contextmanager
def recording(bench: str) -> Iterator[Record]:
    """A Record of this run, saved with what the bench printed on stdout once it finished
    without an error (a failed run leaves no file)."""
    record = Record(bench)
    tee = Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield record
    try:
        path = record.save(tee.kept.getvalue())
    except OSError as exc:  # the table is printed; say in one line why the record is not
        sys.exit(f"{bench}: cannot write its record to {results_dir()}: {exc.strerror or exc}")
    try:
        shown: Path | str = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"figures: {shown}", file=sys.stderr)
