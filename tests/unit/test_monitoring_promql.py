"""The metric names the monitoring tests read out of PromQL and out of /metrics pages: a name
missed here would let a renamed metric pass unnoticed."""

from __future__ import annotations

import re

import pytest

from tests.monitoring_support import (
    DASHBOARDS,
    dashboard_queries,
    exposed_names,
    load_dashboard,
    metric_names,
    rules,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('rate(a_total{route="health", code=~"5.."}[5m])', {"a_total"}),
        ("sum by (namespace, pod) (a) / on (pod) group_left (node) b", {"a", "b"}),
        ("a unless a offset 10m or b > bool 1e3", {"a", "b"}),
        (
            "histogram_quantile(0.99, sum without (le) (rate(h_bucket[$__rate_interval])))",
            {"h_bucket"},
        ),
        ('time() - max(ts{label="sum(x) by (y)"} > 0)', {"ts"}),
        ("deriv(ns:lag:sum[10m]) > 0 and ns:lag:sum > Inf", {"ns:lag:sum"}),
        ("max_over_time(a[1h:5m]) > -NaN", {"a"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    """Selectors are found through functions, aggregations, matching, offsets and strings;
    functions, keywords, labels, numbers and durations are not names."""
    assert metric_names(expr) == names


def _every_expression() -> list[str]:
    exprs = [str(r["expr"]) for r in rules()]
    for path in DASHBOARDS:
        exprs += [e for _, e in dashboard_queries(load_dashboard(path))]
    return exprs


@pytest.mark.parametrize("expr", _every_expression())
def test_no_sidecar_metric_of_the_examples_is_missed(expr: str) -> None:
    """Every word of an expression that starts like a sidecar's or the process's metric (outside
    label values) is among the names read from it."""
    words = re.findall(
        r"(?<![\w:])(?:logshipper|ambassador|adapter|warloader|process|kube|app_health)_\w+(?![\w:])",
        re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr),
    )
    assert set(words) <= metric_names(expr)


def test_exposed_names_from_type_lines_and_samples() -> None:
    """A page yields its samples' names and those its # TYPE lines promise."""
    page = (
        "# HELP c_total Events.\n# TYPE c_total counter\n"
        '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'
        '# TYPE g gauge\ng{a="b c"} 2\nx 1\n'
    )
    assert exposed_names(page) == {"c_total", "h_bucket", "h_sum", "h_count", "g", "x"}
