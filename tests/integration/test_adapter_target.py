"""Reading the target through the adapter's own client: gzip, https, the auth file, no aiohttp."""

from __future__ import annotations

import gzip
import ssl
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from sidecars.adapter.appclient import AppClient
from sidecars.adapter.fetch import FetchError, fetch
from tests.adapter_support import QUEUE_RULE, adapter_in_process, get
from tests.helpers import ROOT, run_sidecar
from tests.integration.test_adapter_appclient import RawApp, serve

pytestmark = pytest.mark.integration

PAGE = b"# TYPE queue_depth gauge\nqueue_depth 7\n"


def test_the_adapter_never_imports_aiohttp() -> None:
    code = (
        "import sys\n"
        "import sidecars.adapter.__main__, sidecars.adapter.service\n"
        "from sidecars.adapter import appclient, fetch, forward, health, reverse, server\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def answer(body: bytes, encoding: str) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: %b\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (encoding.encode(), len(body), body)
    )


async def scrape(app: RawApp, max_bytes: int = 1 << 20) -> bytes:
    async with serve(app) as client:
        got = await fetch(client, "/metrics", 10.0, max_bytes, "*/*")
        assert got.status == 200
        return got.body


async def test_gzip_and_deflate_pages_are_decoded() -> None:
    app = RawApp([answer(gzip.compress(PAGE), "gzip")])
    assert await scrape(app) == PAGE
    assert b"Accept-Encoding: gzip, deflate\r\n" in app.requests[0]
    assert await scrape(RawApp([answer(zlib.compress(PAGE), "deflate")])) == PAGE


@pytest.mark.parametrize(
    ("wire", "reason", "message"),
    [
        # 16 MiB of zeros is 16 KiB compressed: the cap holds for the decoded size.
        (answer(gzip.compress(bytes(16 << 20)), "gzip"), "too_large", "exceeds the 1048576"),
        (answer(b"not gzip at all", "gzip"), "connection", "bad gzip body"),
        (answer(gzip.compress(PAGE)[:-12], "gzip"), "connection", "truncated gzip body"),
        (answer(PAGE, "br"), "connection", "unsupported content encoding 'br'"),
    ],
)
async def test_bad_or_huge_encoded_pages(wire: bytes, reason: str, message: str) -> None:
    with pytest.raises(FetchError, match=message) as err:
        await scrape(RawApp([wire]), max_bytes=1 << 20)
    assert err.value.reason == reason


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_app(ca: trustme.CA) -> AsyncIterator[tuple[str, list[str]]]:
    """A real https app on 127.0.0.1 with a certificate from a test CA; yields its base URL
    and the Authorization headers it received."""
    seen: list[str] = []

    async def metrics(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(body=PAGE, headers={"Content-Type": "text/plain"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_https_target_verified_with_the_ca_file(
    https_app: tuple[str, list[str]], ca: trustme.CA, tmp_path: Path
) -> None:
    base, seen = https_app
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    auth = tmp_path / "token"
    auth.write_text("Bearer first\n")
    env = {
        "ADAPTER_TARGET": base + "/metrics",
        "ADAPTER_CA_FILE": str(ca_file),
        "ADAPTER_AUTH_FILE": str(auth),
        "ADAPTER_RULES": f"[{QUEUE_RULE}]".replace("'", '"'),
        "ADAPTER_CACHE": "0s",
    }
    async with adapter_in_process(env) as (url, admin, svc):
        status, _, doc = await get(url + "/health")
        assert (status, doc["checks"]["rule:queue"][0]["observedValue"]) == (200, 7)
        assert seen == ["Bearer first"]
        auth.write_text("Bearer second\n")  # a rotated secret is picked up (within a second)
        svc.app_client.auth._at = -1e18  # without waiting that second in the test
        assert (await get(url + "/health"))[0] == 200
        assert seen[-1] == "Bearer second"
        auth.unlink()  # gone at run time: a failed read naming the file, not a crash
        svc.app_client.auth._at = -1e18
        status, _, doc = await get(url + "/health")
        assert status == 503 and f"cannot read the auth file {auth}" in doc["output"]
        assert "second" not in doc["output"]
        _, _, text = await get(admin + "/metrics")
        assert b'adapter_scrapes_total{result="auth_file"} 1.0' in text


async def test_path_mapping_over_https_with_a_token(
    https_app: tuple[str, list[str]], ca: trustme.CA, tmp_path: Path
) -> None:
    base, seen = https_app
    ca_file, auth = tmp_path / "ca.pem", tmp_path / "token"
    ca.cert_pem.write_to_path(str(ca_file))
    auth.write_text("Bearer t\n")
    env = {
        "ADAPTER_MODE": "paths",
        "ADAPTER_TARGET": base + "/metrics",
        "ADAPTER_PATHS": "/page=/metrics",
        "ADAPTER_CA_FILE": str(ca_file),
        "ADAPTER_AUTH_FILE": str(auth),
    }
    async with adapter_in_process(env) as (url, _, svc):
        for _ in range(3):  # the first on a new TLS connection, then from the pool
            status, _, body = await get(url + "/page")
            assert (status, body) == (200, PAGE)
        assert seen == ["Bearer t"] * 3 and len(svc.app_client._idle) == 1


async def test_https_target_with_an_unknown_ca_fails_with_the_reason(
    https_app: tuple[str, list[str]],
) -> None:
    base, seen = https_app
    env = {"ADAPTER_TARGET": base + "/metrics", "ADAPTER_CACHE": "0s"}
    async with adapter_in_process(env) as (url, admin, _):
        status, _, doc = await get(url + "/health")
        assert status == 503 and "CERTIFICATE_VERIFY_FAILED" in doc["output"]
        assert "cannot connect to the target" in doc["output"]
        _, _, text = await get(admin + "/metrics")
        assert b'adapter_scrapes_total{result="connect"} 1.0' in text
    assert seen == []


async def test_a_pooled_client_reuses_one_tls_connection(
    https_app: tuple[str, list[str]], ca: trustme.CA, tmp_path: Path
) -> None:
    base, seen = https_app
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = AppClient(base + "/metrics", ca_file=str(ca_file))
    try:
        for _ in range(3):
            assert (await fetch(client, "/metrics", 10.0, 1 << 20, "*/*")).body == PAGE
        assert len(client._idle) == 1 and len(seen) == 3
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ADAPTER_AUTH_FILE": "/nonexistent/token"}, "ADAPTER_AUTH_FILE='/nonexistent/token'"),
        (
            {"ADAPTER_TARGET": "https://127.0.0.1:1/m", "ADAPTER_CA_FILE": "/nonexistent/ca"},
            "ADAPTER_CA_FILE='/nonexistent/ca': expected a readable file",
        ),
        ({"ADAPTER_CA_FILE": "/etc/hostname"}, "needs an https:// ADAPTER_TARGET"),
        ({"ADAPTER_TARGET": "http://u:secret@127.0.0.1/m"}, "use ADAPTER_AUTH_FILE"),
    ],
)
def test_bad_credentials_settings_exit_2(env: dict[str, str], expected: str) -> None:
    done = run_sidecar("adapter", env=env)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
