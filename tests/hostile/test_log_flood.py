"""Rule 3: a repeated log line is rate-limited to a few lines and one count per interval."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from sidecars.runtime import logs
from sidecars.runtime.logs import JsonFormatter, RateLimit
from tests.helpers import SidecarProcess, background, free_port, http_get, wait_until

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _handler(clock: Clock) -> tuple[logging.Logger, io.StringIO, RateLimit]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    limit = RateLimit(handler.handle, burst=10, every=10.0, clock=clock)
    handler.addFilter(limit)
    log = logging.getLogger("tests.flood")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, out, limit


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_flood_of_100k_identical_warnings_is_a_few_lines_and_one_exact_count() -> None:
    """100,000 warnings of one template within one interval: 10 pass, then one summary line
    counts the other 99,990; the first line of the next interval passes again."""
    clock = Clock()
    log, out, limit = _handler(clock)
    for i in range(100_000):
        log.warning("cannot read %s", f"/var/log/{i}.log")
    assert len(_lines(out)) == 10
    clock.now += 10.0
    log.warning("cannot read %s", "/var/log/next.log")
    lines = _lines(out)
    assert len(lines) == 12
    summary = lines[10]
    assert summary["suppressed"] == 99_990 and summary["level"] == "warning"
    assert summary["logger"] == "tests.flood" and "cannot read %s" in str(summary["msg"])
    assert lines[11]["msg"] == "cannot read /var/log/next.log"
    limit.flush(everything=True)
    assert len(_lines(out)) == 12  # nothing held back in the new window


def test_each_interval_of_a_long_flood_costs_at_most_burst_plus_one_lines() -> None:
    """A flood over 60 s of clock time: per 10 s window at most 10 lines and one summary, and
    the summaries add up to every line held back; other templates are not held back by it."""
    clock = Clock()
    log, out, limit = _handler(clock)
    sent = 0
    for _ in range(600):
        for _ in range(100):
            log.error("member %s refused", "10.0.0.1:80")
            sent += 1
        clock.now += 0.1
    log.info("a different line")
    limit.flush(everything=True)
    lines = _lines(out)
    floods = [x for x in lines if "refused" in str(x["msg"]) and "suppressed" not in x]
    summaries = [x for x in lines if "suppressed" in x]
    assert len(lines) <= 6 * 11 + 2
    assert len(floods) + sum(int(str(x["suppressed"])) for x in summaries) == sent
    assert any(x["msg"] == "a different line" for x in lines)


def test_a_record_with_its_own_suppressed_field_is_still_limited() -> None:
    """Only the filter's own summaries bypass it, not any record carrying a `suppressed`
    field (a sidecar's own counts use that name too)."""
    clock = Clock()
    log, out, _ = _handler(clock)
    for _ in range(100):
        log.warning("skipping files", extra={"suppressed": 3})
    assert len(_lines(out)) == 10


def test_flush_at_exit_reports_what_is_still_held(capsys: pytest.CaptureFixture[str]) -> None:
    """Through logs.setup (the sidecars' own handler on stderr): a flood then exit-time flush
    yields the burst and one summary with the exact count."""
    log = logs.setup("test", "info")
    try:
        for _ in range(1000):
            log.warning("bad line skipped")
        logs.flush(everything=True)
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert len(lines) == 11
    assert lines[-1]["suppressed"] == 990


def _metric(text: str, name: str) -> float:
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name))


@pytest.mark.integration
def test_a_real_flood_of_errors_is_limited_and_counted(tmp_path: Path) -> None:
    """warloader --watch polls a URL every 50 ms and its server goes away: every poll fails
    with the same error line. Stderr shows 10 of them, then one summary whose count makes the
    total equal to the failures the metrics counted, exactly."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "app.txt").write_text("v1")
    (tmp_path / "dest").mkdir()
    port, admin = free_port(), free_port()
    serve = [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(site)]
    env = {
        "WARLOADER_SOURCES": f"http://127.0.0.1:{port}/app.txt",
        "WARLOADER_DEST": str(tmp_path / "dest"),
        "WARLOADER_WATCH": "true",
        "WARLOADER_POLL_INTERVAL": "50ms",
        "WARLOADER_MAX_ATTEMPTS": "1",
        "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{admin}",
    }

    def count(outcome: str) -> float:
        text = http_get(f"http://127.0.0.1:{admin}/metrics")[1].decode()
        name = f'warloader_artifacts_total{{outcome="{outcome}"}}'
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name))

    def serving() -> bool:
        return http_get(f"http://127.0.0.1:{port}/app.txt")[0] == 200

    with SidecarProcess("warloader", env) as proc:
        with background(serve):
            wait_until(serving, 15, "http.server")
            proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
        wait_until(lambda: count("source_unavailable") >= 60, 30, "60 failed polls")
        with background(serve):  # polls succeed again: the failure count stops moving
            wait_until(serving, 15, "http.server again")
            seen = count("unchanged")
            wait_until(lambda: count("unchanged") > seen + 2, 15, "polls succeeding")
            failed = count("source_unavailable")
            assert proc.terminate() == 0
        lines = proc.log_lines()
    errors = [x for x in lines if x["level"] == "error"]
    shown = [x for x in errors if "suppressed" not in x]
    held = sum(int(x["suppressed"]) for x in errors if "suppressed" in x)
    assert len(shown) <= 20  # 10 per 10 s window; the flood lasts a few seconds
    assert held > 0 and len(shown) + held == failed
