"""`python -m sidecars.ambassador` as a real process: proxying, SIGHUP reload, SIGTERM drain,
and exit codes for bad settings."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, free_port, http_get, run_sidecar, wait_until

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        body = f"{self.server.server_port}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def member():  # type: ignore[no-untyped-def]
    """A real HTTP member in a thread (the ambassador is the process under test)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def get_with_close(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def test_process_proxies_reloads_on_sighup_and_drains_on_sigterm(
    member: int, tmp_path: Path
) -> None:
    listen, second, admin = free_port(), free_port(), free_port()
    conf = tmp_path / "ambassador.yaml"
    conf.write_text(
        f"listeners:\n  api:\n    listen: 127.0.0.1:{listen}\n    mode: http\n"
        f"    upstreams: [127.0.0.1:{member}]\n"
    )
    env = {
        "AMBASSADOR_CONFIG": str(conf),
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AMBASSADOR_HEALTH_INTERVAL": "0.2s",
        "AMBASSADOR_FILE_INTERVAL": "1h",  # only SIGHUP may trigger the reload here
        "AMBASSADOR_SHUTDOWN_TIMEOUT": "10s",
    }
    with SidecarProcess("ambassador", env) as proc:
        proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
        assert get_with_close(listen, "/").endswith(str(member).encode())

        conf.write_text(
            conf.read_text() + f"  second:\n    listen: 127.0.0.1:{second}\n    mode: http\n"
            f"    upstreams: [127.0.0.1:{member}]\n"
        )
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: http_get(f"http://127.0.0.1:{second}/")[0] == 200, 10, "second listener")
        status, body = http_get(f"http://127.0.0.1:{admin}/upstreams")
        assert status == 200
        assert {x["name"] for x in json.loads(body)["listeners"]} == {"api", "second"}

        # SIGTERM while a request is in flight: it completes, then the process exits 0
        result: list[bytes] = []
        slow = threading.Thread(target=lambda: result.append(get_with_close(listen, "/slow")))
        slow.start()
        wait_until(
            lambda: (
                b"ambassador_upstream_in_flight" in http_get(f"http://127.0.0.1:{admin}/metrics")[1]
                and _in_flight(admin) >= 1
            ),
            10,
            "in flight",
        )
        assert proc.terminate(signal.SIGTERM) == 0
        slow.join(timeout=10)
        assert result and result[0].startswith(b"HTTP/1.1 200 ")
        assert result[0].endswith(str(member).encode())
        messages = [line["msg"] for line in proc.log_lines()]
        assert "config reloaded" in messages and "stopped" in messages


def _in_flight(admin: int) -> float:
    text = http_get(f"http://127.0.0.1:{admin}/metrics")[1].decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ambassador_upstream_in_flight{")
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AMBASSADOR_UPSTREAMS": "a:x"}, "AMBASSADOR_UPSTREAMS='a:x'"),
        ({"AMBASSADOR_UPSTREAMS": "a:1", "AMBASSADOR_MODE": "udp"}, "AMBASSADOR_MODE='udp'"),
        ({"AMBASSADOR_CONFIG": "/nonexistent/amb.yaml"}, "expected a readable file"),
    ],
)
def test_bad_settings_exit_2_with_one_line(env: dict[str, str], expected: str) -> None:
    done = run_sidecar("ambassador", env={"AMBASSADOR_ADMIN_ADDR": "127.0.0.1:0", **env})
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_address_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "AMBASSADOR_LISTEN": f"127.0.0.1:{port}",
            "AMBASSADOR_UPSTREAMS": "127.0.0.1:1",
            "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
        }
        done = run_sidecar("ambassador", env=env)
    assert done.returncode == 1
    assert "cannot listen on" in done.stderr and "Traceback" not in done.stderr


def test_help_lists_the_settings() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecars.ambassador", "--help"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0 and "AMBASSADOR_UPSTREAMS" in done.stdout


@pytest.mark.parametrize("mode", ["tcp", "redis"])
def test_process_relays_redis_under_uvloop(mode: str) -> None:
    """The real entry point runs on uvloop, whose transports differ from asyncio's; in redis
    mode the shard connection is made and kept without the process taking it for a crash."""
    import asyncio

    from tests.ambassador_support import RedisServer

    redis = RedisServer()
    listen, admin = free_port(), free_port()
    try:
        asyncio.run(redis.ready())
        env = {
            "AMBASSADOR_MODE": mode,
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{redis.port}",
            "AMBASSADOR_LISTEN": f"127.0.0.1:{listen}",
            "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        }
        with SidecarProcess("ambassador", env) as proc:
            proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", listen), timeout=10) as sock:
                    # sent at once, before the member connection exists, then half-closed
                    sock.sendall(
                        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                    )
                    sock.shutdown(socket.SHUT_WR)
                    data = b""
                    while chunk := sock.recv(4096):
                        data += chunk
                assert data == b"+OK\r\n$1\r\nv\r\n"
            assert proc.terminate() == 0
            assert not [x for x in proc.log_lines() if x["level"] == "error"]
    finally:
        redis.stop()


def test_the_process_is_single_threaded_whenever_no_name_is_being_resolved(
    member: int, tmp_path: Path
) -> None:
    """A second thread makes every system call on a socket dearer (the kernel counts file
    references then), so the ambassador binds its listeners and resolves addresses without the
    event loop's thread pool, which would stay for good: after relaying http and tcp to IP
    members it is one thread, and the thread that resolved a named member ends once idle."""
    http_port, tcp_port, named_port, admin = free_port(), free_port(), free_port(), free_port()
    conf = tmp_path / "ambassador.yaml"
    conf.write_text(
        "listeners:\n"
        f"  web:\n    listen: 127.0.0.1:{http_port}\n    mode: http\n"
        f"    upstreams: [127.0.0.1:{member}]\n"
        f"  raw:\n    listen: localhost:{tcp_port}\n    mode: tcp\n"
        f"    upstreams: [127.0.0.1:{member}]\n"
        f"  named:\n    listen: 127.0.0.1:{named_port}\n    mode: tcp\n"
        f"    upstreams: [localhost:{member}]\n"
    )
    env = {
        "AMBASSADOR_CONFIG": str(conf),
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AMBASSADOR_HEALTH_INTERVAL": "1h",  # the named member is resolved at start only
    }
    with SidecarProcess("ambassador", env) as proc:
        proc.wait_http(f"http://127.0.0.1:{admin}/readyz")
        tasks = Path(f"/proc/{proc.proc.pid}/task")
        # the names resolved at start ("localhost" to listen on, the named member's check)
        wait_until(lambda: len(list(tasks.iterdir())) == 1, 15, "the resolver threads ended")
        for port in (http_port, tcp_port):
            assert get_with_close(port, "/").endswith(str(member).encode())
        assert len(list(tasks.iterdir())) == 1
        assert get_with_close(named_port, "/").endswith(str(member).encode())
        wait_until(lambda: len(list(tasks.iterdir())) == 1, 15, "the resolver thread ended")
