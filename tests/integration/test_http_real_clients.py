"""Real HTTP clients against the http ambassador (in front of real aiohttp members) and against
the adapter's port: curl in HTTP/1.0 and 1.1 (keep-alive, chunked upload, Expect), h2load in
HTTP/1.1 mode, wrk, Python's http.client and aiohttp's client. Each must get complete, correct
answers; none may hang (every run has a deadline)."""

from __future__ import annotations

import asyncio
import http.client
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.adapter_support import (
    AppProcess,
    adapter_in_process,
    app_fixture,  # noqa: F401 - provides the module-scoped `app` fixture
    env,
)
from tests.ambassador_support import ambassador, backends
from tests.integration.test_ambassador_http_wire import http_env

pytestmark = pytest.mark.integration


async def run(*argv: str, within: float = 30) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(within):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{argv[0]} exited {proc.returncode}: {text}"
    return text


@pytest.fixture
async def amb_url() -> AsyncIterator[str]:
    async with backends(2) as bs, ambassador(http_env(bs)) as amb:
        yield amb.url


@pytest.fixture
async def adapter_url(app: AppProcess) -> AsyncIterator[str]:
    app.gauge("queue_depth", 3)
    async with adapter_in_process(env(app, cache="60s", paths="/mapped=/metrics")) as (
        base,
        _,
        _svc,
    ):
        yield base


CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@needs_curl
@pytest.mark.parametrize("version", ["--http1.0", "--http1.1"])
async def test_curl_keeps_the_connection_through_the_ambassador(amb_url: str, version: str) -> None:
    """Three URLs in one curl run share one connection (1.0 asks with keep-alive)."""
    args = [version, "-H", "Connection: keep-alive"] if version == "--http1.0" else [version]
    out = await run(
        "curl", "-sS", "-v", "--max-time", "20", *args,
        f"{amb_url}/a", f"{amb_url}/b", f"{amb_url}/c",
    )  # fmt: skip
    assert out.count("< HTTP/1.1 200") == 3, out
    assert out.count("Connected to") == 1 and "Re-using existing connection" in out, out


@needs_curl
@pytest.mark.parametrize("expect", [True, False])
async def test_curl_chunked_upload_through_the_ambassador(
    amb_url: str, expect: bool, tmp_path: Path
) -> None:
    """A chunked upload of 1 MB (with or without Expect: 100-continue) is echoed whole."""
    data = "0123456789" * 100_000
    (tmp_path / "up").write_text(data)
    args = ["-H", "Transfer-Encoding: chunked"]
    args += ["-H", "Expect: 100-continue"] if expect else ["-H", "Expect:"]
    out = await run(
        "curl", "-sS", "--max-time", "20", *args, "--data-binary", f"@{tmp_path / 'up'}",
        f"{amb_url}/echo", within=40,
    )  # fmt: skip
    assert out == data


@pytest.mark.skipif(shutil.which("ab") is None, reason="apache2-utils (ab) is not installed")
async def test_ab_keep_alive_completes(amb_url: str, adapter_url: str) -> None:
    """`ab -k` (HTTP/1.0 with keep-alive) finishes every request, all on kept connections,
    through the ambassador and on the adapter's cached and mapped paths."""
    for url in (f"{amb_url}/x", f"{adapter_url}/health", f"{adapter_url}/mapped"):
        out = await run("ab", "-k", "-n", "300", "-c", "4", "-s", "5", url)
        assert "Failed requests:        0" in out and "Keep-Alive requests:    300" in out, out


@pytest.mark.skipif(shutil.which("h2load") is None, reason="nghttp2-client is not installed")
async def test_h2load_in_http11_mode(amb_url: str, adapter_url: str) -> None:
    """h2load --h1 completes every request with 2xx, through the ambassador and on the adapter."""
    for url in (f"{amb_url}/x", f"{adapter_url}/health", f"{adapter_url}/mapped"):
        out = await run("h2load", "--h1", "-n", "400", "-c", "4", "-T", "10", url)
        assert "400 succeeded, 0 failed, 0 errored" in out, out
        assert "status codes: 400 2xx" in out, out


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_wrk_sees_no_errors(amb_url: str, adapter_url: str) -> None:
    """wrk (keep-alive, pipelined connections) for a second: requests, no socket errors."""
    for url in (f"{amb_url}/x", f"{adapter_url}/health"):
        out = await run("wrk", "-t", "1", "-c", "8", "-d", "1s", "--timeout", "5s", url)
        assert "requests in" in out and "Socket errors" not in out, out
        assert "Non-2xx" not in out, out


def _http_client_exchange(host: str, port: int, paths: list[str]) -> list[tuple[int, bytes]]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        out = []
        for path in paths:
            conn.request("GET", path)
            resp = conn.getresponse()
            out.append((resp.status, resp.read()))
        conn.request("POST", "/echo", body=b"posted", headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        out.append((resp.status, resp.read()))
        return out
    finally:
        conn.close()


async def test_python_http_client(amb_url: str) -> None:
    """http.client: keep-alive GETs and a POST on one connection through the ambassador."""
    host, port = amb_url.removeprefix("http://").split(":")
    got = await asyncio.to_thread(_http_client_exchange, host, int(port), ["/a", "/b", "/c"])
    assert [s for s, _ in got] == [200] * 4
    assert {b for _, b in got[:3]} <= {b"b0", b"b1"} and got[3][1] == b"posted"


async def test_aiohttp_client(amb_url: str, adapter_url: str) -> None:
    """aiohttp's client: GET, HEAD and a streamed POST through the ambassador; the adapter's
    /health and mapped path."""
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        for _ in range(3):
            async with s.get(f"{amb_url}/x") as resp:
                assert resp.status == 200 and await resp.read() in (b"b0", b"b1")
        async with s.head(f"{amb_url}/x") as resp:
            assert resp.status == 200

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(10):
                yield b"%d;" % i

        async with s.post(f"{amb_url}/echo", data=chunks()) as resp:
            assert await resp.read() == b"0;1;2;3;4;5;6;7;8;9;"
        async with s.get(f"{adapter_url}/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "pass"
        async with s.get(f"{adapter_url}/mapped") as resp:
            assert resp.status == 200 and b"queue_depth 3" in await resp.read()
