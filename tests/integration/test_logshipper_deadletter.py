"""logshipper's dead-letter index against the real node: a mapping conflict ends there with its
reason and the original message; when that index refuses too, the file is the record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import (
    STRICT_SHIPPER_MAPPING,
    admin_url,
    checkpoint_offsets,
    es_count,
    es_messages,
    lines_in,
    metric,
    shipper_env,
)
from tests.servers.elasticsearch import create_strict_index, delete_index, search

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

MAPPING = STRICT_SHIPPER_MAPPING


@pytest.fixture
def dead_index(elasticsearch_url: str, es_index: str) -> Iterator[str]:
    name = f"{es_index}-dead"
    delete_index(elasticsearch_url, name)
    yield name
    delete_index(elasticsearch_url, name)


def _write_conflicts(app: Path) -> list[str]:
    """50 good JSON lines and 3 with a field the strict index refuses; the good messages."""
    good = [orjson.dumps({"message": f"ok {i}"}).decode() for i in range(50)]
    bad = [orjson.dumps({"message": f"bad {i}", "unmapped_field": i}).decode() for i in range(3)]
    app.write_text("\n".join(good[:25] + bad + good[25:]) + "\n")
    return [f"ok {i}" for i in range(50)]


def _good_delivered(url: str, index: str, good: list[str], state: Path, app: Path) -> None:
    wait_until(lambda: es_count(url, index) >= len(good), 60, "good docs", every=0.3)
    assert sorted(es_messages(url, index)) == sorted(good)
    wait_until(lambda: checkpoint_offsets(state)[str(app)] == app.stat().st_size, 10, "ckpt")


def test_mapping_conflicts_end_in_the_dead_letter_index_with_reason_and_message(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str, dead_index: str
) -> None:
    logs, state = dirs
    create_strict_index(elasticsearch_url, es_index, MAPPING)
    app = logs / "app.log"
    good = _write_conflicts(app)
    env = shipper_env(
        logs, state, elasticsearch_url, es_index, json="true", dead_letter_index=dead_index
    )
    with SidecarProcess("logshipper", env=env) as proc:
        _good_delivered(elasticsearch_url, es_index, good, state, app)
        wait_until(lambda: es_count(elasticsearch_url, dead_index) >= 3, 30, "dead letters")
        admin = admin_url(env)
        assert metric(admin, "logshipper_dead_letter_index_documents_total", "indexed") == 3
        assert proc.terminate() == 0
    letters = search(elasticsearch_url, dead_index)
    assert sorted(d["message"] for d in letters) == ["bad 0", "bad 1", "bad 2"]
    for d in letters:
        assert d["reason"] == "strict_dynamic_mapping_exception"
        assert "unmapped_field" in d["error"]["message"]
        assert d["dead_letter"]["index"] == es_index
        assert orjson.loads(d["event"]["original"])["unmapped_field"] in (0, 1, 2)
        assert d["log"]["file"]["path"] == str(app)
    # the file stays the durable record of the same three
    assert len(list(lines_in(state / "dead-letter.ndjson"))) == 3


def test_when_the_dead_letter_index_refuses_too_the_file_keeps_them_and_the_rest_flows(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str, dead_index: str
) -> None:
    logs, state = dirs
    create_strict_index(elasticsearch_url, es_index, MAPPING)
    # a dead-letter index that refuses every dead letter (no field of ours is mapped)
    create_strict_index(elasticsearch_url, dead_index, {"other": {"type": "keyword"}})
    app = logs / "app.log"
    good = _write_conflicts(app)
    env = shipper_env(
        logs, state, elasticsearch_url, es_index, json="true", dead_letter_index=dead_index
    )
    with SidecarProcess("logshipper", env=env) as proc:
        _good_delivered(elasticsearch_url, es_index, good, state, app)
        admin = admin_url(env)
        wait_until(
            lambda: metric(admin, "logshipper_dead_letter_index_documents_total", "refused") == 3,
            30,
            "refusals counted",
        )
        assert proc.terminate() == 0
        warnings = [r for r in proc.log_lines() if "dead-letter index" in r.get("msg", "")]
        assert warnings and "strict_dynamic_mapping_exception" in warnings[0]["error"]
        assert "Traceback" not in proc.stderr()
    assert es_count(elasticsearch_url, dead_index) == 0
    records = list(lines_in(state / "dead-letter.ndjson"))
    assert sorted(r["document"]["message"] for r in records) == ["bad 0", "bad 1", "bad 2"]
