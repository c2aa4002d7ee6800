"""Bulk classification, documents, batches/progress, budget, checkpoints, dead letters."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from sidecars.logshipper.batching import Batch, Budget, Pipeline, Progress
from sidecars.logshipper.bulk import (
    BadResponse,
    Outcome,
    classify_item,
    classify_response,
    classify_status,
)
from sidecars.logshipper.checkpoint import CheckpointError, CheckpointStore, Entry
from sidecars.logshipper.deadletter import DeadLetter
from sidecars.logshipper.documents import DocumentBuilder, parse_time

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (413, Outcome.SPLIT),
        (429, Outcome.RETRY),
        (502, Outcome.RETRY),
        (401, Outcome.RETRY),
        (403, Outcome.RETRY),
        (400, Outcome.DROP),
        (422, Outcome.DROP),
    ],
)
def test_whole_request_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def _item(status: int, etype: str = "", op: str = "index") -> dict[str, object]:
    body: dict[str, object] = {"status": status}
    if etype:
        body["error"] = {"type": etype, "reason": "r"}
    return {op: body}


@pytest.mark.parametrize(
    ("item", "create", "outcome", "reason"),
    [
        (_item(201), False, Outcome.OK, ""),
        (_item(409, "version_conflict_engine_exception", "create"), True, Outcome.OK, ""),
        (
            _item(409, "version_conflict_engine_exception"),
            False,
            Outcome.DROP,
            "version_conflict_engine_exception",
        ),
        (_item(429, "es_rejected_execution_exception"), False, Outcome.RETRY, "http_429"),
        (_item(503, "unavailable_shards_exception"), False, Outcome.RETRY, "http_503"),
        (_item(403, "cluster_block_exception"), False, Outcome.RETRY, "http_403"),
        (_item(400, "mapper_parsing_exception"), False, Outcome.DROP, "mapper_parsing_exception"),
        (_item(404), False, Outcome.DROP, "http_404"),
    ],
)
def test_item_classification(item: object, create: bool, outcome: Outcome, reason: str) -> None:
    result = classify_item(item, create)
    assert (result.outcome, result.reason) == (outcome, reason)


def test_response_fast_path_and_bad_responses() -> None:
    ok = {"errors": False, "items": [_item(201), _item(200)]}
    assert [r.outcome for r in classify_response(ok, 2, False)] == [Outcome.OK, Outcome.OK]
    mixed = {"errors": True, "items": [_item(201), _item(429, "x")]}
    assert [r.outcome for r in classify_response(mixed, 2, False)] == [Outcome.OK, Outcome.RETRY]
    for bad, count in [
        ("<html>", 1),
        ({"items": [_item(201)]}, 2),
        ({"errors": True}, 1),
        ({"errors": True, "items": [{"index": {}}]}, 1),
    ]:
        with pytest.raises(BadResponse):
            classify_response(bad, count, False)


def test_plain_line_document_is_ecs_and_has_a_deterministic_id() -> None:
    b = DocumentBuilder("logs-%Y.%m.%d", metadata={"kubernetes": {"pod": {"name": "p"}}})
    action, source = b.build("0123456789abcdef", orjson.dumps("/l/a.log"), 255, b'hi "x"', 0.0)
    assert orjson.loads(action) == {
        "index": {"_index": "logs-1970.01.01", "_id": "0123456789abcdefff"}
    }
    doc = orjson.loads(source)
    assert doc == {
        "@timestamp": "1970-01-01T00:00:00.000Z",
        "message": 'hi "x"',
        "log": {"file": {"path": "/l/a.log"}, "offset": 255},
        "kubernetes": {"pod": {"name": "p"}},
    }
    # the id depends on the file incarnation and offset only: a re-sent record replaces itself
    again = b.build("0123456789abcdef", b'"/l/a.log"', 255, b"other", 5.0)[0]
    assert orjson.loads(again)["index"]["_id"] == "0123456789abcdefff"


def test_invalid_utf8_is_replaced_and_tagged_and_cut_lines_tagged() -> None:
    b = DocumentBuilder("i", create=True)
    action, source = b.build("u" * 16, b'"p"', 0, b"ok \xff\xfe end", 0.0, ("truncated",))
    doc = orjson.loads(source)
    assert doc["message"] == "ok \ufffd\ufffd end"
    assert doc["tags"] == ["truncated", "invalid_utf8"]
    assert orjson.loads(action)["create"]["_index"] == "i"


def test_json_lines_with_record_time_pick_the_dated_index() -> None:
    b = DocumentBuilder("app-%Y.%m.%d", json_lines=True, timestamp_field="time")
    line = b'{"time": "2024-02-03T04:05:06+02:00", "level": "warn", "log": "x", "message": "m"}'
    action, source = b.build("u" * 16, b'"p"', 7, line, 0.0)
    doc = orjson.loads(source)
    assert orjson.loads(action)["index"]["_index"] == "app-2024.02.03"
    assert doc["@timestamp"] == "2024-02-03T02:05:06.000Z"
    assert doc["level"] == "warn" and doc["message"] == "m"
    assert doc["log"] == {"original": "x", "file": {"path": "p"}, "offset": 7}
    # not an object, or broken JSON: shipped as a plain line
    for raw in (b"[1, 2]", b"{broken"):
        assert orjson.loads(b.build("u" * 16, b'"p"', 0, raw, 0.0)[1])["message"] == raw.decode()


def test_json_target_and_timestamp_regex() -> None:
    b = DocumentBuilder("i", json_lines=True, json_target="app")
    doc = orjson.loads(b.build("u" * 16, b'"p"', 0, b'{"a": 1}', 0.0)[1])
    assert doc["app"] == {"a": 1} and doc["message"] == '{"a": 1}'
    r = DocumentBuilder("i", timestamp_regex=r"^(\S+) ")
    doc = orjson.loads(r.build("u" * 16, b'"p"', 0, b"2020-01-01T00:00:00Z hello", 0.0)[1])
    assert doc["@timestamp"] == "2020-01-01T00:00:00.000Z"
    doc = orjson.loads(r.build("u" * 16, b'"p"', 0, b"nope", 0.0)[1])
    assert doc["tags"] == ["timestamp_unparsed"]
    assert parse_time(1.5) is not None and parse_time("junk") is None and parse_time(True) is None


def test_progress_advances_only_over_a_contiguous_prefix() -> None:
    p = Progress(0)
    b1, b2, b3 = Batch(), Batch(), Batch()
    p.add(b1, 10)
    p.add(b1, 20)
    p.add(b2, 30)
    p.skip(35)
    p.add(b3, 40)
    b2.resolve()  # out of order: b1 still pending
    assert p.acked == 0
    b1.resolve()
    assert p.acked == 35  # b1, b2 and the skipped bytes
    b3.resolve()
    assert p.acked == 40 and p.idle
    p.skip(50)
    assert p.acked == 50


async def test_pipeline_seals_by_count_and_budget_blocks_readers() -> None:
    budget = Budget(100)
    pipe = Pipeline(max_bytes=10_000, max_docs=2, budget=budget)
    p = Progress(0)
    pipe.add(p, 5, b"a" * 62)
    assert pipe.queue.empty()
    pipe.add(p, 9, b"a" * 62)
    assert pipe.queue.qsize() == 1 and budget.full
    batch = pipe.queue.get_nowait()
    pipe.resolved(batch)
    assert not budget.full and budget.used == 0 and p.acked == 9
    await pipe.drained()


def test_checkpoints_round_trip_atomically_and_corruption_is_reported(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    assert store.load() == {}
    entries = {"u1": Entry("/a", 1, 2, "fp", 0, 99)}
    store.save(entries)
    assert store.load() == entries
    assert not (tmp_path / "checkpoints.json.tmp").exists()
    (tmp_path / "checkpoints.json").write_bytes(b"{not json")
    with pytest.raises(CheckpointError):
        store.load()
    store.quarantine()
    assert store.load() == {} and (tmp_path / "checkpoints.json.corrupt").exists()


def test_dead_letter_keeps_reason_error_and_document_and_rotates(tmp_path: Path) -> None:
    dl = DeadLetter(str(tmp_path), 4096)
    dl.write([("mapper_parsing_exception", {"type": "m"}, b'{"index":{"_id":"x"}}', b'{"a":1}')])
    (line,) = (tmp_path / "dead-letter.ndjson").read_bytes().splitlines()
    rec = orjson.loads(line)
    assert rec["reason"] == "mapper_parsing_exception" and rec["document"] == {"a": 1}
    assert rec["action"]["index"]["_id"] == "x"
    big = [("r", None, b'{"index":{}}', b'{"m":"' + b"x" * 3000 + b'"}')]
    dl.write(big)
    dl.write(big)
    assert (tmp_path / "dead-letter.ndjson.1").exists()
    assert os.path.getsize(tmp_path / "dead-letter.ndjson") < 4096


@pytest.mark.parametrize(
    ("data", "cut"), [(b'plain 100% "q" \\ \t', False), (b"bad \xff", False), (b"cut", True)]
)
def test_fast_items_equal_the_general_builder(data: bytes, cut: bool) -> None:
    b = DocumentBuilder("logs-%Y", metadata={"kubernetes": {"pod": {"name": "p%d"}}})
    path = orjson.dumps("/l/100%.log")
    item = b.item_maker("0123456789abcdef", path, 0.0)(42, data, cut)
    action, source = b.build("0123456789abcdef", path, 42, data, 0.0, ("truncated",) if cut else ())
    assert item == action + b"\n" + source + b"\n"


def test_extend_fills_batches_like_add_does() -> None:
    items = [bytes([65 + i % 26]) * (10 + i % 7) for i in range(100)]
    ends = list(range(1, 101))
    one, many = Pipeline(120, 7, Budget(1 << 20)), Pipeline(120, 7, Budget(1 << 20))
    p1, p2 = Progress(0), Progress(0)
    for end, item in zip(ends, items, strict=True):
        one.add(p1, end, item)
    many.extend(p2, ends[:33], items[:33])
    many.extend(p2, ends[33:], items[33:])
    assert one.queue.qsize() == many.queue.qsize()
    while not one.queue.empty():
        a, b = one.queue.get_nowait(), many.queue.get_nowait()
        assert (a.items, a.nbytes) == (b.items, b.nbytes)
        one.resolved(a)
        many.resolved(b)
    assert p1.acked == p2.acked and one.budget.used == many.budget.used


def test_a_full_budget_seals_the_open_batch_so_reading_cannot_stall() -> None:
    budget = Budget(100)
    pipe = Pipeline(max_bytes=10_000, max_docs=1000, budget=budget)
    pipe.extend(Progress(0), [1, 2], [b"a" * 60, b"b" * 60])
    assert budget.full and pipe.current is None and pipe.queue.qsize() == 1
