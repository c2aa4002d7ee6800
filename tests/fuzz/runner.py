"""Run fuzz targets for a bounded time each, in worker processes, and report what they did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz import targets

ROOT = Path(__file__).resolve().parents[2]
INPUT_TIMEOUT = 10  # seconds one input may take before libFuzzer calls it a hang
RSS_LIMIT_MB = 768  # the worker's whole memory: a parser that runs away trips it
_STARTUP = 60.0  # seconds allowed beyond the run time to start, load the corpus and report


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    seconds: float  # how long the worker ran
    executions: int
    new_inputs: int
    ok: bool
    problem: str = ""  # the crash, hang or memory report, with the reproducer's path
    reproducer: Path | None = None

    def line(self) -> str:
        rate = self.executions / max(self.seconds, 0.001)
        first = self.problem.strip().splitlines()[0] if self.problem.strip() else ""
        state = "ok" if self.ok else f"FAILED: {first}"
        return (
            f"{self.target:<20} {self.executions:>10} runs {rate:>9.0f}/s "
            f"{self.new_inputs:>5} new  {state}"
        )


def run_target(
    name: str, seconds: int, corpus: Path, artifacts: Path, seed: int | None = None
) -> Result:
    """Fuzz `name` for `seconds`, starting from its seeds plus what `corpus` already holds;
    new inputs go to `corpus`, a failing input to `artifacts`. A `seed` makes libFuzzer's
    mutations the same on every run (the tests); None lets each run explore anew."""
    module = targets.load(name)
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz.worker",
        name,
        f"-max_total_time={seconds}",
        f"-timeout={INPUT_TIMEOUT}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={module.MAX_LEN}",
        f"-artifact_prefix={artifacts}/{name}-",
        "-print_final_stats=1",
        *([f"-seed={seed}"] if seed is not None else []),
        str(corpus),
        str(targets.CORPUS / name),
    ]
    # atheris sees coverage only in Python code: explore the sources of the compiled modules
    # (the seeds are replayed on the compiled ones in process, test_fuzz.py).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "SIDECARS_PURE": "1"}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # atheris prints the Python traceback on stdout
            timeout=seconds + _STARTUP,
        )
        log, code = proc.stdout.decode(errors="replace"), proc.returncode
    except subprocess.TimeoutExpired as exc:
        log, code = (exc.stdout or b"").decode(errors="replace"), -1
        log += f"\nthe worker did not finish within {seconds + _STARTUP:.0f} s"
    took = time.monotonic() - started
    executions = _stat(log, "number_of_executed_units")
    new = _stat(log, "new_units_added")
    if code == 0 and "Done " in log:
        return Result(name, took, executions, new, True)
    found = sorted(artifacts.glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)
    last = found[-1] if found else None
    return Result(name, took, executions, new, False, _problem(log), last)


def _stat(log: str, key: str) -> int:
    m = re.search(rf"stat::{key}:\s*(\d+)", log)
    if m:
        return int(m.group(1))
    runs = re.findall(r"^#(\d+)\s", log, re.M)
    return int(runs[-1]) if runs and key == "number_of_executed_units" else 0


def _problem(log: str) -> str:
    """The part of the worker's log that says what went wrong."""
    for marker in ("=== Uncaught Python exception", "ALARM:", "==ERROR:", "out-of-memory"):
        at = log.find(marker)
        if at >= 0:
            return log[at : at + 4000]
    return log[-4000:] or "the worker failed without a report"


def run(
    names: list[str], seconds: int, jobs: int, work: Path | None = None, seed: int | None = None
) -> list[Result]:
    """Run `names` for `seconds` each, `jobs` at a time. Inputs found are kept under `work`
    (a fresh temporary directory when None, so a bounded run leaves nothing behind)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        base = work or Path(tmp)

        def one(name: str) -> Result:
            return run_target(name, seconds, base / "corpus" / name, base / "artifacts", seed)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, names))
        if work is None:  # keep the reproducers of a temporary run where they can be read
            keep = Path(tempfile.mkdtemp(prefix="fuzz-artifacts-"))
            results = [_keep(r, keep) for r in results]
    return results


def _keep(result: Result, keep: Path) -> Result:
    if result.reproducer is None:
        return result
    moved = keep / result.reproducer.name
    moved.write_bytes(result.reproducer.read_bytes())
    return Result(
        result.target, result.seconds, result.executions, result.new_inputs, result.ok,
        result.problem, moved,
    )  # fmt: skip
