"""Hostile artifact servers: lying or absurd Content-Length, redirects to other schemes,
redirect loops, endless bodies, encoded bodies, oversized headers, a wrong digest. Each ends
with exit 3 (or 4) and one clear line, in bounded time and memory, and installs nothing."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecars.warloader import redirects
from sidecars.warloader.errors import EXIT_DIGEST, EXIT_SOURCE
from tests.hostile.test_warloader_slow_servers import raw_server
from tests.warloader_support import Run, artifact_server, leftovers, run_loader, sha256, war_bytes

pytestmark = pytest.mark.integration

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests name addresses off this machine (a metadata service): should a redirect be
    followed after all, the connect fails here instead of leaving loopback."""
    real = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def sock_connect(self: Any, sock: Any, address: Any) -> None:
        if not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            raise OSError(f"test: a connection to {address[0]} was attempted")
        await real(self, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", sock_connect)


def answering(head: bytes, body: bytes = b"", forever: bytes = b"") -> Answer:
    """A server that reads the request, sends `head` and `body`, then `forever` repeated
    until the client leaves."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + body)
        await writer.drain()
        while forever:
            writer.write(forever)
            await writer.drain()

    return answer


async def load(url: str, dest: Path, **extra: str) -> Run:
    env = {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest), "WARLOADER_MAX_ATTEMPTS": "2"}
    async with asyncio.timeout(30):
        run = await run_loader({**env, **extra})
    assert not (dest / "sample.war").exists()
    assert leftovers(dest) == []
    return run


def one_error(run: Run) -> str:
    [line] = run.errors()
    assert "\n" not in line and len(line) < 400, line
    return line


@pytest.mark.parametrize(
    ("length", "expect"),
    [
        (b"-1", "malformed response ("),
        (b"99999999999999999999999", "malformed response (Content-Length"),
        (b"5000000000", "5000000000 bytes is more than the limit of 4294967296"),
        (b"10, 20", "malformed response ("),
    ],
    ids=["negative", "beyond-int64", "beyond-the-limit", "two-values"],
)
async def test_an_absurd_content_length_is_refused(
    tmp_path: Path, length: bytes, expect: str
) -> None:
    """Negative, overflowing, too large or doubled Content-Length: exit 3, one line."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n"
    async with raw_server(answering(head, b"x" * 100)) as url:
        run = await load(url, tmp_path / "d")
    assert run.code == EXIT_SOURCE, run.logs.messages()
    assert expect in one_error(run)


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "ftp://127.0.0.1/sample.war", "gopher://127.0.0.1:70/x"],
)
async def test_a_redirect_to_another_scheme_is_refused(tmp_path: Path, location: str) -> None:
    """Only http(s) is ever fetched, also after a redirect: no local file is read."""
    head = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    async with raw_server(answering(head)) as url:
        run = await load(url, tmp_path / "d")
    assert run.code == EXIT_SOURCE
    assert one_error(run).endswith(f"redirected to {location}: only http and https are fetched")


async def test_a_redirect_loop_ends(tmp_path: Path) -> None:
    """Redirects are followed 10 times at most."""
    async with artifact_server() as srv:
        srv.redirects["/sample.war"] = "/again.war"
        srv.redirects["/again.war"] = "/sample.war"
        run = await load(srv.url + "/sample.war", tmp_path / "d")
    assert run.code == EXIT_SOURCE
    assert one_error(run).endswith("more than 10 redirects")


