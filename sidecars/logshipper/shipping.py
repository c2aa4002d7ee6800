"""Send pre-serialized bulk bodies through the node pool; retry, split or dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sidecars.logshipper.batching import Piece
from sidecars.logshipper.bulk import (
    BadResponse,
    Outcome,
    all_ok,
    classify_response,
    classify_status,
    parse_body,
)
from sidecars.logshipper.deadindex import DeadLetterIndex
from sidecars.logshipper.deadletter import DeadLetter
from sidecars.logshipper.metrics import Metrics
from sidecars.logshipper.node import ConnectionTimeout, TlsError, TransportError
from sidecars.logshipper.pool import Pool
from sidecars.runtime import Backoff

Item = bytes  # action line + document line, each with its newline
_HEADERS = {"content-type": "application/x-ndjson", "accept": "application/json"}
# only what classification reads: a fraction of the full answer to parse per document
_TARGET = "/_bulk?filter_path=errors,items.*.status,items.*.error"  # nothing to percent-encode
_REPORT_EVERY = 30.0


class _TooLarge(Exception):
    pass


class _HttpError(Exception):
    """A whole bulk request answered with a non-2xx status (for the log line)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {_short(parse_body(body))}")


_NOT_ES = Exception(
    "the server is not Elasticsearch (no X-Elastic-Product: Elasticsearch header in its answer)"
)


