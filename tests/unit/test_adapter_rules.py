"""Rules: loading and validation (errors name the rule), evaluation over parsed pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecars.adapter.exposition import parse
from sidecars.adapter.rules import Evaluator, RuleError, load

pytestmark = pytest.mark.unit

PAGE = parse(
    'req_total{code="200",route="/a"} 90\n'
    'req_total{code="500",route="/a"} 6\n'
    'req_total{code="503",route="/b"} 4\n'
    "queue 12\n"
    "broken NaN\n"
)


def one(rule: dict[str, object], page_text: str | None = None) -> tuple[str, float | None, str]:
    (outcome,) = Evaluator(load(json.dumps([rule]))).evaluate(
        PAGE if page_text is None else parse(page_text), 1.0
    )
    return outcome.status, outcome.observed, outcome.output


def test_load_yaml_json_and_file(tmp_path: Path) -> None:
    yaml_text = "rules:\n  - {name: q, metric: queue, op: '>', threshold: 10}\n"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml_text)
    for source in (yaml_text, str(path), '[{"name":"q","metric":"queue","op":">","threshold":10}]'):
        (rule,) = load(source)
        assert (rule.name, rule.selector.metric, rule.threshold) == ("q", "queue", 10.0)
    assert load("") == [] and load("rules: []") == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "[{name: a, metric: x, op: '>', threshold: 1, colour: red}]",
            "rule 1 ('a'): unknown keys",
        ),
        ("[{metric: x, op: '>', threshold: 1}]", "rule 1: 'name'"),
        ("[{name: a, metric: '1x', op: '>', threshold: 1}]", "'metric' '1x'"),
        ("[{name: a, metric: x, op: '=>', threshold: 1}]", "'op' '=>'"),
        ("[{name: a, metric: x, op: '>', threshold: true}]", "'threshold' True"),
        ('[{"name": "a", "metric": "x", "op": ">", "threshold": NaN}]', "'threshold' nan"),
        ("[{name: a, metric: x, op: '>', threshold: .nan}]", "NaN never compares true"),
        ("[{name: a, metric: x, op: '>', threshold: 1, agg: median}]", "'agg' 'median'"),
        ("[{name: a, metric: x, op: '>', threshold: 1, severity: pass}]", "'severity'"),
        ("[{name: a, metric: x, op: '>', threshold: 1, on_missing: maybe}]", "'on_missing'"),
        ("[{name: a, metric: x, op: '>', threshold: 1, rate: 'yes'}]", "'rate'"),
        ("[{name: a, metric: x, op: '>', threshold: 1, labels: [a]}]", "'labels'"),
        ("[{name: a, metric: x, op: '>', threshold: 1, labels: {c: {like: x}}}]", "labels.c"),
        ("[{name: a, metric: x, op: '>', threshold: 1, labels: {c: {re: '['}}}]", "bad regex"),
        ("[{name: a, metric: x, op: '>', threshold: 1, denominator: {metrc: y}}]", "denominator"),
        (
            "[{name: a, metric: x, op: '>', threshold: 1}, {name: a, metric: y, op: '<', "
            "threshold: 1}]",
            "'a': the name is used twice",
        ),
        ("name: a", "expected a list of rules"),
        ("[1]", "rule 1: expected a mapping"),
        ("[{name: a", "not valid YAML/JSON"),
        ('[{"name": "a"', "not valid YAML/JSON"),
        ("/no/such/file.yaml", "cannot read the rules file"),
        # bounded like every config document: nesting, and no YAML aliases (alias bombs)
        ("[" * 5000, "nested"),
        ("- " * 3000 + "x", "nested deeper than 16 levels"),
        ("a: &a [x, x]\nb: [*a, *a]", "aliases (*name) are not allowed"),
        ("- name: a\x00\n", "not valid YAML/JSON: unacceptable character #x0000"),
    ],
)
def test_invalid_rules_name_the_rule(source: str, message: str) -> None:
    with pytest.raises(RuleError) as err:
        load(source)
    assert message in str(err.value)


BASE = {"name": "r", "metric": "req_total", "op": ">", "threshold": 50}


@pytest.mark.parametrize(
    ("extra", "status", "observed"),
    [
        ({}, "fail", 100.0),
        ({"agg": "max"}, "fail", 90.0),
        ({"agg": "min"}, "pass", 4.0),
        ({"agg": "avg", "threshold": 40}, "pass", 100 / 3),
        ({"agg": "count", "op": "!=", "threshold": 3}, "pass", 3.0),
        ({"labels": {"code": {"re": "5.."}}, "op": ">=", "threshold": 10}, "fail", 10.0),
        ({"labels": {"code": {"nre": "5.."}}}, "fail", 90.0),
        ({"labels": {"route": "/b"}, "severity": "warn", "op": "<"}, "warn", 4.0),
        ({"labels": {"route": {"ne": "/b"}}, "op": "==", "threshold": 96}, "fail", 96.0),
    ],
)
def test_aggregations_and_matchers(extra: dict[str, object], status: str, observed: float) -> None:
    got = one({**BASE, **extra})
    assert got[0] == status and got[1] == pytest.approx(observed)


def test_ratio_missing_nan_and_zero_denominator() -> None:
    ratio = {**BASE, "labels": {"code": {"re": "5.."}}, "denominator": {"metric": "req_total"}}
    assert one({**ratio, "threshold": 0.05})[:2] == ("fail", 0.1)
    status, observed, output = one(
        {**ratio, "denominator": {"metric": "queue"}}, 'req_total{code="500"} 1\n'
    )
    assert (status, observed) == ("fail", None) and "queue is missing" in output
    assert one(ratio, 'req_total{code="200"} 0\n')[2].endswith(
        "no series matches " + ('sum(req_total{code=~"5.."})')
    )
    status, _, output = one({**ratio, "on_missing": "pass"}, 'req_total{code="500"} 0\n')
    assert status == "pass" and "denominator is 0" in output
    assert one({**BASE, "metric": "broken"})[::2] == ("fail", "sum(broken) is NaN")
    assert one({**BASE, "metric": "absent", "on_missing": "warn"})[0] == "warn"
    assert one({**BASE, "metric": "absent", "agg": "count", "op": "<", "threshold": 1})[0] == (
        "fail"
    )


def test_rate_needs_two_scrapes_and_survives_counter_resets() -> None:
    ev = Evaluator(load(json.dumps([{**BASE, "rate": True, "threshold": 5}])))
    assert ev.evaluate(parse("req_total 100\n"), 10.0)[0].status == "warn"
    assert ev.evaluate(parse("req_total 120\n"), 20.0)[0].observed == 2.0
    out = ev.evaluate(parse("req_total 200\n"), 30.0)[0]
    assert (out.status, out.observed) == ("fail", 8.0)
    # The app restarted: the counter starts over, the increase is the new value.
    assert ev.evaluate(parse("req_total 30\n"), 40.0)[0].observed == 3.0
    # The metric vanished: missing (fail by default), and the rate starts over afterwards.
    assert ev.evaluate(parse("other 1\n"), 50.0)[0].status == "fail"
    assert ev.evaluate(parse("req_total 1\n"), 60.0)[0].status == "warn"


def test_rate_ratio_is_the_ratio_of_increases() -> None:
    rule = {
        **BASE,
        "labels": {"code": "500"},
        "denominator": {"metric": "req_total"},
        "rate": True,
        "threshold": 0.5,
    }
    ev = Evaluator(load(json.dumps([rule])))
    page = 'req_total{{code="500"}} {}\nreq_total{{code="200"}} {}\n'
    ev.evaluate(parse(page.format(10, 1000)), 1.0)
    out = ev.evaluate(parse(page.format(70, 1040)), 2.0)[0]
    assert (out.status, out.observed) == ("fail", 0.6)
    assert "rate(sum(req_total" in out.output


def test_a_series_with_a_repeated_label_fails_the_rule_that_reads_it() -> None:
    status, observed, output = one(
        {**BASE, "labels": {"code": "500"}}, 'req_total{code="500",code="1"} 1\n'
    )
    assert (status, observed) == ("fail", None)
    assert "label 'code' appears twice" in output
