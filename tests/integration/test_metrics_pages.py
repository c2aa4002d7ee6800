"""Every metrics page of every sidecar, scraped from real running sidecars with traffic through
them (so every labelled family has series) and linted by `promtool check metrics`, which
scripts/setup installs: no page may draw a single lint warning. Each page is negotiated as
prometheus_client's own handler does: OpenMetrics when asked for (read back by Prometheus's own
parser), gzip when accepted (read by http.client and by curl)."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as read_om
from prometheus_client.parser import text_string_to_metric_families as read_text

from support.warloader import war_bytes
from tests.adapter_support import app_process
from tests.helpers import ROOT, SidecarProcess, background, free_port, go_tool, http_get, wait_until
from tests.hostile.ambassador_members import ambassador_process
from tests.logshipper_support import BulkSink, metric, shipper_env

pytestmark = pytest.mark.integration

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# The Accept header of a Prometheus 3 scrape
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PAGES = (
    "logshipper",
    "ambassador-tcp",
    "ambassador-http",
    "adapter",
    "adapter-data",
    "warloader",
)


class _Member(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def member() -> Iterator[int]:
    """A real HTTP member in a thread; its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Member)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get_through(port: int) -> bytes:
    """One GET through a proxy port on a fresh connection, read to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def started(stack: contextlib.ExitStack, name: str, env: dict[str, str], admin: int) -> None:
    proc = stack.enter_context(SidecarProcess(name, env))
    proc.wait_http(f"http://127.0.0.1:{admin}/healthz")


def start_logshipper(stack: contextlib.ExitStack, tmp: Path) -> str:
    sink = stack.enter_context(BulkSink())
    (tmp / "logs").mkdir(parents=True)
    (tmp / "logs" / "app.log").write_text("one\ntwo\nthree\n")
    env = shipper_env(tmp / "logs", tmp / "state", sink.url, "logs-lint")
    admin = "http://" + env["LOGSHIPPER_ADMIN_ADDR"]
    started(stack, "logshipper", env, int(admin.rsplit(":", 1)[1]))
    wait_until(
        lambda: metric(admin, "logshipper_documents_delivered_total") >= 3, 30, "3 delivered"
    )
    return admin + "/metrics"


def start_ambassador(stack: contextlib.ExitStack, mode: str, member_port: int) -> str:
    _, listen, admin = stack.enter_context(ambassador_process(member_port, mode))
    wait_until(lambda: get_through(listen).endswith(b"ok"), 15, f"a GET through {mode}")
    return f"http://127.0.0.1:{admin}/metrics"


def start_adapter(stack: contextlib.ExitStack, mode: str, target: str) -> tuple[str, str]:
    admin, listen = free_port(), free_port()
    env = {
        "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "ADAPTER_LISTEN": f"127.0.0.1:{listen}",
        "ADAPTER_MODE": mode,
        "ADAPTER_TARGET": target,
        "ADAPTER_CACHE": "0s",
    }
    started(stack, "adapter", env, admin)
    page = "/health" if mode == "health-from-metrics" else "/metrics"
    service = f"http://127.0.0.1:{listen}{page}"
    wait_until(lambda: http_get(service)[0] == 200, 15, f"the adapter's {page}")
    return f"http://127.0.0.1:{admin}/metrics", service


def start_warloader(stack: contextlib.ExitStack, tmp: Path, **extra: str) -> str:
    admin = free_port()
    tmp.mkdir()
    (tmp / "app.war").write_bytes(war_bytes())
    env = {
        "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "WARLOADER_SOURCES": str(tmp / "app.war"),
        "WARLOADER_DEST": str(tmp / "dest"),
        "WARLOADER_WATCH": "true",
        **extra,
    }
    proc = stack.enter_context(SidecarProcess("warloader", env))
    proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
    return f"http://127.0.0.1:{admin}/metrics"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Page name -> URL, each sidecar running and having done its job at least once."""
    tmp = tmp_path_factory.mktemp("pages")
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(member())
        app = stack.enter_context(app_process())
        urls = {
            "logshipper": start_logshipper(stack, tmp / "logshipper"),
            "ambassador-tcp": start_ambassador(stack, "tcp", port),
            "ambassador-http": start_ambassador(stack, "http", port),
            "adapter": start_adapter(stack, "health-from-metrics", app.base + "/metrics")[0],
            "adapter-data": start_adapter(
                stack, "metrics-from-health", app.base + "/actuator/health"
            )[1],
            "warloader": start_warloader(stack, tmp / "warloader"),
        }
        yield urls


def promtool_check(page: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [go_tool("promtool"), "check", "metrics"], input=page, capture_output=True, timeout=60
    )


@pytest.mark.parametrize("name", PAGES)
def test_page_is_promtool_clean(pages: dict[str, str], name: str) -> None:
    """`promtool check metrics` exits 0 and prints nothing for the page."""
    status, body = http_get(pages[name])
    assert status == 200
    result = promtool_check(body)
    problems = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0 and not problems.strip(), problems


