"""A scraper's Accept and Accept-Encoding headers choose the metrics page's format and encoding
(prometheus_client's negotiation): values that library cannot read (a version that is not a
number, an unknown escaping, a huge number) get the default page, never an error, a traceback
or a closed connection; the adapter's data page keeps only a bounded number of renderings."""

from __future__ import annotations

import contextlib
import gzip
import http.client
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as read_om
from prometheus_client.parser import text_string_to_metric_families as read_text

from tests.adapter_support import app_process
from tests.ambassador_support import rss_bytes
from tests.helpers import SidecarProcess, free_port, http_get, wait_until

pytestmark = pytest.mark.integration

ACCEPTS = (
    "application/openmetrics-text; version=x",
    "application/openmetrics-text; version=1.x.0",
    "application/openmetrics-text;version=",
    "application/openmetrics-text; version=" + "9" * 4400,
    "application/openmetrics-text; escaping=bogus; version=1.0.0",
    "text/plain; version=abc",
    "text/plain; version=1.0.0; escaping=",
    ";;;,,,=;version",
)
ENCODINGS = ("", "gzip;q=x", "identity, *;q=0", "x" * 3000)


@pytest.fixture(scope="module")
def processes() -> Iterator[dict[str, tuple[str, SidecarProcess]]]:
    """An admin /metrics page (warloader) and the adapter's data /metrics page."""
    with contextlib.ExitStack() as stack, app_process() as app:
        admin = free_port()
        env = {"WARLOADER_ADMIN_ADDR": f"127.0.0.1:{admin}", "WARLOADER_WATCH": "true"}
        loader = stack.enter_context(SidecarProcess("warloader", env))
        loader.wait_http(f"http://127.0.0.1:{admin}/healthz")
        listen = free_port()
        env = {
            "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
            "ADAPTER_LISTEN": f"127.0.0.1:{listen}",
            "ADAPTER_MODE": "metrics-from-health",
            "ADAPTER_TARGET": app.base + "/actuator/health",
            "ADAPTER_CACHE": "60s",  # one probe: every request is rendered from the same one
        }
        adapter = stack.enter_context(SidecarProcess("adapter", env))
        data = f"http://127.0.0.1:{listen}/metrics"
        wait_until(lambda: http_get(data)[0] == 200, 15, "the adapter's data page")
        yield {
            "admin": (f"127.0.0.1:{admin}", loader),
            "adapter-data": (f"127.0.0.1:{listen}", adapter),
        }


def get(host: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("page", ["admin", "adapter-data"])
@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "close"])
def test_unreadable_accept_headers_get_the_default_page(
    processes: dict[str, tuple[str, SidecarProcess]], page: str, close: bool
) -> None:
    """Each unreadable Accept (with odd Accept-Encodings) gets 200 and a page in the format its
    Content-Type names (the text format, or OpenMetrics when no version is given), on the
    answer-at-once path (keep-alive) and the task path (close); nothing is logged as failed."""
    host, proc = processes[page]
    for accept in ACCEPTS:
        for encoding in ENCODINGS:
            headers = {"Accept": accept, "Accept-Encoding": encoding}
            if close:
                headers["Connection"] = "close"
            status, got, body = get(host, headers)
            assert status == 200, (accept[:60], encoding[:60], body[:200])
            if got.get("content-encoding") == "gzip":  # `gzip;q=x`: the library says yes
                body = gzip.decompress(body)
            # no version at all is OpenMetrics 1.0.0; an unreadable one the text format
            if got["content-type"].startswith("application/openmetrics-text; version=1.0.0;"):
                assert list(read_om(body.decode())), accept[:60]
            else:
                assert got["content-type"].startswith("text/plain; version="), accept[:60]
                assert list(read_text(body.decode())), accept[:60]
    assert proc.proc.poll() is None
    assert "Traceback" not in proc.stderr() and '"level": "error"' not in proc.stderr()


def test_adapter_data_page_renderings_stay_bounded(
    processes: dict[str, tuple[str, SidecarProcess]],
) -> None:
    """2000 distinct 6 KB Accept headers for one probe: each is answered in the version it
    asked for, and the renderings kept per header are bounded: the process grows by less than
    the 14 MB that keeping them all takes."""
    host, proc = processes["adapter-data"]
    get(host, {"Accept": "application/openmetrics-text"})
    before = rss_bytes(proc.proc.pid)
    for n in range(2000):
        accept = f"application/openmetrics-text; version=1.0.{n}; x={'y' * 6000}"
        status, got, body = get(host, {"Accept": accept})
        assert status == 200 and body.endswith(b"# EOF\n")
        assert got["content-type"].startswith(f"application/openmetrics-text; version=1.0.{n};")
    grown = rss_bytes(proc.proc.pid) - before
    assert grown < 6 << 20, f"grew {grown >> 10} KiB"
