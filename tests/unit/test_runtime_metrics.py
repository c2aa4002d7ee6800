"""The runtime's metrics and exposition write the pages prometheus_client (the library the
sidecars used before, now a test dependency only) writes for the same metrics, byte for byte,
in both formats, with and without `_created` series, and negotiate Accept and Accept-Encoding
as its own handler does."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import prometheus_client as pc
import pytest
from prometheus_client import exposition as pc_exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from sidecars.runtime import exposition, metrics
from sidecars.runtime.metrics import Family

pytestmark = pytest.mark.unit

HELP = 'Odd help: a back\\slash, a "quote",\na newline and ünïcode'
VALUES = ("plain", 'q"uote', "back\\slash", "new\nline", "ünï", "")
BUCKETS = (0.0005, 0.001, 0.25, 1, 2.5, 10, 30)
ACCEPTS = (
    "",
    "*/*",
    "text/plain",
    "text/plain;version=0.0.4",
    "text/plain; version=1.0.0",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "text/plain; version=abc",
    "application/openmetrics-text",
    "application/openmetrics-text;version=",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=0.0.1, text/plain",
    "application/openmetrics-text; version=2.0.0; escaping=dots",
    "application/openmetrics-text; escaping=values; version=1.0.7",
    "application/openmetrics-text; escaping=bogus; version=1.0.0",
    "application/openmetrics-text; version=x",
    "application/openmetrics-text; version=1.x.0",
    "application/openmetrics-text; version=" + "9" * 4400,
    "text/plain; version=1.0.0; escaping=dots",
    ";;;,,,=;version",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
)
ENCODINGS = ("", "gzip", "GZIP;q=1", "gzip;q=x", "deflate, gzip", "identity, *;q=0", "x" * 3000)


def fill(lib: Any, registry: Any, families: Callable[[], Iterable[Any]]) -> None:
    """The same metrics on `registry` with `lib`'s classes (ours or prometheus_client's)."""
    c = lib.Counter("demo_events_total", HELP, ["kind", "a_label"], registry=registry)
    c.labels("x", "y").inc()
    c.labels(5, "y").inc(2.5)
    for v in VALUES:
        c.labels(v, "z").inc(3)
    lib.Counter("demo_plain", "Plain", registry=registry).inc(12345678.9)
    lib.Counter("demo_unused", "Unused", ["kind"], registry=registry)
    g = lib.Gauge("demo_level", "Level", ["zone"], registry=registry)
    g.labels("b").set(-3.5)
    g.labels("a").inc(2)
    g.labels("a").dec(0.5)
    g.labels("f").set_function(lambda: 7)
    lib.Gauge("demo_big", "Big", registry=registry).set(1e22)
    lib.Gauge("demo_nan", "NaN", registry=registry).set(math.nan)
    lib.Gauge("demo_inf", "Inf", registry=registry).set(-math.inf)
    h = lib.Histogram("demo_seconds", HELP, ["op"], registry=registry, buckets=BUCKETS)
    for n, op in enumerate(("get", "set", "get", "del")):
        for value in (0.0001, 0.001, 0.3, 5, 100, n):
            h.labels(op).observe(value)
    lib.Histogram("demo_bytes", "Sizes", registry=registry, buckets=(10, 1e7, 2e9)).observe(9e6)

    class Families:
        def collect(self) -> Iterable[Any]:
            return families()

    registry.register(Families())


def their_families() -> Iterator[Any]:
    gauge = GaugeMetricFamily("demo_read", HELP, labels=["path"])
    for v in VALUES:
        gauge.add_metric([v], 1.5)
    yield gauge
    yield GaugeMetricFamily("demo_single", "Single", value=3)
    counter = CounterMetricFamily("demo_read_total", "Read", labels=["path"])
    counter.add_metric(["a"], 4)
    yield counter
    hist = HistogramMetricFamily("demo_latency_seconds", "Latency", labels=["listener"])
    hist.add_metric(["l"], [("0.1", 1.0), ("+Inf", 3.0)], 2.5)
    yield hist


def our_families() -> Iterator[Family]:
    gauge = metrics.GaugeFamily("demo_read", HELP, labels=["path"])
    for v in VALUES:
        gauge.add_metric([v], 1.5)
    yield gauge
    yield metrics.GaugeFamily("demo_single", "Single", value=3)
    counter = metrics.CounterFamily("demo_read_total", "Read", labels=["path"])
    counter.add_metric(["a"], 4)
    yield counter
    hist = metrics.HistogramFamily("demo_latency_seconds", "Latency", labels=["listener"])
    hist.add_metric(["l"], [("0.1", 1.0), ("+Inf", 3.0)], 2.5)
    yield hist


@pytest.fixture
def both(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[bool], tuple[Any, metrics.Registry]]]:
    """(theirs, ours) filled alike, with one clock for the `_created` series."""
    monkeypatch.setattr("time.time", lambda: 1765000000.125)

    def make(created: bool) -> tuple[Any, metrics.Registry]:
        if created:
            pc.enable_created_metrics()  # type: ignore[no-untyped-call]
        else:
            pc.disable_created_metrics()  # type: ignore[no-untyped-call]
        theirs, ours = pc.CollectorRegistry(), metrics.Registry(created=created)
        fill(pc, theirs, their_families)
        fill(metrics, ours, our_families)
        return theirs, ours

    yield make
    pc.enable_created_metrics()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("created", [False, True])
def test_pages_are_prometheus_clients_byte_for_byte(
    both: Callable[[bool], tuple[Any, metrics.Registry]], created: bool
) -> None:
    """Text and OpenMetrics pages of counters, gauges, histograms, label children and
    collector families are the same bytes as prometheus_client's, `_created` or not."""
    theirs, ours = both(created)
    page = exposition.text(ours.collect())
    assert page == pc.generate_latest(theirs)
    assert (b"_created" in page) is created
    om = pc_exposition.choose_encoder("application/openmetrics-text")[0](theirs)
    assert exposition.openmetrics(ours.collect()) == om


