"""Classify bulk answers: each item, and each whole request, is OK, RETRY or DROP."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, NamedTuple

import orjson


class Outcome(Enum):
    OK = "ok"
    RETRY = "retry"
    DROP = "drop"
    SPLIT = "split"


class ItemResult(NamedTuple):
    """What happened to one document: the outcome, a short bounded reason (a metric label),
    and Elasticsearch's error object for the dead-letter file."""

    outcome: Outcome
    reason: str
    error: Any


class BadResponse(Exception):
    """The answer is not a bulk response for the request that was sent."""


_OK = ItemResult(Outcome.OK, "", None)
_ERROR_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# a filtered bulk answer is a status and at most an error object per document: far less
# than this; a larger one is not parsed into objects (memory) but retried as bad
_ANSWER_BASE, _ANSWER_PER_ITEM = 1 << 20, 16 << 10
# error types that are about the cluster's state, not the document: retry them
_TRANSIENT = {
    "es_rejected_execution_exception",
    "cluster_block_exception",
    "unavailable_shards_exception",
    "process_cluster_event_timeout_exception",
    "circuit_breaking_exception",
    "node_not_connected_exception",
    "no_shard_available_action_exception",
}


def classify_status(status: int) -> Outcome:
    """A whole bulk request answered with `status`."""
    if 200 <= status < 300:
        return Outcome.OK
    if status == 413:
        return Outcome.SPLIT
    # 401/403: a credential or privilege problem an operator fixes; the data must wait, not go
    if status in (401, 403, 404, 408, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.DROP


def classify_item(item: Any, create: bool) -> ItemResult:
    """One entry of a bulk response's `items`."""
    if not isinstance(item, dict) or len(item) != 1:
        raise BadResponse(f"bulk item is not an object with one operation: {item!r:.200}")
    (result,) = item.values()
    if not isinstance(result, dict) or not isinstance(result.get("status"), int):
        raise BadResponse(f"bulk item without a status: {item!r:.200}")
    status: int = result["status"]
    if not 100 <= status <= 599:
        raise BadResponse(f"bulk item with status {status!r:.20}")
    if 200 <= status < 300:
        return _OK
    if status == 409 and create:
        return _OK  # the id is already there: delivered by an earlier attempt
    error = result.get("error")
    etype = error.get("type", "") if isinstance(error, dict) else ""
    if status == 429 or status >= 500 or status == 408 or etype in _TRANSIENT:
        return ItemResult(Outcome.RETRY, f"http_{status}", error)
    # the reason names a metric series: only an error type of Elasticsearch's shape
    reason = etype if isinstance(etype, str) and _ERROR_TYPE.fullmatch(etype) else f"http_{status}"
    return ItemResult(Outcome.DROP, reason, error)


def parse_body(body: Any) -> Any:
    """An answer's body as JSON when it is JSON bytes, else as it came (text, bytes)."""
    if isinstance(body, bytes):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return body.decode(errors="replace")
    return body


def all_ok(body: Any, count: int) -> bool:
    """The usual answer, recognised without parsing it: every one of `count` items
    succeeded (`errors` false, first as filter_path leaves it, and one status per item)."""
    return (
        isinstance(body, bytes)
        and body.startswith(b'{"errors":false,')
        and body.count(b'"status":') == count
    )


def classify_response(body: Any, count: int, create: bool) -> list[ItemResult]:
    """Per-item results of a 2xx bulk answer for a request of `count` documents."""
    if isinstance(body, bytes) and len(body) > _ANSWER_BASE + _ANSWER_PER_ITEM * count:
        raise BadResponse(f"bulk answer of {len(body)} bytes for {count} documents")
    body = parse_body(body)
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise BadResponse(f"not a bulk response: {str(body)[:200]!r}")
    items = body["items"]
    if len(items) != count:
        raise BadResponse(f"bulk response has {len(items)} items for {count} documents")
    if body.get("errors") is False:
        return [_OK] * count
    return [classify_item(item, create) for item in items]
