"""Settings that become part of an outgoing request (a URL's host and path, an API key, a user
name, a token file) must not change the request's framing: a space, a line break or another
control character in them is a configuration error at start (one line, exit 2), never a
second header or a split request line sent to the server, and never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import (
    background,
    bad_setting_exits_2,
    free_port,
    http_get,
    run_sidecar,
    wait_until,
)

pytestmark = pytest.mark.integration


BAD_URLS = [
    ("http://127.0.0.1:9200/es\r\nX-Injected: 1", "path to hold only URL characters"),
    ("http://127.0.0.1:9200/a b", "path to hold only URL characters"),
    ("http://127.0.0.1:9200/\x01", "path to hold only URL characters"),
    ("http://bad host:9200", "expected a host name or address"),
    ("http://127.0.0.1\r\n:9200", "expected a host name or address"),
    ("http://[not:v6]:9200", "IPv6 address in [brackets]"),
    ("http://127.0.0.1:0", "port number from 1 to 65535"),
    ("http://127.0.0.1:9200/#frag", "no #fragment"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_URLS)
def test_logshipper_es_url_that_would_break_the_request_exits_2(url: str, expected: str) -> None:
    bad_setting_exits_2("logshipper", {"LOGSHIPPER_ES_HOSTS": url}, "LOGSHIPPER_ES_HOSTS", expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9200/?pipeline=x", "no ?query"),
        ("http://elastic:secret@127.0.0.1:9200", "use LOGSHIPPER_ES_USERNAME"),
    ],
)
def test_logshipper_es_url_parts_that_would_be_dropped_exit_2(url: str, expected: str) -> None:
    """A query or credentials in the URL were silently dropped: refused instead, saying so
    (and the password is not echoed)."""
    bad_setting_exits_2("logshipper", {"LOGSHIPPER_ES_HOSTS": url}, "LOGSHIPPER_ES_HOSTS", expected)
    assert "secret" not in run_sidecar("logshipper", env={"LOGSHIPPER_ES_HOSTS": url}).stderr


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("LOGSHIPPER_ES_API_KEY", "a2V5\r\nX-Injected: 1", "expected the encoded API key"),
        ("LOGSHIPPER_ES_API_KEY", "a2V5 aWQ=", "expected the encoded API key"),
        ("LOGSHIPPER_ES_USERNAME", "elastic\nX-Injected: 1", "without ':' or control"),
        ("LOGSHIPPER_ES_USERNAME", "a:b", "without ':' or control"),
    ],
)
def test_logshipper_credentials_that_would_break_the_header_exit_2(
    var: str, value: str, expected: str
) -> None:
    bad_setting_exits_2("logshipper", {var: value}, var, expected)
    if var.endswith("API_KEY"):  # a secret: never echoed
        assert "a2V5" not in run_sidecar("logshipper", env={var: value}).stderr


@pytest.mark.parametrize(("url", "expected"), BAD_URLS)
def test_adapter_target_that_would_break_the_request_exits_2(url: str, expected: str) -> None:
    bad_setting_exits_2("adapter", {"ADAPTER_TARGET": url}, "ADAPTER_TARGET", expected)


@pytest.mark.parametrize("app_path", ["/x\x01y", "/x\x7fy", "/x y"])
def test_adapter_paths_with_control_characters_exit_2(app_path: str) -> None:
    bad_setting_exits_2("adapter", {"ADAPTER_MODE": "paths", "ADAPTER_PATHS": f"/ok={app_path}"},
             "ADAPTER_PATHS", "expected /path=/app/path pairs")  # fmt: skip


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("AMBASSADOR_HEALTH_CHECK", "http:/ready\r\nX-Injected:1", "http:/path (URL characters"),
        ("AMBASSADOR_HEALTH_CHECK", "http:/ready\x01", "http:/path (URL characters"),
        ("AMBASSADOR_HASH_HEADER", "x user", "expected an HTTP header name"),
        ("AMBASSADOR_HASH_HEADER", "x:user", "expected an HTTP header name"),
        ("AMBASSADOR_TLS_SERVER_NAME", "db example", "expected a DNS name or an IP address"),
        ("AMBASSADOR_TLS_SERVER_NAME", "db\x01", "expected a DNS name or an IP address"),
    ],
)
def test_ambassador_settings_that_would_break_a_request_exit_2(
    var: str, value: str, expected: str
) -> None:
    """The health check's path goes into a request line, the hash header is looked up by
    name, the TLS server name is sent in every handshake: none may hold a space or a
    control character."""
    env = {var: value, "AMBASSADOR_UPSTREAMS": "127.0.0.1:1", "AMBASSADOR_MODE": "http"}
    bad_setting_exits_2("ambassador", env, var, expected)


def test_warloader_token_file_with_two_lines_is_refused_in_one_line(tmp_path: Path) -> None:
    """A bearer token file holding a second line would have become a second header (aiohttp
    refused it with a traceback logged as "unexpected failure"): one error naming the file,
    exit 2, and nothing is installed."""
    site, dest, token = tmp_path / "site", tmp_path / "dest", tmp_path / "token"
    site.mkdir()
    dest.mkdir()
    (site / "app.txt").write_text("v1")
    token.write_text("t0ken\nX-Injected: 1\n")
    port = free_port()
    serve = [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(site)]
    env = {
        "WARLOADER_SOURCES": f"http://127.0.0.1:{port}/app.txt",
        "WARLOADER_DEST": str(dest),
        "WARLOADER_BEARER_TOKEN_FILE": str(token),
        "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
    }
    with background(serve):
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/app.txt")[0] == 200, 15, "server")
        done = run_sidecar("warloader", env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "unexpected failure" not in done.stderr
    assert f"the bearer_token file {token} must hold one token" in done.stderr
    assert not (dest / "app.txt").exists()
