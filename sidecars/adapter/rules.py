"""Health rules: load and validate them, and evaluate them over a parsed page."""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecars.adapter.exposition import Page, format_value
from sidecars.runtime.documents import parse_document, read_bounded

AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "min": min,
    "avg": lambda vs: math.fsum(vs) / len(vs),
    "count": lambda vs: float(len(vs)),
}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
STATUSES = ("pass", "warn", "fail")
_RULE_KEYS = {"name", "metric", "labels", "agg", "rate", "denominator", "op", "threshold"}
_RULE_KEYS |= {"severity", "on_missing"}
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class RuleError(ValueError):
    """A rule is invalid; the message names the rule."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher: `eq`, `ne`, `re` or `nre` (regexes match the whole value)."""

    label: str
    kind: str
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.kind == "eq":
            return actual == self.value
        if self.kind == "ne":
            return actual != self.value
        assert self.pattern is not None
        hit = self.pattern.fullmatch(actual) is not None
        return hit if self.kind == "re" else not hit


@dataclass(frozen=True, slots=True)
class Selector:
    """A metric name, label matchers and how to fold the matching series into one number."""

    metric: str
    matchers: tuple[Matcher, ...] = ()
    agg: str = "sum"

    def describe(self) -> str:
        ops = {"eq": "=", "ne": "!=", "re": "=~", "nre": "!~"}
        inner = ",".join(f"{m.label}{ops[m.kind]}{json.dumps(m.value)}" for m in self.matchers)
        return f"{self.agg}({self.metric}{{{inner}}})" if inner else f"{self.agg}({self.metric})"

    def value(self, page: Page) -> float | None:
        """The aggregate, or None when no series matches (count gives 0 instead)."""
        family = page.families.get(self.metric)
        if family is None:
            values: list[float] = []
        elif not self.matchers:
            values = list(family.series.values())
        else:
            values = [
                v for labels, v in family.samples() if all(m.matches(labels) for m in self.matchers)
            ]
        if not values:
            return 0.0 if self.agg == "count" else None
        return AGGREGATIONS[self.agg](values)


@dataclass(frozen=True, slots=True)
class Rule:
    """Trips (status = severity) when `observed op threshold`; else passes."""

    name: str
    selector: Selector
    op: str
    threshold: float
    severity: str = "fail"
    on_missing: str = "fail"
    rate: bool = False
    denominator: Selector | None = None

    def describe(self) -> str:
        text = self.selector.describe()
        if self.rate:
            text = f"rate({text})"
        if self.denominator is not None:
            den = self.denominator.describe()
            text += f" / {'rate(' + den + ')' if self.rate else den}"
        return text


@dataclass(frozen=True, slots=True)
class Outcome:
    """One rule's result for one scrape."""

    rule: str
    status: str
    observed: float | None
    output: str


def _parse(text: str) -> Any:
    """JSON as it is (the common case), else YAML; both bounded in nesting, YAML without
    aliases (runtime.documents)."""
    try:
        return parse_document(text, json_file=True)
    except ValueError:
        pass
    try:
        return parse_document(text, json_file=False)
    except ValueError as exc:
        raise RuleError(str(exc).replace("YAML", "YAML/JSON", 1)) from None


def load(source: str) -> list[Rule]:
    """Rules from inline YAML/JSON or from a file path; RuleError names the first bad rule."""
    text = source.strip()
    if not text:
        return []
    inline = text.startswith(("{", "[", "-")) or "\n" in text or ": " in text
    if not inline:
        try:
            text = read_bounded(text).decode("utf-8")
        except UnicodeDecodeError:
            raise RuleError("the rules file is not UTF-8 text") from None
        except ValueError as exc:  # unreadable, or larger than 1 MiB
            problem = str(exc).removeprefix("cannot read: ")
            raise RuleError(f"cannot read the rules file {text!r}: {problem}") from None
    doc = _parse(text)
    if isinstance(doc, dict) and set(doc) == {"rules"}:
        doc = doc["rules"]
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise RuleError("expected a list of rules (or a mapping with a 'rules' list)")
    rules = [_rule(i, item) for i, item in enumerate(doc, 1)]
    names = [r.name for r in rules]
    for name in names:
        if names.count(name) > 1:
            raise RuleError(f"rule {name!r}: the name is used twice")
    return rules


def _rule(index: int, item: Any) -> Rule:
    label = f"rule {index}"
    if not isinstance(item, dict):
        raise RuleError(f"{label}: expected a mapping, got {type(item).__name__}")
    name = item.get("name")
    if isinstance(name, str):
        label = f"rule {index} ({name!r})"
    try:
        return _build(item)
    except (RuleError, TypeError, ValueError) as exc:
        raise RuleError(f"{label}: {exc}") from None


