"""warloader's direct body path (receive.py) against real loopback servers: plain and TLS,
asyncio and uvloop, drops, stalls, chunked bodies, and every byte kept for a resume."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest
import trustme

from sidecars.warloader import fetch
from sidecars.warloader.errors import EXIT_SOURCE
from sidecars.warloader.splicing import splice_socket
from tests.helpers import run_sidecar
from tests.warloader_support import (
    ArtifactServer,
    Run,
    artifact_server,
    leftovers,
    run_loader,
    sha256,
    war_bytes,
)

pytestmark = pytest.mark.integration

# several of the receiver's 2 MiB buffers, more than aiohttp buffers before the takeover
LARGE = war_bytes({"big.bin": os.urandom(9 << 20)})


def env_for(url: str, dest: Path, **extra: str) -> dict[str, str]:
    return {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest), **extra}


class Takeovers(list[int]):
    """Bytes each direct receive was asked for, and how many went through splice(2)."""

    spliced = 0


@pytest.fixture(params=["splice", "buffers"])
def takeovers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Takeovers:
    """Spies around the real direct-body functions, so a test fails if the downloads quietly
    went through aiohttp's stream reader instead. Each test runs twice: plain TCP bodies moved
    by splice(2) (splicing.py), and received into buffers (receive.py, which TLS uses)."""
    calls = Takeovers()
    receive, splice_body = fetch.receive, fetch.splice_body

    async def receive_spy(*args: Any) -> None:
        calls.append(args[2])
        await receive(*args)

    def splice_spy(*args: Any) -> None:
        calls.append(args[1])
        calls.spliced += 1
        splice_body(*args)

    monkeypatch.setattr(fetch, "receive", receive_spy)
    monkeypatch.setattr(fetch, "splice_body", splice_spy)
    if request.param == "buffers":
        monkeypatch.setattr(fetch, "splice_socket", lambda transport: None)
    calls.spliced = 0
    return calls


async def resumed_once(
    srv: ArtifactServer, dest: Path, at: int, takeovers: Takeovers, **env: str
) -> Run:
    """Load LARGE (pinned) from `srv`, set to fail once `at` bytes into the body: the retry
    must resume exactly there, through a second direct receive, and install every byte."""
    url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
    run = await run_loader(env_for(url, dest, WARLOADER_RETRY_DELAY="10ms", **env))
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == LARGE
    assert srv.requests[1]["Range"] == f"bytes={at}-"
    assert len(takeovers) == 2
    return run


async def test_a_large_body_is_received_directly_and_verified(
    tmp_path: Path, takeovers: Takeovers
) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        run = await run_loader(env_for(url, tmp_path))
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert len(takeovers) == 1 and 0 < takeovers[0] < len(LARGE)
        assert takeovers.spliced == (fetch.splice_socket is splice_socket)
        assert leftovers(tmp_path) == []
        assert (await run_loader(env_for(url, tmp_path))).outcomes() == ["unchanged"]


async def test_tls_body_is_received_directly(tmp_path: Path, takeovers: Takeovers) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    dest = tmp_path / "dest"
    async with artifact_server(server_ctx) as srv:
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        run = await run_loader(env_for(url, dest, WARLOADER_CA_FILE=str(ca_file)))
        assert run.code == 0, run.errors()
        assert (dest / "sample.war").read_bytes() == LARGE
        assert len(takeovers) == 1 and takeovers.spliced == 0  # the kernel holds ciphertext


async def test_a_drop_keeps_every_byte_received_and_resumes_exactly_there(
    tmp_path: Path, takeovers: Takeovers
) -> None:
    async with artifact_server() as srv:
        srv.faults.drop_after, srv.faults.drop_times = 5 << 20, 1
        await resumed_once(srv, tmp_path, 5 << 20, takeovers)
        assert srv.statuses == [200, 206]


async def test_a_stall_mid_body_times_out_keeps_the_bytes_and_resumes(
    tmp_path: Path, takeovers: Takeovers
) -> None:
    async with artifact_server() as srv:
        srv.faults.stall_after, srv.faults.stall_times = 4 << 20, 1
        run = await resumed_once(srv, tmp_path, 4 << 20, takeovers, WARLOADER_TIMEOUT="300ms")
        assert any("timed out; retrying" in m for m in run.logs.messages())


async def test_a_server_that_stalls_every_time_gives_up_with_exit_3(
    tmp_path: Path, takeovers: Takeovers
) -> None:
    async with artifact_server() as srv:
        srv.faults.stall_after, srv.faults.stall_times = 3 << 20, -1
        url = srv.put("/sample.war", LARGE)
        run = await run_loader(
            env_for(
                url,
                tmp_path,
                WARLOADER_TIMEOUT="200ms",
                WARLOADER_MAX_ATTEMPTS="2",
                WARLOADER_RETRY_DELAY="10ms",
            )
        )
        assert run.code == EXIT_SOURCE
        assert run.errors()[0].endswith("timed out after 2 attempts")
        assert not (tmp_path / "sample.war").exists()
        assert takeovers


async def test_a_chunked_body_takes_the_stream_path_with_the_size_limit(
    tmp_path: Path, takeovers: Takeovers
) -> None:
    async with artifact_server() as srv:
        srv.faults.chunked = True
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        run = await run_loader(env_for(url, tmp_path / "ok"))
        assert run.code == 0, run.errors()
        assert (tmp_path / "ok" / "sample.war").read_bytes() == LARGE
        limited = await run_loader(
            env_for(url, tmp_path / "limited", WARLOADER_MAX_DOWNLOAD_SIZE="4MiB")
        )
        assert limited.code == EXIT_SOURCE
        assert "body exceeds the limit of 4194304 bytes" in limited.errors()[0]
        assert takeovers == []  # no length announced: aiohttp's stream reader


async def test_subprocess_on_uvloop_receives_a_large_body(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    async with artifact_server() as srv:
        srv.faults.drop_after, srv.faults.drop_times = 5 << 20, 1
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        env = {
            **env_for(url, tmp_path, WARLOADER_RETRY_DELAY="10ms"),
            "WARLOADER_ADMIN_ADDR": "127.0.0.1:0",
        }
        done = await asyncio.to_thread(run_sidecar, "warloader", (), env)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert srv.requests[1]["Range"] == f"bytes={5 << 20}-"


class RawServer:
    """A bare asyncio HTTP/1.1 server on 127.0.0.1 for faults an aiohttp server will not
    produce: more body bytes than Content-Length announces, a reset (RST) mid-body."""

    def __init__(self, body: bytes, extra: bytes = b"", reset_after: int = 0) -> None:
        self.body, self.extra, self.reset_after = body, extra, reset_after
        self.ranges: list[str | None] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/sample.war"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        rng = next(
            (
                x.split(":", 1)[1].strip()
                for x in head.split("\r\n")
                if x.lower().startswith("range:")
            ),
            None,
        )
        self.ranges.append(rng)
        start = int(rng[6:].split("-")[0]) if rng else 0
        body = self.body[start:]
        status = "206 Partial Content" if start else "200 OK"
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", 'ETag: "v1"']
        if start:
            lines.append(f"Content-Range: bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if self.reset_after and len(self.ranges) == 1:  # the first response only
            writer.write(body[: self.reset_after])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST: the client sees ECONNRESET
            return
        writer.write(body + self.extra)
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except ConnectionError:
            pass


async def test_bytes_beyond_the_announced_length_are_not_taken(
    tmp_path: Path, takeovers: Takeovers
) -> None:
    async with RawServer(LARGE, extra=b"HTTP/1.1 200 OK\r\n" + os.urandom(1 << 20)) as srv:
        run = await run_loader(env_for(srv.url + f"#sha256={sha256(LARGE)}", tmp_path))
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert len(takeovers) == 1


async def test_a_reset_mid_body_is_retried(tmp_path: Path) -> None:
    # the reset may reach the client before or after it took the connection over: either way
    # the download is retried and completes
    async with RawServer(LARGE, reset_after=4 << 20) as srv:
        url = srv.url + f"#sha256={sha256(LARGE)}"
        run = await run_loader(env_for(url, tmp_path, WARLOADER_RETRY_DELAY="10ms"))
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert len(srv.ranges) == 2 and srv.ranges[0] is None
        assert any("retrying" in m for m in run.logs.messages())