class Sender:
    """Delivers a list of documents: returns once each one is acknowledged or dead-lettered.
    Failures of the whole request or of single items are retried forever with capped,
    jittered backoff; only the failed items are sent again."""

    def __init__(
        self,
        transport: Pool,
        *,
        create: bool,
        dead_letter: DeadLetter,
        metrics: Metrics,
        log: logging.Logger,
        on_answer: Callable[[], None],
        max_backoff: float,
        dead_letter_index: DeadLetterIndex | None = None,
    ) -> None:
        self.transport = transport
        self.create = create
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.log = log
        self.on_answer = on_answer
        self.max_backoff = max_backoff
        self.dead_letter_index = dead_letter_index
        self._failing_since: float | None = None
        self._answered = asyncio.Event()
        self._failures = 0
        self._last_report = 0.0
        transport.on_revive.append(self._wake)

    async def deliver(self, items: list[Piece], docs: int | None = None) -> None:
        """`items` holds `docs` items (all of them single items when None): runs of several
        are sent as they are, and taken apart into single items only when something other
        than the usual all-acknowledged answer comes back."""
        backoff = Backoff(0.05, self.max_backoff)
        pending = items
        count = len(items) if docs is None else docs
        while pending:
            try:
                pending = await self._attempt(pending, count)
            except _TooLarge:
                pending = _each(pending, count)
                if len(pending) == 1:
                    await self._drop([("request_too_large", {"status": 413}, *_split(pending[0]))])
                    return
                mid = len(pending) // 2
                await self.deliver(pending[:mid])
                await self.deliver(pending[mid:])
                return
            count = len(pending)
            if pending:
                await self._pause(backoff.next_delay())

    async def _pause(self, delay: float) -> None:
        """Back off, but retry at once when the outage that caused it ended (another request
        got through): a batch waiting out a long backoff would hold the checkpoint back."""
        answered = self._answered
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await answered.wait()

    async def _attempt(self, pieces: list[Piece], count: int) -> list[Piece]:
        """One bulk request of `count` items; returns the items to send again."""
        body = b"".join(pieces)
        started = time.monotonic()
        try:
            resp = await self.transport.request("POST", _TARGET, body, _HEADERS)
        except TlsError as exc:
            return self._retry_all(pieces, count, "tls", exc)
        except ConnectionTimeout as exc:
            return self._retry_all(pieces, count, "timeout", exc)
        except TransportError as exc:
            return self._retry_all(pieces, count, "connection", exc)
        status = resp.status
        if not 200 <= status < 300:
            self.metrics.bulk_seconds.observe(time.monotonic() - started)
            outcome = classify_status(status)
            if outcome is Outcome.SPLIT:
                self.on_answer()
                raise _TooLarge from None
            if outcome is Outcome.DROP:
                self.on_answer()
                reason = f"http_{status}"
                self.metrics.bulk_errors.labels(reason).inc()
                error = _error_of(status, resp.body)
                items = _each(pieces, count)
                await self._drop([(reason, error, *_split(item)) for item in items])
                return []
            error = _HttpError(status, resp.body)
            return self._retry_all(pieces, count, f"http_{status}", error)
        if resp.headers.get("x-elastic-product") != "Elasticsearch":
            return self._retry_all(pieces, count, "not_elasticsearch", _NOT_ES)
        self.metrics.bulk_seconds.observe(time.monotonic() - started)
        if all_ok(resp.body, count):
            self.on_answer()
            self._recovered()
            self.metrics.delivered.inc(count)
            return []
        try:
            results = classify_response(resp.body, count, self.create)
        except BadResponse as exc:
            return self._retry_all(pieces, count, "bad_response", exc)
        self.on_answer()
        self._recovered()
        retry: list[Piece] = []
        drops: list[tuple[str, Any, bytes, bytes]] = []
        delivered = 0
        for item, result in zip(_each(pieces, count), results, strict=True):
            if result.outcome is Outcome.OK:
                delivered += 1
            elif result.outcome is Outcome.RETRY:
                retry.append(item)
                self.metrics.retried.labels(self.metrics.reason(result.reason)).inc()
            else:
                drops.append((result.reason, result.error, *_split(item)))
        self.metrics.delivered.inc(delivered)
        if drops:
            await self._drop(drops)
        return retry

    def _retry_all(
        self, pieces: list[Piece], count: int, reason: str, exc: BaseException
    ) -> list[Piece]:
        self.metrics.bulk_errors.labels(reason).inc()
        self.metrics.retried.labels(reason).inc(count)
        now = time.monotonic()
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
        if self._failures == 1 or now - self._last_report >= _REPORT_EVERY:
            self._last_report = now
            self.log.warning(
                "bulk request failed; retrying with backoff",
                extra={
                    "reason": reason,
                    "error": _describe(exc),
                    "failures": self._failures,
                    "documents": count,
                },
            )
        return _each(pieces, count)

    def _wake(self) -> None:
        """The end of an outage (a node answers again) wakes requests backing off from it;
        items retried for their own 429s keep their backoff (waking them would press an
        overloaded node)."""
        if self._failing_since is not None:
            self._answered.set()
            self._answered = asyncio.Event()

    def _recovered(self) -> None:
        if self._failing_since is not None:
            self._wake()
            self.log.info(
                "Elasticsearch accepts bulk requests again",
                extra={
                    "failures": self._failures,
                    "seconds": round(time.monotonic() - self._failing_since, 1),
                },
            )
        self._failing_since = None
        self._failures = 0

    async def _drop(self, drops: list[tuple[str, Any, bytes, bytes]]) -> None:
        """Dead-letter refused documents (durably, before they count as resolved)."""
        while True:
            try:
                await asyncio.to_thread(self.dead_letter.write, drops)
                break
            except OSError as exc:
                self.metrics.file_errors.labels("dead_letter").inc()
                self.log.error(
                    "cannot write the dead-letter file; retrying",
                    extra={"path": str(self.dead_letter.path), "error": str(exc)},
                )
                await asyncio.sleep(5.0)
        reasons: dict[str, int] = {}
        for reason, *_ in drops:
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            self.metrics.dead_lettered.labels(self.metrics.reason(reason)).inc(count)
        sample = drops[0]
        if self.dead_letter_index is not None:
            await self.dead_letter_index.send(drops)
        self.log.warning(
            "documents refused by Elasticsearch went to the dead-letter file",
            extra={
                "documents": len(drops),
                "reasons": reasons,
                "sample_error": _short(sample[1]),
                "path": str(self.dead_letter.path),
            },
        )


def _each(pieces: list[Piece], count: int) -> list[Piece]:
    """The `count` single items of `pieces` (items and runs of items), each as bytes. JSON
    never holds a raw newline, so an item is two lines, whichever piece it is in."""
    if len(pieces) == count and all(isinstance(piece, bytes) for piece in pieces):
        return pieces
    items: list[Piece] = []
    for piece in pieces:
        lines = bytes(piece).split(b"\n")  # ends with the empty rest after the last newline
        items += map(b"%b\n%b\n".__mod__, zip(lines[0:-1:2], lines[1:-1:2], strict=True))
    if len(items) != count:
        raise ValueError(f"{len(items)} bulk items where {count} were counted")
    return items


def _split(item: Piece) -> tuple[bytes, bytes]:
    """(action, document) of an item; JSON never holds a raw newline, so the first splits."""
    action, _, source = bytes(item).rstrip(b"\n").partition(b"\n")
    return action, source


def _error_of(status: int, raw: Any) -> Any:
    body = parse_body(raw)
    if isinstance(body, dict):
        return body.get("error", body)
    return {"status": status, "body": str(body)[:500]}


def _describe(exc: BaseException) -> str:
    return _short(str(exc) or type(exc).__name__)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:300]
