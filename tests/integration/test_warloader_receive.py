"""warloader's direct body path (receive.py) against real loopback servers: plain and TLS,
asyncio and uvloop, drops, stalls, chunked bodies, and every byte kept for a resume."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from sidecars.warloader import fetch
from sidecars.warloader.errors import EXIT_SOURCE
from tests.helpers import run_sidecar
from tests.warloader_support import artifact_server, leftovers, run_loader, sha256, war_bytes

pytestmark = pytest.mark.integration

# several of the receiver's 2 MiB buffers, more than aiohttp buffers before the takeover
LARGE = war_bytes({"big.bin": os.urandom(9 << 20)})


def env_for(url: str, dest: Path, **extra: str) -> dict[str, str]:
    return {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest), **extra}


@pytest.fixture
def takeovers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Bytes each direct receive was asked for: a spy around the real function, so a test
    fails if the downloads quietly went through aiohttp's stream reader instead."""
    calls: list[int] = []
    real = fetch.receive

    async def spy(*args: Any) -> None:
        calls.append(args[2])
        await real(*args)

    monkeypatch.setattr(fetch, "receive", spy)
    yield calls


async def test_a_large_body_is_received_directly_and_verified(
    tmp_path: Path, takeovers: list[int]
) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        run = await run_loader(env_for(url, tmp_path))
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert len(takeovers) == 1 and 0 < takeovers[0] < len(LARGE)
        assert leftovers(tmp_path) == []
        assert (await run_loader(env_for(url, tmp_path))).outcomes() == ["unchanged"]


async def test_tls_body_is_received_directly(tmp_path: Path, takeovers: list[int]) -> None:
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
        assert len(takeovers) == 1


async def test_a_drop_keeps_every_byte_received_and_resumes_exactly_there(
    tmp_path: Path, takeovers: list[int]
) -> None:
    async with artifact_server() as srv:
        srv.faults.drop_after, srv.faults.drop_times = 5 << 20, 1
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        run = await run_loader(env_for(url, tmp_path, WARLOADER_RETRY_DELAY="10ms"))
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert srv.statuses == [200, 206]
        assert srv.requests[1]["Range"] == f"bytes={5 << 20}-"
        assert len(takeovers) == 2


async def test_a_stall_mid_body_times_out_keeps_the_bytes_and_resumes(
    tmp_path: Path, takeovers: list[int]
) -> None:
    async with artifact_server() as srv:
        srv.faults.stall_after, srv.faults.stall_times = 4 << 20, 1
        url = srv.put("/sample.war", LARGE) + f"#sha256={sha256(LARGE)}"
        run = await run_loader(
            env_for(url, tmp_path, WARLOADER_TIMEOUT="300ms", WARLOADER_RETRY_DELAY="10ms")
        )
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == LARGE
        assert srv.requests[1]["Range"] == f"bytes={4 << 20}-"
        assert any("timed out; retrying" in m for m in run.logs.messages())
        assert len(takeovers) == 2


async def test_a_server_that_stalls_every_time_gives_up_with_exit_3(
    tmp_path: Path, takeovers: list[int]
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
    tmp_path: Path, takeovers: list[int]
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
