"""JSON log lines carry the fixed keys and extra fields; backoff grows, caps and jitters."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sidecars.runtime import Backoff
from sidecars.runtime.logs import JsonFormatter, utc_iso


def test_json_line_has_fixed_keys_and_fields() -> None:
    record = logging.LogRecord(
        "sidecars.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.path = "/var/log/a.log"
    line = JsonFormatter("logshipper").format(record)
    obj = json.loads(line)
    assert "\n" not in line
    assert obj["level"] == "warning" and obj["sidecar"] == "logshipper"
    assert obj["msg"] == "hello you" and obj["path"] == "/var/log/a.log"
    assert obj["ts"].endswith("Z") and obj["logger"] == "sidecars.x"


def test_utc_iso_is_datetimes_iso_format_in_milliseconds() -> None:
    """`utc_iso` gives what datetime's isoformat(timespec="milliseconds") gives, with a Z:
    microseconds rounded as datetime rounds them, then cut (never rounded up) to milliseconds."""
    times = [0.0, 1.9995, 1.9999996, 59.9999999, 1767225600.123456, 1767225600.9999, 951782400.5]
    times += [i * 7919.123457 for i in range(1, 2000)]
    for t in times:
        want = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
        assert utc_iso(t) == want.replace("+00:00", "Z"), t


def test_exception_is_one_field_not_many_lines() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter("adapter").format(record)
    assert "\n" not in line and "boom" in json.loads(line)["error"]


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(base=1.0, cap=8.0)
    delays = [b.next_delay() for _ in range(50)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert max(delays[5:]) > 1.0  # grew past the base
    b.reset()
    assert b.next_delay() <= 1.0
