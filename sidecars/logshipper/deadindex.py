"""The optional dead-letter index: refused documents with the reason, searchable in the cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from sidecars.logshipper.bulk import BadResponse, Outcome, classify_item, parse_body
from sidecars.logshipper.documents import iso_utc
from sidecars.logshipper.metrics import Metrics
from sidecars.logshipper.node import TransportError
from sidecars.logshipper.pool import Pool
from sidecars.runtime import Backoff

# (reason, Elasticsearch's error, action line, document line) of one refused document
Drop = tuple[str, Any, bytes, bytes]
_HEADERS = {"content-type": "application/x-ndjson", "accept": "application/json"}
_TARGET = "/_bulk?filter_path=errors,items.*.status,items.*.error"


def _error_fields(error: Any) -> dict[str, str]:
    if not isinstance(error, dict):
        return {"message": str(error)[:2000]}
    message = str(error.get("reason", ""))
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        message += f" (caused by: {cause.get('reason')})"
    return {"type": str(error.get("type", "")), "message": message[:2000]}


def dead_letter_item(index: str, now: str, drop: Drop) -> bytes:
    """The bulk item recording one refused document in the dead-letter index. The original
    document goes in as a string (`event.original`): its fields are what the target index
    refused, so they must not be mapped again; `message` and `log.*` are copied when they
    have the plain types. The id is the original one, so a re-send replaces itself."""
    reason, error, action, source = drop
    ((op, meta),) = orjson.loads(action).items()
    doc: dict[str, Any] = {
        "@timestamp": now,
        "reason": reason,
        "error": _error_fields(error),
        "event": {"original": source.decode(errors="replace")},
        "dead_letter": {"index": meta.get("_index"), "id": meta.get("_id"), "op": op},
    }
    try:
        original = orjson.loads(source)
    except orjson.JSONDecodeError:
        original = None
    if isinstance(original, dict):
        if isinstance(original.get("message"), str):
            doc["message"] = original["message"]
        log = original.get("log")
        if isinstance(log, dict):
            file = log.get("file")
            path = file.get("path") if isinstance(file, dict) else None
            offset = log.get("offset")
            if isinstance(path, str) and isinstance(offset, int):
                doc["log"] = {"file": {"path": path}, "offset": offset}
    head = {"create": {"_index": index, "_id": meta.get("_id")}}
    return orjson.dumps(head) + b"\n" + orjson.dumps(doc, default=str) + b"\n"


class DeadLetterIndex:
    """Copies dead letters (already durable in the dead-letter file) into an index. A few
    attempts for transient failures, then it gives up: the file stays the durable record,
    and a refused or failed copy never holds up the documents behind it."""

    def __init__(
        self,
        transport: Pool,
        index: str,
        metrics: Metrics,
        log: logging.Logger,
        attempts: int = 3,
    ) -> None:
        self.transport = transport
        self.index = index
        self.metrics = metrics
        self.log = log
        self.attempts = attempts

    async def send(self, drops: list[Drop]) -> None:
        now = iso_utc(time.time())
        pending = [dead_letter_item(self.index, now, drop) for drop in drops]
        backoff = Backoff(0.2, 2.0)
        refused: list[Any] = []
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(backoff.next_delay())
            try:
                pending, more, problem = await self._attempt(pending)
            except (TransportError, BadResponse) as exc:
                problem = str(exc)[:300] or type(exc).__name__
                continue
            refused += more
            if not pending:
                break
        self._count("refused", len(refused))
        self._count("failed", len(pending))
        if refused or pending:
            self.log.warning(
                "the dead-letter index did not take every dead letter; the dead-letter file "
                "holds them all",
                extra={
                    "index": self.index,
                    "refused": len(refused),
                    "failed": len(pending),
                    "error": str(refused[0])[:300] if refused else problem,
                },
            )

    async def _attempt(self, items: list[bytes]) -> tuple[list[bytes], list[Any], str]:
        """One bulk request: (items to try again, errors of refused items, last problem)."""
        resp = await self.transport.request("POST", _TARGET, b"".join(items), _HEADERS)
        status = resp.status
        if not 200 <= status < 300:
            problem = f"HTTP {status}: {str(parse_body(resp.body))[:200]}"
            if status == 429 or status >= 500:
                return items, [], problem
            return [], [parse_body(resp.body)] * len(items), problem
        body = parse_body(resp.body)
        answers = body.get("items") if isinstance(body, dict) else None
        if not isinstance(answers, list) or len(answers) != len(items):
            raise BadResponse(f"not a bulk answer for {len(items)} items: {str(body)[:200]}")
        retry: list[bytes] = []
        refused: list[Any] = []
        for item, answer in zip(items, answers, strict=True):
            result = classify_item(answer, create=True)
            if result.outcome is Outcome.RETRY:
                retry.append(item)
            elif result.outcome is not Outcome.OK:
                refused.append(result.error)
        self._count("indexed", len(items) - len(retry) - len(refused))
        return retry, refused, ""

    def _count(self, result: str, n: int) -> None:
        if n:
            self.metrics.dead_letter_index.labels(result).inc(n)
