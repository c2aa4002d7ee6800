"""The shipper's reading of an Elasticsearch bulk answer: one result per document sent, each
OK, RETRY or DROP with a short reason, or BadResponse; for a well-formed answer the fast
all-OK check agrees with the full reading."""

from __future__ import annotations

import orjson

from sidecars.logshipper import bulk

from ._common import split

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    (count, create), body = split(data, 2)
    count, create_ops = count % 8, bool(create & 1)
    try:
        results = bulk.classify_response(body, count, create_ops)
    except bulk.BadResponse as exc:
        assert str(exc)
        results = None
    if results is not None:
        assert len(results) == count
        for r in results:
            assert r.outcome in bulk.Outcome and isinstance(r.reason, str), r
            assert len(r.reason) <= 64, r
    if bulk.all_ok(body, count) and _items(body) == count:
        # the fast check skips parsing on purpose; for a well-formed bulk answer it must
        # agree with the full reading
        assert results is not None and all(r.outcome is bulk.Outcome.OK for r in results), body


def _items(body: bytes) -> int:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return -1
    items = doc.get("items") if isinstance(doc, dict) else None
    return len(items) if isinstance(items, list) else -1
