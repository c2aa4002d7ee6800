"""Health from metrics: scrape the app, evaluate the rules, answer in application/health+json."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sidecars.adapter import exposition
from sidecars.adapter.appclient import AppClient
from sidecars.adapter.fetch import Fetched, FetchError, fetch
from sidecars.adapter.metrics import AdapterMetrics
from sidecars.adapter.rules import Evaluator, Outcome

ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
CONTENT_TYPE = "application/health+json"
_RANK = {"pass": 0, "warn": 1, "fail": 2}
# Parse big pages in a worker thread so the loop keeps answering (cached) probes meanwhile.
_THREAD_PARSE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """A ready-to-send answer: HTTP status and the serialized body."""

    http_status: int
    status: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    path: str  # on the app: the target URL's path and query
    timeout: float
    max_bytes: int


class HealthFromMetrics:
    """Produces one Answer per scrape; wrap it in a SingleFlight for the cache."""

    def __init__(
        self,
        client: AppClient,
        target: Target,
        evaluator: Evaluator,
        metrics: AdapterMetrics,
        log: logging.Logger,
    ) -> None:
        self.client, self.target, self.evaluator = client, target, evaluator
        self.metrics, self.log = metrics, log
        self._last = ("", "")

    async def scrape(self) -> Answer:
        """One answer per read; logs when the answer's status or reason changes, not per read."""
        try:
            answer, output = await self._scrape()
        except Exception as exc:  # a bug must not turn into a 500 for every probe
            self.log.exception("evaluating the target failed")
            self.metrics.scrapes.labels("internal_error").inc()
            text = f"internal error: {type(exc).__name__}"
            answer, output = self._answer([_scrape_check("fail", None, text, _now())], text), text
        if (answer.status, output) != self._last:
            level = logging.INFO if answer.status == "pass" else logging.WARNING
            self.log.log(level, "health is %s", answer.status, extra={"output": output})
            self._last = (answer.status, output)
        return answer

    async def _scrape(self) -> tuple[Answer, str]:
        started = time.monotonic()
        now = _now()
        try:
            got = await fetch(
                self.client, self.target.path, self.target.timeout, self.target.max_bytes, ACCEPT
            )
            page = await self._page(got)
        except FetchError as exc:
            self.metrics.scrapes.labels(exc.reason).inc()
            return self._answer([_scrape_check("fail", None, str(exc), now)], str(exc)), str(exc)
        finally:
            self.metrics.scrape_seconds.observe(time.monotonic() - started)
        self.metrics.scrapes.labels("ok").inc()
        outcomes = self.evaluator.evaluate(page, time.monotonic())
        for outcome in outcomes:
            self.metrics.rule_outcomes.labels(outcome.rule, outcome.status).inc()
        text = f"{page.series_count} series read in {got.seconds * 1000:.1f} ms"
        checks = [_scrape_check("pass", got.seconds, text, now)]
        checks += [_rule_check(o, now) for o in outcomes]
        failing = "; ".join(o.output for o in outcomes if o.status != "pass")
        return self._answer(checks, failing), failing

    async def _page(self, got: Fetched) -> exposition.Page:
        if got.status != 200:
            raise FetchError("http_status", f"the target answered HTTP {got.status}")
        mime = got.content_type.split(";", 1)[0].strip().lower()
        if mime in ("text/html", "application/json", "application/xhtml+xml"):
            raise FetchError("not_metrics", f"the target answered {mime}, not a metrics page")
        try:
            text = got.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FetchError("parse_error", f"the page is not UTF-8 (byte {exc.start})") from None
        try:
            if len(got.body) > _THREAD_PARSE_BYTES:
                return await asyncio.to_thread(exposition.parse, text)
            return exposition.parse(text)
        except exposition.ParseError as exc:
            raise FetchError("parse_error", f"malformed metrics page: {exc}") from None

    @staticmethod
    def _answer(checks: list[tuple[str, dict[str, Any]]], output: str) -> Answer:
        status = max((c["status"] for _, c in checks), key=_RANK.__getitem__)
        doc: dict[str, Any] = {
            "status": status,
            "description": "health of the app, from its metrics",
        }
        if status != "pass" and output:
            doc["output"] = output
        doc["checks"] = {key: [check] for key, check in checks}
        body = orjson.dumps(doc)
        return Answer(503 if status == "fail" else 200, status, body)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _scrape_check(
    status: str, seconds: float | None, output: str, now: str
) -> tuple[str, dict[str, Any]]:
    check: dict[str, Any] = {"componentType": "system", "status": status, "time": now}
    if seconds is not None:
        check["observedValue"] = round(seconds * 1000, 3)
        check["observedUnit"] = "ms"
    check["output"] = output
    return "target:scrape", check


def _rule_check(outcome: Outcome, now: str) -> tuple[str, dict[str, Any]]:
    check: dict[str, Any] = {"componentType": "metric", "status": outcome.status, "time": now}
    value = outcome.observed
    if value is not None:
        # JSON has no NaN or infinities: spell those the way the exposition format does.
        check["observedValue"] = value if math.isfinite(value) else exposition.format_value(value)
    check["output"] = outcome.output
    return f"rule:{outcome.rule}", check