def test_promtool_flags_a_page_against_the_naming_rules() -> None:
    """The gate can fail: a counter without `_total` and a gauge in milliseconds are flagged."""
    page = (
        b"# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests 1\n"
        b"# HELP x_delay_milliseconds Delay.\n# TYPE x_delay_milliseconds gauge\n"
        b"x_delay_milliseconds 1\n"
    )
    result = promtool_check(page)
    problems = result.stderr.decode()
    assert result.returncode == 3, problems
    assert 'x_requests counter metrics should have "_total" suffix' in problems
    assert 'x_delay_milliseconds use base unit "seconds"' in problems


@pytest.mark.parametrize("name", PAGES)
def test_no_created_series_by_default(pages: dict[str, str], name: str) -> None:
    """No page carries a `*_created` series unless asked for."""
    body = http_get(pages[name])[1].decode()
    assert [line for line in body.splitlines() if "_created" in line] == []


def test_metrics_created_setting_brings_the_created_series_back(tmp_path: Path) -> None:
    """`<SIDECAR>_METRICS_CREATED=true` exports a `_created` series beside each counter and
    histogram prometheus_client keeps."""
    with contextlib.ExitStack() as stack:
        url = start_warloader(stack, tmp_path / "w", WARLOADER_METRICS_CREATED="true")
        body = http_get(url)[1].decode()
    assert 'warloader_artifacts_created{outcome="installed"}' in body
    assert "warloader_load_seconds_created " in body
    assert promtool_check(body.encode()).returncode == 0