def _build(item: dict[str, Any]) -> Rule:
    unknown = sorted(set(map(str, item)) - _RULE_KEYS)
    if unknown:
        raise RuleError(f"unknown keys {unknown}; expected some of {sorted(_RULE_KEYS)}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise RuleError("'name' must be 1-64 characters of letters, digits, _ . : -")
    op = item.get("op")
    if op not in OPERATORS:
        raise RuleError(f"'op' {op!r}: expected one of {' '.join(OPERATORS)}")
    threshold = item.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RuleError(f"'threshold' {threshold!r}: expected a number")
    if math.isnan(threshold):
        raise RuleError("'threshold' nan: expected a number (NaN never compares true)")
    severity = _enum(item, "severity", ("warn", "fail"), "fail")
    on_missing = _enum(item, "on_missing", STATUSES, "fail")
    rate = item.get("rate", False)
    if not isinstance(rate, bool):
        raise RuleError(f"'rate' {rate!r}: expected true or false")
    den = item.get("denominator")
    if den is not None and not isinstance(den, dict):
        raise RuleError("'denominator' must be a mapping with 'metric', 'labels', 'agg'")
    return Rule(
        name=name,
        selector=_selector(item),
        op=op,
        threshold=float(threshold),
        severity=severity,
        on_missing=on_missing,
        rate=rate,
        denominator=None if den is None else _selector(den, "denominator."),
    )


def _enum(item: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
    value = item.get(key, default)
    if value not in options:
        raise RuleError(f"{key!r} {value!r}: expected one of {', '.join(options)}")
    return str(value)


def _selector(item: Mapping[str, Any], where: str = "") -> Selector:
    if where and set(map(str, item)) - {"metric", "labels", "agg"}:
        raise RuleError(f"'{where[:-1]}' takes only 'metric', 'labels' and 'agg'")
    metric = item.get("metric")
    if not isinstance(metric, str) or not _METRIC_RE.fullmatch(metric):
        raise RuleError(f"'{where}metric' {metric!r}: expected a metric name")
    agg = _enum(item, "agg", tuple(AGGREGATIONS), "sum")
    labels = item.get("labels") or {}
    if not isinstance(labels, dict):
        raise RuleError(f"'{where}labels' must map label names to values or matchers")
    return Selector(metric, tuple(_matcher(str(k), v, where) for k, v in labels.items()), agg)


def _matcher(label: str, spec: Any, where: str) -> Matcher:
    if isinstance(spec, str | int | float) and not isinstance(spec, bool):
        return Matcher(label, "eq", str(spec))
    if not isinstance(spec, dict) or len(spec) != 1:
        raise RuleError(f"'{where}labels.{label}': expected a value or one of eq/ne/re/nre: ...")
    ((kind, value),) = spec.items()
    if kind not in ("eq", "ne", "re", "nre") or not isinstance(value, str):
        raise RuleError(f"'{where}labels.{label}': expected one of eq/ne/re/nre with a string")
    pattern = None
    if kind in ("re", "nre"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise RuleError(f"'{where}labels.{label}': bad regex {value!r}: {exc}") from None
    return Matcher(label, kind, value, pattern)


class Evaluator:
    """Evaluates rules scrape after scrape; keeps the previous values that rates need."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._previous: dict[str, tuple[float, float]] = {}

    def evaluate(self, page: Page, now: float) -> list[Outcome]:
        return [self._safe(rule, page, now) for rule in self.rules]

    def _safe(self, rule: Rule, page: Page, now: float) -> Outcome:
        try:
            return self._one(rule, page, now)
        except ValueError as exc:  # a series whose labels cannot be read (e.g. a repeated name)
            return Outcome(rule.name, "fail", None, f"{rule.describe()}: {exc}")

    def _one(self, rule: Rule, page: Page, now: float) -> Outcome:
        num = rule.selector.value(page)
        den = rule.denominator.value(page) if rule.denominator else 1.0
        if rule.rate:
            num = self._rate(rule.name + "\0n", num, now)
            if rule.denominator is not None:
                den = self._rate(rule.name + "\0d", den, now)
        missing = self._missing(rule, page, num, den)
        if missing is not None:
            return Outcome(rule.name, missing[0], None, missing[1])
        assert num is not None and den is not None
        if den == 0.0:
            return Outcome(rule.name, "pass", None, f"{rule.describe()}: denominator is 0")
        observed = num / den if rule.denominator is not None else num
        if math.isnan(observed):
            return Outcome(rule.name, rule.on_missing, None, f"{rule.describe()} is NaN")
        tripped = OPERATORS[rule.op](observed, rule.threshold)
        shown = format_value(observed)
        if tripped:
            text = f"{rule.describe()} = {shown} {rule.op} {rule.threshold:g}"
            return Outcome(rule.name, rule.severity, observed, text)
        return Outcome(rule.name, "pass", observed, f"{rule.describe()} = {shown}")

    @staticmethod
    def _missing(
        rule: Rule, page: Page, num: float | None, den: float | None
    ) -> tuple[str, str] | None:
        """(status, reason) when the rule has no number to compare, else None."""
        for sel, value in ((rule.selector, num), (rule.denominator, den)):
            if sel is None or value is not None:
                continue
            if sel.metric not in page.families:
                return rule.on_missing, f"metric {sel.metric} is missing from the target's page"
            if rule.rate and sel.value(page) is not None:
                # Not a fault: a rate needs two scrapes; say so without failing the probe.
                return "warn", f"{rule.describe()}: waiting for a second scrape"
            return rule.on_missing, f"no series matches {sel.describe()}"
        return None

    def _rate(self, key: str, value: float | None, now: float) -> float | None:
        if value is None:
            self._previous.pop(key, None)
            return None
        before = self._previous.get(key)
        self._previous[key] = (now, value)
        if before is None or now <= before[0]:
            return None
        elapsed = now - before[0]
        # A counter that went down was reset (the app restarted): count from zero.
        increase = value - before[1] if value >= before[1] else value
        return increase / elapsed
