"""Application lines parsed as JSON (LOGSHIPPER_JSON) are attacker input: deep nesting, numbers
beyond 64 bits or beyond a double, times out of range after their UTC offset, fields of the
wrong type. Each becomes a document (or a dead letter), never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import BulkSink, admin_url, metric, shipper_env, wait_metric

pytestmark = pytest.mark.integration


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


LINES = [
    b'{"ts":"0001-01-01T00:00:00+01:00","n":"year 0 in UTC"}',
    b'{"ts":"9999-12-31T23:59:59-14:00","n":"year 10000 in UTC"}',
    b'{"ts":1e300,"n":"epoch overflow"}',
    b'{"n":"beyond a double","x":1e400}',
    b'{"n":"beyond 64 bits","x":18446744073709551616}',
    b'{"n":"own tag","tags":"app-tag"}',
    _nested(2000),  # past the parser's depth limit: a plain line
    _nested(300),  # parsed, but deeper than the serializer writes: a plain line
    _nested(254),  # serialized, but one level too deep inside a dead-letter record
    b"{" * 200_000,
]


def test_hostile_json_lines_become_documents_or_dead_letters(dirs: tuple[Path, Path]) -> None:
    """Every line is delivered once (the 254-deep one is refused by the sink and lands in
    the dead-letter file as text), the shipper stays up, nothing is logged as a traceback."""
    logs, state = dirs
    (logs / "app.log").write_bytes(b"\n".join(LINES) + b"\n")
    deep = _nested(254)

    def status(doc: dict[str, Any]) -> int:
        return 400 if "a" in doc and doc.get("message") is None else 201

    with BulkSink() as sink:
        sink.item_status = status
        env = shipper_env(logs, state, sink.url, "logs", json="true", timestamp_field="ts")
        with SidecarProcess("logshipper", env=env) as proc:
            dead = state / "dead-letter.ndjson"
            wait_until(lambda: sink.count() == len(LINES) - 1 and dead.exists(), 30, "all")
            docs = list(sink.docs.values())
            by_n = {d.get("n"): d for d in docs if "n" in d}
            assert by_n["year 0 in UTC"]["tags"] == ["timestamp_unparsed"]
            assert by_n["year 10000 in UTC"]["tags"] == ["timestamp_unparsed"]
            assert by_n["own tag"]["tags"] == ["app-tag", "timestamp_unparsed"]
            assert by_n["beyond 64 bits"]["x"] == float(18446744073709551616)
            plain = {d["message"] for d in docs if "message" in d}
            assert '{"n":"beyond a double","x":1e400}' in plain
            assert _nested(2000).decode() in plain and _nested(300).decode() in plain
            (record,) = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
            assert record["document"].startswith(deep.decode()[:-1] + ",")  # kept as text
            # the record is written before it is counted: wait for the count, then exactly one
            wait_metric(admin_url(env), "logshipper_documents_dead_lettered_total", "", 1, "count")
            assert metric(admin_url(env), "logshipper_documents_dead_lettered_total") == 1
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()