def expected(theirs: Any, accept: str) -> tuple[bytes, str]:
    """prometheus_client's page and Content-Type for an Accept, as the sidecars read it."""
    try:
        encode, content_type = pc_exposition.choose_encoder(accept)
    except (TypeError, ValueError):
        encode, content_type = pc_exposition.choose_encoder("")
    return encode(theirs), content_type


@pytest.mark.parametrize("accept", ACCEPTS, ids=lambda a: a[:50])
def test_negotiation_is_prometheus_clients(
    both: Callable[[bool], tuple[Any, metrics.Registry]], accept: str
) -> None:
    """Each Accept header gets the Content-Type and the body prometheus_client gives it."""
    theirs, ours = both(False)
    encode, content_type = exposition.encoder_for(accept)
    assert (encode(ours.collect()), content_type) == expected(theirs, accept)


def test_gzip_negotiation_is_prometheus_clients() -> None:
    for value in ENCODINGS:
        assert exposition.gzip_accepted(value) is pc_exposition.gzip_accepted(value), value


def test_numbers_are_written_as_go_writes_them() -> None:
    """Bounds and values as prometheus_client writes them (Go's exponent rules)."""
    numbers = [0, -0.0, 1, 0.1, 2.5e-05, 1e6, 1e7, 12345678.9, 1765000000.125, 2e9, 1e16]
    numbers += [1e22, -1e22, -12345678.9, math.inf, -math.inf, math.nan, 3, 1 / 3]
    for n in numbers:
        assert metrics.go_float(n) == floatToGoString(n), n  # type: ignore[no-untyped-call]


def test_process_metrics_are_prometheus_clients() -> None:
    """The process_* families have prometheus_client's names, types, help and order."""
    ours = [(f.name, f.type, f.documentation) for f in metrics.ProcessCollector().collect()]
    process = pc.ProcessCollector(registry=None)
    theirs = [(f.name, f.type, f.documentation) for f in process.collect()]
    assert ours == theirs and len(ours) == 6


def test_labels_are_checked() -> None:
    """Children need one value per label name; counters only go up; names register once."""
    registry = metrics.Registry()
    counter = metrics.Counter("x_total", "X", ["a"], registry=registry)
    for bad in ((), ("1", "2")):
        with pytest.raises(ValueError, match="expected values for"):
            counter.labels(*bad)
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("1").inc(-1)
    with pytest.raises(ValueError, match="registered twice"):
        metrics.Counter("x", "X again", registry=registry)
    counter.labels(1).inc()
    counter.labels("1").inc()
    assert registry.get_sample_value("x_total", {"a": "1"}) == 2.0