def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client (headers' `_` become `-`); status, headers (lower-case
    names), body as it came."""
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(
            method, "/" + path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def families(page: Iterator[object]) -> set[tuple[str, str, str]]:
    return {(f.name, f.type, f.documentation) for f in page}  # type: ignore[attr-defined]


def prometheus_reads_openmetrics(page: bytes, tmp: Path) -> subprocess.CompletedProcess[bytes]:
    """Prometheus's own OpenMetrics parser over the page (promtool's backfill, which needs a
    timestamp on every sample: one is added to each sample line)."""
    lines = page.decode().splitlines()
    stamped = [line if line.startswith("#") else line + " 1700000000" for line in lines]
    (tmp / "page.om").write_text("\n".join(stamped) + "\n")
    promtool = go_tool("promtool")
    return subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", tmp / "page.om", tmp / "blocks"],
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", PAGES)
def test_openmetrics_when_asked_for(pages: dict[str, str], name: str, tmp_path: Path) -> None:
    """A Prometheus scrape's Accept gets OpenMetrics 1.0.0 ending in `# EOF`, which
    Prometheus's parser reads, with the same families as the linted text page."""
    status, headers, body = fetch(pages[name], Accept=PROMETHEUS_ACCEPT)
    assert status == 200 and headers["content-type"].startswith(OPENMETRICS)
    assert body.endswith(b"\n# EOF\n")
    done = prometheus_reads_openmetrics(body, tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    text = http_get(pages[name])[1].decode()
    assert families(read_om(body.decode())) == families(read_text(text))


@pytest.mark.parametrize("name", PAGES)
def test_text_format_by_default(pages: dict[str, str], name: str) -> None:
    """No Accept, or the text format's: the Prometheus text format 0.0.4, no `# EOF`."""
    for accept in ("*/*", "text/plain;version=0.0.4"):
        status, headers, body = fetch(pages[name], Accept=accept)
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"# EOF" not in body and "Accept" in headers["vary"]


@pytest.mark.parametrize("name", PAGES)
def test_gzip_when_accepted(pages: dict[str, str], name: str) -> None:
    """`Accept-Encoding: gzip` gets the page gzipped (`Content-Encoding: gzip`, `Vary:
    Accept-Encoding`), in either format; without it the page is not compressed."""
    status, headers, body = fetch(pages[name], Accept_Encoding="gzip, deflate")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in headers["vary"]
    assert int(headers["content-length"]) == len(body)
    assert gzip.decompress(body).startswith(b"# HELP ")
    status, headers, body = fetch(pages[name], Accept=OPENMETRICS, Accept_Encoding="gzip")
    assert headers["content-encoding"] == "gzip" and headers["content-type"].startswith(OPENMETRICS)
    assert gzip.decompress(body).endswith(b"# EOF\n")
    status, headers, body = fetch(pages[name])
    assert "content-encoding" not in headers and body.startswith(b"# HELP ")


@pytest.mark.parametrize("name", PAGES)
def test_curl_compressed(pages: dict[str, str], name: str) -> None:
    """curl --compressed asks for gzip, gets it and decodes the page."""
    curl = shutil.which("curl")
    assert curl, "curl is missing: scripts/setup installs it"
    done = subprocess.run(
        [curl, "-sS", "--compressed", "-D", "-", pages[name]], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert b"\r\nContent-Encoding: gzip\r\n" in head
    assert body.startswith(b"# HELP ") and b"\n# TYPE " in body


def sample(page: str, name: str) -> float:
    """The value of the one sample `name` on a text-format page."""
    found = [
        s.value
        for family in read_text(page)
        for s in family.samples
        if s.name == name  # type: ignore[attr-defined]
    ]
    assert len(found) == 1, (name, found)
    return float(found[0])


@pytest.mark.parametrize(
    ("name", "family", "other"),
    [
        ("ambassador-http", "ambassador_upstream_request_seconds", "connect"),
        ("ambassador-tcp", "ambassador_upstream_connect_seconds", "request"),
    ],
)
def test_ambassador_latency_is_timed_finer_than_a_millisecond(
    pages: dict[str, str], name: str, family: str, other: str
) -> None:
    """An http listener times response heads as request_seconds, a tcp listener connects as
    connect_seconds (and has no request_seconds), with a clock finer than the event loop's
    1 ms steps: the sum of the observations is not a whole number of milliseconds."""
    page = http_get(pages[name])[1].decode()
    count, total = sample(page, family + "_count"), sample(page, family + "_sum")
    assert count >= 1 and 0 < total < 10
    assert abs(total * 1000 - round(total * 1000)) > 1e-6, total
    assert f"ambassador_upstream_{other}_seconds_count" not in page


HTTP_LOAD = ("requests_total", "in_flight")
TCP_LOAD = ("connections_total", "open_connections")


@pytest.mark.parametrize(
    ("name", "mine", "other"),
    [("ambassador-http", HTTP_LOAD, TCP_LOAD), ("ambassador-tcp", TCP_LOAD, HTTP_LOAD)],
)
def test_ambassador_names_what_each_mode_sends(
    pages: dict[str, str], name: str, mine: tuple[str, ...], other: tuple[str, ...]
) -> None:
    """An http listener counts requests sent to a member and those in flight, a tcp listener
    connections attempted and open: one quantity per name, never both under one."""
    samples = [line for line in http_get(pages[name])[1].decode().splitlines() if line[:1] != "#"]
    for suffix in mine:
        assert any(line.startswith(f"ambassador_upstream_{suffix}{{") for line in samples)
    for suffix in other:
        assert not any(line.startswith(f"ambassador_upstream_{suffix}") for line in samples)


def prometheus_api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as resp:
        doc = json.load(resp)
    assert doc["status"] == "success", doc
    return doc["data"]


def test_a_real_prometheus_scrapes_every_page(pages: dict[str, str], tmp_path: Path) -> None:
    """A real Prometheus server (as scripts/setup installs it) scrapes every page: each target
    is up with no error, in OpenMetrics (its metadata names counters without `_total`, as only
    OpenMetrics does), and no `_created` series is stored."""
    prometheus = go_tool("prometheus")
    jobs = []
    for name, url in pages.items():
        host, _, path = url.removeprefix("http://").partition("/")
        jobs.append(
            {"job_name": name, "metrics_path": "/" + path, "static_configs": [{"targets": [host]}]}
        )
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    web = free_port()
    argv = [
        str(prometheus),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{web}",
    ]
    base = f"http://127.0.0.1:{web}"
    with background(argv) as server:

        def all_up() -> bool:
            assert server.poll() is None, f"prometheus exited {server.returncode}"
            if http_get(base + "/-/ready")[0] != 200:
                return False
            targets = prometheus_api(base, "/api/v1/targets")["activeTargets"]
            for t in targets:
                assert t["lastError"] == "", (t["labels"]["job"], t["lastError"])
            return len(targets) == len(pages) and all(t["health"] == "up" for t in targets)

        wait_until(all_up, 60, "every page scraped")
        metadata = prometheus_api(base, "/api/v1/metadata")
        for counter in (
            "logshipper_lines_read",
            "ambassador_upstream_connections",
            "adapter_scrapes",
            "warloader_artifacts",
        ):
            assert metadata[counter][0]["type"] == "counter", counter
        assert "logshipper_lines_read_total" not in metadata
        created = prometheus_api(
            base,
            "/api/v1/series?" + urllib.parse.urlencode({"match[]": '{__name__=~".+_created"}'}),
        )
        assert created == []


@pytest.mark.parametrize("sidecar", ["logshipper", "ambassador", "adapter", "warloader"])
def test_readme_names_every_metric_on_the_admin_page(pages: dict[str, str], sidecar: str) -> None:
    """The sidecar's README names every metric family of its admin page (as the text format
    shows it: counters with `_total`), and names none that is not there."""
    on_page: set[str] = set()
    for name, url in pages.items():
        if name.split("-")[0] == sidecar and name != "adapter-data":
            types = [
                line.split()[2]
                for line in http_get(url)[1].decode().splitlines()
                if line.startswith("# TYPE ")
            ]
            on_page.update(t for t in types if t.startswith(f"{sidecar}_"))
    readme = (ROOT / "sidecars" / sidecar / "README.md").read_text()
    named = set(re.findall(rf"`({sidecar}_[a-z_]+)", readme))
    info = {f"{sidecar}_build_info"}  # the runtime's, in the top README
    assert len(on_page) > 3
    assert named - info == on_page - info
