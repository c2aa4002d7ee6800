"""The adapter's Prometheus text / OpenMetrics parser, and the health rules evaluated over
what it parsed: a Page or ParseError; every rule gives a status, never an exception."""

from __future__ import annotations

import math

from sidecars.adapter import exposition, rules

MAX_LEN = 8192
_RULES = rules.Evaluator(
    rules.load(
        """[
        {"name": "up", "metric": "up", "op": "<", "threshold": 1},
        {"name": "errors", "metric": "http_requests_total", "labels": {"code": {"re": "5.."}},
         "rate": true, "denominator": {"metric": "http_requests_total"}, "op": ">",
         "threshold": 0.1},
        {"name": "queue", "metric": "queue_depth", "agg": "max", "op": ">=", "threshold": 1e308,
         "labels": {"q": {"nre": "x.*"}, "z": "1"}},
        {"name": "count", "metric": "x", "agg": "count", "op": "!=", "threshold": 0,
         "on_missing": "warn"},
        {"name": "avg", "metric": "x", "agg": "avg", "op": "==", "threshold": -1e308}
        ]"""
    )
)


def fuzz(data: bytes) -> None:
    try:
        text = data.decode("utf-8")  # the adapter refuses a page that is not UTF-8 first
    except UnicodeDecodeError:
        return
    try:
        page = exposition.parse(text)
    except exposition.ParseError as exc:
        assert exc.line >= 0 and str(exc)
        return
    assert page.series_count <= text.count("\n") + 1
    for name, family in page.families.items():
        page.type_of(name)
        for value in family.series.values():
            exposition.format_value(value)
    for now in (1.0, 2.0):
        for outcome in _RULES.evaluate(page, now):
            assert outcome.status in rules.STATUSES, outcome
            assert outcome.observed is None or not math.isnan(outcome.observed), outcome