async def test_an_endless_chunked_body_stops_at_the_size_limit(tmp_path: Path) -> None:
    """No length announced and no end: the body is counted against the limit."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
    async with raw_server(answering(head, forever=chunk)) as url:
        run = await load(url, tmp_path / "d", WARLOADER_MAX_DOWNLOAD_SIZE="2MiB")
    assert run.code == EXIT_SOURCE
    assert "exceeds the limit of 2097152 bytes" in one_error(run)


async def test_bytes_past_the_declared_length_are_refused(tmp_path: Path) -> None:
    """A response followed at once by bytes nobody asked for (in the same reads): aiohttp's
    parser takes them for a next response and refuses the lot. Exit 3 with one line, and
    never an artifact with extra bytes. (Extra bytes arriving later are not read at all:
    the integration test of the take-over covers that.)"""
    war = war_bytes()
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(war)}\r\n\r\n".encode()
    async with raw_server(answering(head, war, forever=b"junk" * 4096)) as url:
        run = await load(f"{url}#sha256={sha256(war)}", tmp_path / "d")
    assert run.code == EXIT_SOURCE
    assert "malformed response (" in one_error(run)


async def test_a_gzip_encoded_bomb_is_stored_as_served_not_inflated(tmp_path: Path) -> None:
    """`Content-Encoding: gzip` on 64 MiB of zeros (64 KiB served): the loader asked for
    identity and never decodes, so it stores (and hashes) the 64 KiB served; the pinned
    digest of the real artifact then fails with exit 4."""
    bomb = gzip.compress(bytes(64 << 20), 9)
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    ).encode()
    war = war_bytes()
    async with raw_server(answering(head, bomb)) as url:
        run = await load(f"{url}#sha256={sha256(war)}", tmp_path / "d")
    assert run.code == EXIT_DIGEST
    assert f"sha256 is {sha256(bomb)}" in one_error(run)


async def test_an_oversized_header_line_is_refused(tmp_path: Path) -> None:
    """A 1 MiB header line is not buffered: aiohttp's line limit ends it, exit 3, one line."""
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\nContent-Length: 1\r\n\r\n"
    async with raw_server(answering(head, b"x")) as url:
        run = await load(url, tmp_path / "d")
    assert run.code == EXIT_SOURCE
    one_error(run)


async def test_a_wrong_digest_installs_nothing(tmp_path: Path) -> None:
    """The server serves other bytes than the pinned ones: exit 4, nothing installed."""
    async with artifact_server() as srv:
        url = srv.put("/sample.war", os.urandom(4096))
        run = await load(url + f"#sha256={'0' * 64}", tmp_path / "d")
    assert run.code == EXIT_DIGEST
    assert "expected 000" in one_error(run)


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/computeMetadata/v1/",
        "http://[fe80::1]/x",
        "http://0.0.0.0:9184/metrics",
    ],
    ids=["metadata", "metadata-v4-mapped", "v6-link-local", "unspecified"],
)
async def test_a_redirect_to_a_link_local_or_unspecified_address_is_refused(
    tmp_path: Path, location: str
) -> None:
    """A hostile server redirects to the cloud metadata service (credentials, installed into
    the app's volume if followed) or to 0.0.0.0 (this pod's own ports): refused before any
    connection, exit 3, one line."""
    head = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    async with raw_server(answering(head)) as url:
        run = await load(url, tmp_path / "d", WARLOADER_TIMEOUT="2s")
    assert run.code == EXIT_SOURCE
    line = one_error(run)
    assert "address: refused (the source is not on one)" in line, line


def test_address_kinds() -> None:
    """What the redirect rule counts as this pod's own or the cloud's addresses."""
    assert redirects.kind(ipaddress.ip_address("127.0.0.5")) == "loopback"
    assert redirects.kind(ipaddress.ip_address("::1")) == "loopback"
    assert redirects.kind(ipaddress.ip_address("::ffff:127.0.0.1")) == "loopback"
    assert redirects.kind(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert redirects.kind(ipaddress.ip_address("fe80::1")) == "link-local"
    assert redirects.kind(ipaddress.ip_address("0.0.0.0")) == "unspecified"
    assert redirects.kind(ipaddress.ip_address("10.0.0.1")) == ""
    assert redirects.kind(ipaddress.ip_address("203.0.113.7")) == ""
