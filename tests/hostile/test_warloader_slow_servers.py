"""Hostile servers in time: a body dripped a byte at a time, headers dripped or never sent,
a download that would take forever. Each gives up within its settings with exit 3, and
SIGTERM interrupts a download in flight at once, not after the drain timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme

from sidecars.warloader.errors import EXIT_FAILURE, EXIT_SOURCE
from tests.helpers import SidecarProcess, free_port
from tests.warloader_support import Run, artifact_server, leftovers, run_loader, war_bytes

pytestmark = pytest.mark.integration

BIG = war_bytes({"big.bin": os.urandom(3 << 20)})


def env_for(url: str, dest: Path, **extra: str) -> dict[str, str]:
    return {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest), **extra}


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object],
) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 whose connections `answer` handles; yields a URL to it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)  # type: ignore[misc]
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/sample.war"
    finally:
        server.close()
        for task in [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "handle"]:
            task.cancel()


async def failing(env: dict[str, str], code: int = EXIT_SOURCE) -> tuple[float, str]:
    """Run the loader (20 s at most): it must fail with `code` and one error line; the
    seconds it took and that line."""
    started = time.monotonic()
    async with asyncio.timeout(20):
        run = await run_loader(env)
    assert run.code == code, run.errors()
    [line] = run.errors()
    return time.monotonic() - started, line


async def test_a_body_dripped_a_byte_at_a_time_is_given_up(tmp_path: Path) -> None:
    """A byte every 50 ms never trips the idle timeout (30 s); the minimum rate (here 1 KiB/s
    over 500 ms) does: exit 3 within a few windows, the bytes kept for a resume."""
    async with artifact_server() as srv:
        srv.faults.drip = 0.05
        url = srv.put("/sample.war", BIG)
        seconds, line = await failing(
            env_for(
                url,
                tmp_path,
                WARLOADER_DOWNLOAD_MIN_RATE="1KiB",
                WARLOADER_DOWNLOAD_MIN_RATE_WINDOW="500ms",
                WARLOADER_MAX_ATTEMPTS="2",
            )
        )
    assert "slower than 1024 bytes/s for 0.5s" in line and "after 2 attempts" in line, line
    assert seconds < 6
    assert not (tmp_path / "sample.war").exists()


async def test_a_download_past_its_deadline_is_given_up(tmp_path: Path) -> None:
    """Fast enough for the minimum rate but endless in total: WARLOADER_DOWNLOAD_DEADLINE
    bounds one source's download, retries included."""
    async with artifact_server() as srv:
        srv.faults.trickle = 0.1  # 64 KiB per 100 ms: 30 s for 3 MiB
        url = srv.put("/sample.war", BIG)
        seconds, line = await failing(env_for(url, tmp_path, WARLOADER_DOWNLOAD_DEADLINE="1s"))
    assert "not finished within 1s" in line, line
    assert seconds < 4


async def test_headers_then_silence_times_out(tmp_path: Path) -> None:
    """Headers, then not a byte of the body: the idle timeout ends each try."""
    async with artifact_server() as srv:
        srv.faults.stall_after, srv.faults.stall_times = 0, -1
        url = srv.put("/sample.war", BIG)
        seconds, line = await failing(
            env_for(url, tmp_path, WARLOADER_TIMEOUT="300ms", WARLOADER_MAX_ATTEMPTS="2")
        )
    assert line.endswith("timed out after 2 attempts"), line
    assert seconds < 5


async def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    """The connection is accepted, the request read, no status line ever sent."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    async with raw_server(silent) as url:
        seconds, line = await failing(
            env_for(url, tmp_path, WARLOADER_TIMEOUT="300ms", WARLOADER_MAX_ATTEMPTS="1")
        )
    assert line.endswith("timed out"), line
    assert seconds < 5


async def test_headers_dripped_a_byte_at_a_time_are_given_up(tmp_path: Path) -> None:
    """A status line and headers sent one byte per 50 ms, forever: no idle timeout fires; the
    minimum rate counts an attempt without body bytes as too slow."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n" + b"X-Pad: a\r\n" * 10000
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    async with raw_server(drip) as url:
        seconds, line = await failing(
            env_for(
                url,
                tmp_path,
                WARLOADER_DOWNLOAD_MIN_RATE_WINDOW="500ms",
                WARLOADER_MAX_ATTEMPTS="1",
            )
        )
    assert "slower than" in line, line
    assert seconds < 5


