"""Hostile framing from the app the adapter reads: every broken answer is a clear `fail` (or a
502 on a forwarded path) in bounded time, and the adapter keeps answering and drains on SIGTERM.

A chunk size of `-1` once made the adapter spin a core, grow to 400 MB and stop answering
/health and SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import SidecarProcess, free_port, http_get

pytestmark = pytest.mark.integration

CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
ANSWERS = {
    "negative chunk size": CHUNKED + b"-1\r\n",
    "signed chunk size": CHUNKED + b"+10\r\nqueue_depth 1\n\r\n0\r\n\r\n",
    "huge chunk size": CHUNKED + b"ffffffffffffffffffff\r\n",
    "CR in a chunk extension": CHUNKED + b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "CL and TE": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "list Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    "signed Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
    "obs-fold": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n folded\r\n\r\nok",
    "NUL in a header": b"HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 2\r\n\r\nok",
    "not HTTP": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
}


@contextlib.contextmanager
def raw_app(answer: bytes) -> Iterator[int]:
    """A TCP app that answers every request head with `answer` and then holds the connection
    open (a body that never ends must be bounded by the adapter's own deadline)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            held.append(conn)
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    part = conn.recv(4096)
                    if not part:
                        break
                    data += part
                conn.sendall(answer)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        srv.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


@pytest.mark.parametrize("case", list(ANSWERS))
def test_broken_framing_fails_health_and_the_adapter_stays_well(case: str) -> None:
    """Each broken answer makes /health a 503 `fail` within the read deadline; the adapter
    stays responsive, does not burn CPU or memory, and exits 0 on SIGTERM."""
    with raw_app(ANSWERS[case]) as app_port:
        port, admin = free_port(), free_port()
        env = {
            "ADAPTER_TARGET": f"http://127.0.0.1:{app_port}/metrics",
            "ADAPTER_LISTEN": f"127.0.0.1:{port}",
            "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "ADAPTER_PATHS": "/raw=/metrics",
            "ADAPTER_CACHE": "0s",
            "ADAPTER_TIMEOUT": "1s",
        }
        with SidecarProcess("adapter", env) as adapter:
            adapter.wait_http(f"http://127.0.0.1:{admin}/healthz")
            before = cpu_seconds(adapter.proc.pid)
            for _ in range(3):
                status, body = http_get(f"http://127.0.0.1:{port}/health", timeout=10)
                doc = json.loads(body)
                assert status == 503 and doc["status"] == "fail", doc
                status, _ = http_get(f"http://127.0.0.1:{port}/raw", timeout=10)
                assert status in (502, 504), case
            # each read ends within its 1 s deadline: a spinning reader would use all of it
            assert cpu_seconds(adapter.proc.pid) - before < 2.0
            with open(f"/proc/{adapter.proc.pid}/status") as f:
                rss_kib = int(next(ln.split()[1] for ln in f if ln.startswith("VmRSS:")))
            assert rss_kib < 200 * 1024
            started = time.monotonic()
            assert adapter.terminate(signal.SIGTERM, timeout=15) == 0
            assert time.monotonic() - started < 10
