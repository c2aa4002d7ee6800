"""The exposition parser: both formats, escapes, special values, errors naming the line."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from sidecars.adapter.exposition import ParseError, format_value, parse, parse_labels

pytestmark = pytest.mark.unit

TEXT_004 = r"""# HELP http_requests_total Requests \\ with a \n newline
# TYPE http_requests_total counter
http_requests_total{method="GET",path="/a \"quoted\" \\ back\nslash"} 1027 1395066363000
http_requests_total{method="POST", path="/b",} 3
# a free comment
msg_size_bytes_bucket{le="0.5"} 1
msg_size_bytes_bucket{le="+Inf"} 4

msg_size_bytes_sum 2.5e3
msg_size_bytes_count 4
weird NaN
up +Inf
down -Inf
empty{} 7
"""


def test_text_format_values_labels_and_metadata() -> None:
    page = parse(TEXT_004)
    assert not page.openmetrics
    reqs = page.families["http_requests_total"].samples()
    assert reqs[0] == ({"method": "GET", "path": '/a "quoted" \\ back\nslash'}, 1027.0)
    assert reqs[1] == ({"method": "POST", "path": "/b"}, 3.0)
    assert page.helps["http_requests_total"] == "Requests \\ with a \n newline"
    assert page.type_of("http_requests_total") == "counter"
    assert page.type_of("msg_size_bytes_bucket") == "untyped"
    assert page.families["msg_size_bytes_bucket"].samples()[1] == ({"le": "+Inf"}, 4.0)
    assert page.families["msg_size_bytes_sum"].series[""] == 2500.0
    assert math.isnan(page.families["weird"].series[""])
    assert page.families["up"].series[""] == math.inf
    assert page.families["down"].series[""] == -math.inf
    assert page.families["empty"].samples() == [({}, 7.0)]
    assert page.series_count == 10


def test_openmetrics_with_exemplars_and_eof() -> None:
    text = (
        "# TYPE foo histogram\n# UNIT foo seconds\n"
        'foo_bucket{le="1.0"} 0 # {trace_id="KOO5S4vxi0o"} 0.67\n'
        'foo_bucket{le="+Inf"} 17 123.5 # {trace_id="oHg5SJYRHA0"} 9.8 1520879607.789\n'
        "foo_count 17\nfoo_sum 324789.3\n# EOF\n"
    )
    page = parse(text)
    assert page.openmetrics and page.type_of("foo_bucket") == "histogram"
    assert page.families["foo_bucket"].series['{le="+Inf"}'] == 17


def test_agrees_with_prometheus_client_on_its_own_output() -> None:
    registry = CollectorRegistry()
    c = Counter("jobs", "Jobs done", ["queue"], registry=registry)
    c.labels('we"ird\\q\nx').inc(3)
    c.labels("plain").inc(1)
    Gauge("temp_celsius", "Temperature", registry=registry).set(-3.5)
    Histogram("lat_seconds", "Latency", registry=registry).observe(0.3)
    Summary("size_bytes", "Size", registry=registry).observe(10)
    pages = [
        (generate_latest(registry).decode(), text_string_to_metric_families),
        (generate_openmetrics(registry).decode(), om_families),
    ]
    for text, their_parser in pages:
        ours = {
            (name, tuple(sorted(labels.items())), value)
            for name, family in parse(text).families.items()
            for labels, value in family.samples()
        }
        theirs = {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in their_parser(text)
            for s in f.samples
        }
        assert ours == theirs
        assert len(ours) > 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ok 1\nx{a="1} 2\n', "line 2: not a sample"),
        ("ok 1\n\n<html>\n", "line 3: not a sample"),
        ("x 1_000\n", "line 1"),
        ("x 0x10\n", "line 1"),
        ("x\n", "line 1"),
        ("x 1 2 3\n", "line 1"),
        ('x{a="\\q"} 1\n', "line 1"),
        ("x{a=b} 1\n", "line 1"),
        ("1x 1\n", "line 1"),
        ('x{a="1"} 1\ny 2\nx{a="1"} 3\n', "line 3: duplicate series"),
        ("x 1\nx{} 2\n", "line 2: duplicate series"),
        ("x{} 1\nx 2\n", "line 2: duplicate series"),
        ("x 1\nx{ } 2\n", "line 2: duplicate series"),
        ("x 1\n# EOF\nx 2\n", "line 2: text after # EOF"),
        ("# TYPE x sometype\nx 1\n", "line 1: unknown metric type 'sometype'"),
        ("# TYPE x gauge\n# TYPE x counter\n", "line 2: second TYPE for x"),
        ("# TYPE\n", "line 1: malformed metadata"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert message in str(err.value)


def test_last_line_without_newline_and_blank_page() -> None:
    assert parse("a 1").families["a"].series[""] == 1.0
    assert parse("").families == {}
    assert parse("# EOF").openmetrics


def test_repeated_label_name_is_an_error_when_read() -> None:
    with pytest.raises(ValueError, match="label 'a' appears twice"):
        parse_labels('{a="1",a="2"}')


def test_format_value() -> None:
    assert [format_value(v) for v in (math.nan, math.inf, -math.inf, 1.5)] == [
        "NaN",
        "+Inf",
        "-Inf",
        "1.5",
    ]
