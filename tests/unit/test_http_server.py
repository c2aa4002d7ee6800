"""The service port's request parsing cache and the request tally: pure logic."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from sidecars.adapter.metrics import AdapterMetrics
from sidecars.runtime import exposition
from sidecars.runtime.http import server
from sidecars.runtime.metrics import Registry

pytestmark = pytest.mark.unit


def test_a_repeated_head_gives_equal_but_separate_requests() -> None:
    head = b"GET /health?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/json"
    first, second = server.parse_head(head), server.parse_head(head)
    assert first == second and first is not second
    assert (first.method, first.path, first.accept, first.keep_alive) == (
        "GET",
        "/health",
        "application/json",
        True,
    )
    first.state = "handed over"
    assert server.parse_head(head).state is None  # nothing leaks from one request to the next


def test_bad_heads_are_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(server.BadRequest):
            server.parse_head(b"GET /health HTTP/1.1\r\nBad Header: x")


def test_the_cache_stays_bounded() -> None:
    for i in range(3 * server._PARSED_MAX):
        server.parse_head(b"GET /p%d HTTP/1.1\r\nHost: a" % i)
    assert len(server._parsed) <= server._PARSED_MAX
    long = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 2000
    assert server.parse_head(long).path == "/x" and long not in server._parsed


def page(registry: Registry) -> bytes:
    return exposition.text(registry.collect())


def test_tallied_requests_are_in_the_counter_when_scraped() -> None:
    registry = Registry()
    metrics = AdapterMetrics(registry)
    cell = metrics.tally.cell("forward", "200")
    assert b'adapter_requests_total{code="200",route="forward"} 0.0' in page(registry)
    cell[0] += 3
    assert b'adapter_requests_total{code="200",route="forward"} 3.0' in page(registry)
    cell[0] += 1
    assert b'adapter_requests_total{code="200",route="forward"} 4.0' in page(registry)


def test_http_date_is_what_email_utils_writes() -> None:
    """The Date header's IMF-fixdate matches email.utils.formatdate(usegmt=True) for every
    weekday, month, leap day and year tried (1970 to 2106, one instant each 37 hours)."""
    for seconds in range(0, 2**32, 37 * 3600 + 1):
        assert server.http_date(seconds) == formatdate(seconds, usegmt=True), seconds