async def test_sigterm_interrupts_a_dripping_download_at_once(tmp_path: Path) -> None:
    """The real process, downloading from a server that drips (the plain-TCP body is moved
    by a worker thread): SIGTERM ends it within 3 s, far below the 20 s drain timeout, with
    exit 1 and the bytes kept for the next run."""
    async with artifact_server() as srv:
        srv.faults.drip = 0.01
        url = srv.put("/sample.war", BIG)
        env = env_for(url, tmp_path, WARLOADER_ADMIN_ADDR=f"127.0.0.1:{free_port()}")
        proc = SidecarProcess("warloader", env)
        part = tmp_path / ".sample.war.warloader-partial"
        try:
            deadline = time.monotonic() + 20
            while not (part.exists() and part.stat().st_size > 0):
                assert proc.proc.poll() is None, proc.stderr()
                assert time.monotonic() < deadline, "the download never started"
                await asyncio.sleep(0.02)
            started = time.monotonic()
            code = await asyncio.to_thread(proc.terminate, signal.SIGTERM, 30)
            seconds = time.monotonic() - started
        finally:
            proc.__exit__()
    assert code == EXIT_FAILURE, proc.stderr()
    assert seconds < 3, f"SIGTERM took {seconds:.1f}s"
    assert leftovers(tmp_path) == [part.name, part.name + ".json"]


async def stopped(env: dict[str, str], ready: Callable[[], Awaitable[None]]) -> tuple[Run, float]:
    """Run the loader in-process; once `ready` returns, stop it (what SIGTERM does). The run
    and the seconds from the stop to its end (30 s at most in all)."""
    stopping = asyncio.Event()
    stopped_at: list[float] = []

    async def stop() -> None:
        await ready()
        stopped_at.append(time.monotonic())
        stopping.set()

    stopper = asyncio.create_task(stop())
    async with asyncio.timeout(30):
        run = await run_loader(env, stopping)
    ended = time.monotonic()
    await stopper
    return run, ended - stopped_at[0]


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("path", ["plain", "tls", "chunked"])
async def test_stopping_interrupts_a_dripping_download_on_every_body_path(
    tmp_path: Path, path: str
) -> None:
    """What SIGTERM does, in-process, on each of the three ways a body is received (splice
    worker, TLS buffers, chunked stream): the run returns within 2 s of the stop."""
    ctx = None
    extra: dict[str, str] = {}
    if path == "tls":
        ca = trustme.CA()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        extra["WARLOADER_CA_FILE"] = str(ca_file)
    dest = tmp_path / "dest"
    part = dest / ".sample.war.warloader-partial"
    async with artifact_server(ctx) as srv:
        srv.faults.drip = 0.01
        srv.faults.chunked = path == "chunked"
        url = srv.put("/sample.war", BIG)

        async def receiving() -> None:
            await until(lambda: bool(srv.requests) and srv.inflight > 0, "never started")
            await asyncio.sleep(0.3)  # some body bytes are on their way

        run, seconds = await stopped(env_for(url, dest, **extra), receiving)
    assert run.code == EXIT_FAILURE, run.errors()
    assert seconds < 2, f"took {seconds:.1f}s after the stop"
    assert leftovers(dest) in ([], [part.name, part.name + ".json"])


async def test_stopping_watch_mode_calls_off_a_dripping_download(tmp_path: Path) -> None:
    """--watch: a poll finds a new version on a server that drips it; the stop (SIGTERM)
    ends the run within 2 s with exit 0 instead of waiting for the download (the drain
    timeout would cut it at 20 s), the bytes kept to resume."""
    dest = tmp_path / "dest"
    part = dest / ".sample.war.warloader-partial"
    async with artifact_server() as srv:
        url = srv.put("/sample.war", war_bytes())

        async def new_version_downloading() -> None:
            await until((dest / "sample.war").exists, "the first version was never installed")
            srv.faults.drip = 0.01
            srv.put("/sample.war", BIG)
            await until(lambda: part.exists() and part.stat().st_size > 0, "never started")

        env = env_for(url, dest, WARLOADER_WATCH="true", WARLOADER_POLL_INTERVAL="100ms")
        run, seconds = await stopped(env, new_version_downloading)
    assert run.code == 0, run.errors()
    assert seconds < 2, f"took {seconds:.1f}s after the stop"
    assert leftovers(dest) == [part.name, part.name + ".json"]
