"""The shipper's record -> bulk item step (JSON lines, record times, dated indices): an action
and a document that are both one valid JSON object on one line; nothing raises."""

from __future__ import annotations

from itertools import accumulate

import orjson

from sidecars.logshipper.documents import DocumentBuilder

from ._common import split

MAX_LEN = 2048
_PATH = orjson.dumps("/var/log/app/app.log")
_BUILDERS = (
    DocumentBuilder("logs"),
    DocumentBuilder("logs-%Y.%m.%d", json_lines=True, timestamp_field="time"),
    DocumentBuilder("logs-%Y", json_lines=True, json_target="json", create=True),
    DocumentBuilder("logs-%Y.%m", timestamp_regex=r"^(\S+)", metadata={"service": "app"}),
    DocumentBuilder("app", json_lines=True, timestamp_field="@timestamp", metadata={"k": 1}),
)


def _one_json_line(raw: bytes) -> dict[str, object]:
    assert b"\n" not in raw, raw
    doc = orjson.loads(raw)
    assert isinstance(doc, dict), raw
    return doc


def fuzz(data: bytes) -> None:
    (pick, when), record = split(data, 2)
    builder = _BUILDERS[pick % len(_BUILDERS)]
    now = 1.7e9 + when * 86400.0
    action, source = builder.build("uid-", _PATH, 123, record, now, ("t",) if pick & 8 else ())
    act = _one_json_line(action)
    assert set(act) in ({"index"}, {"create"}), act
    doc = _one_json_line(source)
    assert isinstance(doc.get("@timestamp"), str), doc
    assert isinstance(doc.get("log"), dict), doc
    lines = record.split(b"\n")
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    items = builder.items("uid-", _PATH, now, lines, starts)
    assert len(items) == len(lines)
    for item in items:
        first, second, end = item.split(b"\n")
        assert end == b"", item
        _one_json_line(first)
        _one_json_line(second)
    # the whole-chunk path, when it takes the chunk, gives the same bytes and item ends
    run = builder.run("uid-", _PATH, now, lines, starts, record + b"\n")
    if run is not None:
        body, ends = run
        assert body == b"".join(items), record
        want = list(accumulate(map(len, items)))
        assert [ends[i] for i in range(len(ends))] == want, record
