"""A flood of failing TLS handshakes on a terminating listener: the app (or anything that can
reach the port) opens hundreds of connections that send junk or never finish their handshake,
again and again. Every one is cut and counted, and the memory they held is given back once each
burst is over, instead of staying resident and creeping up burst after burst."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path

import pytest
import trustme

from tests.ambassador_support import echo_member, metric_value
from tests.helpers import SidecarProcess, free_port, http_get
from tests.tls_support import write_leaf

pytestmark = pytest.mark.integration
FAILURES = "ambassador_listener_tls_handshake_failures_total"
BURST = 300  # clients per burst
BURSTS = 4


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def failures(admin: int) -> float:
    _, body = http_get(f"http://127.0.0.1:{admin}/metrics", timeout=5.0)
    text = body.decode()
    return sum(
        metric_value(text, FAILURES, listener="default", reason=r) for r in ("protocol", "timeout")
    )


async def burst(port: int, admin: int, junk: bytes, want: float, within: float) -> None:
    """`BURST` clients connect; each sends `junk` (or nothing, and stalls); they stay open until
    the ambassador has counted every one of them as a failed handshake."""
    loop = asyncio.get_running_loop()
    clients = []
    try:
        for _ in range(BURST):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if junk:
                s.sendall(junk)
            clients.append(s)
        deadline = loop.time() + within
        while (got := await asyncio.to_thread(failures, admin)) < want:
            assert loop.time() < deadline, f"{got} of {want} failed handshakes counted"
            await asyncio.sleep(0.1)
        assert got == want
    finally:
        for s in clients:
            s.close()


async def test_bursts_of_failing_handshakes_are_counted_and_give_their_memory_back(
    tmp_path: Path,
) -> None:
    """Four bursts of 300 connections, alternately sending 8 KiB of junk and stalling until
    the handshake deadline: each connection is counted as a failed handshake (protocol or
    timeout), a real client is served afterwards, and a few seconds after the last burst the
    process holds at most 24 MiB more than before the first (before the fix: 65 MiB
    more, growing with every burst: the failed handshakes' buffers sat in reference cycles
    and then in glibc's fragmented heap)."""
    ca = trustme.CA()
    crt, key = write_leaf(ca.issue_cert("127.0.0.1"), tmp_path, "server")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with echo_member() as member:
        port, admin = free_port(), free_port()
        env = {
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member}",
            "AMBASSADOR_HEALTH_CHECK": "none",
            "AMBASSADOR_LISTEN": f"127.0.0.1:{port}",
            "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "AMBASSADOR_LISTEN_TLS_CERT_FILE": crt,
            "AMBASSADOR_LISTEN_TLS_KEY_FILE": key,
            "AMBASSADOR_MAX_CONNECTIONS": str(BURST + 16),
            "AMBASSADOR_LISTEN_TLS_HANDSHAKE_TIMEOUT": "1s",
        }
        with SidecarProcess("ambassador", env) as proc:
            await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{admin}/readyz")

            async def served() -> None:
                async with asyncio.timeout(10):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                    writer.write(b"still here\n")
                    assert await reader.readexactly(11) == b"still here\n"
                    writer.close()

            await served()
            before = rss_mib(proc.proc.pid)
            junk = os.urandom(8192)
            for n in range(BURSTS):
                await burst(port, admin, junk if n % 2 == 0 else b"", BURST * (n + 1), 20)
            await served()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while (grown := rss_mib(proc.proc.pid) - before) > 24:
                assert loop.time() < deadline, f"still {grown:.1f} MiB above the start"
                await asyncio.sleep(0.2)
            assert proc.proc.poll() is None
