"""Members for the ambassador's hostile-input tests: real servers in threads (the ambassador is
the process under test), each misbehaving in one way."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator, Sequence

from tests.helpers import SidecarProcess, free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class _Echo(socketserver.BaseRequestHandler):
    """Echoes bytes; an HTTP GET gets a small 200 answer instead (keep-alive)."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(65536):
            sock.sendall(OK if data.startswith(b"GET ") else data)


class _Endless(socketserver.BaseRequestHandler):
    """Answers anything with a response head and an endless chunked body, as fast as the
    connection takes it; `sent` counts the bytes written by all its connections."""

    sent = 0

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        with contextlib.suppress(OSError):
            while True:
                sock.sendall(chunk)
                _Endless.sent += len(chunk)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 1024


@contextlib.contextmanager
def member(kind: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A member of the given behaviour on a free loopback port; yields the port."""
    server = _Server(("127.0.0.1", 0), kind)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def echo_member() -> contextlib.AbstractContextManager[int]:
    return member(_Echo)


def endless_member() -> contextlib.AbstractContextManager[int]:
    return member(_Endless)


def endless_sent() -> int:
    """Bytes the endless members have written so far."""
    return _Endless.sent


@contextlib.contextmanager
def ambassador_process(
    member_port: int, mode: str, prefix: Sequence[str] = ()
) -> Iterator[tuple[SidecarProcess, int, int]]:
    """`python -m sidecars.ambassador` in front of one member, ready; yields the process, its
    listen port and its admin port."""
    port, admin = free_port(), free_port()
    env = {
        "AMBASSADOR_LISTEN": f"127.0.0.1:{port}",
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member_port}",
        "AMBASSADOR_MODE": mode,
        "AMBASSADOR_HEALTH_CHECK": "none",
    }
    with SidecarProcess("ambassador", env, prefix=prefix) as amb:
        amb.wait_http(f"http://127.0.0.1:{admin}/readyz")
        yield amb, port, admin
