"""Each sidecar as a real process: --help, bad settings, admin endpoints, signals and drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, SidecarProcess, free_port, http_get, run_sidecar, wait_until

SIDECARS = ["logshipper", "ambassador", "adapter", "warloader"]
# Settings that keep each sidecar running as a long-lived service on loopback only.
SERVICE_ENV = {
    "logshipper": {
        "LOGSHIPPER_PATHS": "/nonexistent/*.log",
        "LOGSHIPPER_ES_HOSTS": "http://127.0.0.1:9",
    },
    "ambassador": {"AMBASSADOR_LISTEN": "127.0.0.1:0"},
    "adapter": {"ADAPTER_LISTEN": "127.0.0.1:0", "ADAPTER_TARGET": "http://127.0.0.1:9/metrics"},
    "warloader": {"WARLOADER_WATCH": "true"},
}


@pytest.mark.parametrize("name", SIDECARS)
def test_help_lists_every_setting_with_its_env_name(name: str) -> None:
    result = run_sidecar(name, ["--help"])
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for common in ("LOG_LEVEL", "ADMIN_ADDR", "SHUTDOWN_TIMEOUT"):
        assert f"env {name.upper()}_{common}" in text


@pytest.mark.parametrize("name", SIDECARS)
def test_console_script_is_installed(name: str) -> None:
    script = os.path.join(os.path.dirname(sys.executable), f"sidecar-{name}")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and result.stdout.startswith(f"sidecar-{name} ")


@pytest.mark.parametrize("name", SIDECARS)
@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("LOG_LEVEL", "chatty", "expected one of debug, info, warning, error"),
        ("ADMIN_ADDR", "nowhere", "expected host:port"),
        ("SHUTDOWN_TIMEOUT", "-1s", "expected a duration"),
    ],
)
def test_bad_setting_exits_2_with_one_clear_line(
    name: str, setting: str, value: str, expected: str
) -> None:
    var = f"{name.upper()}_{setting}"
    result = run_sidecar(name, env={var: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert var in lines[0] and repr(value) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", SIDECARS)
def test_serves_admin_endpoints_and_drains_on_sigterm(name: str) -> None:
    port = free_port()
    env = {f"{name.upper()}_ADMIN_ADDR": f"127.0.0.1:{port}", **SERVICE_ENV[name]}
    with SidecarProcess(name, env) as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and f'{name}_build_info{{version="'.encode() in body
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] in (200, 503)
        assert proc.terminate(signal.SIGTERM) == 0
        messages = [line["msg"] for line in proc.log_lines()]
        assert messages[0] == "starting" and messages[-1] == "stopped"
        assert all(line["sidecar"] == name for line in proc.log_lines())


def test_sigint_drains_like_sigterm() -> None:
    port = free_port()
    env = {"AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{port}", **SERVICE_ENV["ambassador"]}
    with SidecarProcess("ambassador", env) as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        assert proc.terminate(signal.SIGINT) == 0


def test_admin_port_in_use_is_one_clear_error() -> None:
    port = free_port()
    env = {"ADAPTER_ADMIN_ADDR": f"127.0.0.1:{port}", **SERVICE_ENV["adapter"]}
    with SidecarProcess("adapter", env) as first:
        first.wait_http(f"http://127.0.0.1:{port}/healthz")
        second = run_sidecar("adapter", env=env)
        assert second.returncode == 1
        assert "cannot serve the admin address" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.terminate() == 0


def _stubborn(port: int, drain: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "STUBBORN_ADMIN_ADDR": f"127.0.0.1:{port}",
        "STUBBORN_SHUTDOWN_TIMEOUT": drain,
    }
    script = ROOT / "tests" / "integration" / "stubborn_sidecar.py"
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_drain_is_bounded_by_the_shutdown_timeout() -> None:
    port = free_port()
    proc = _stubborn(port, "0.5s")
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 15, "ready")
        proc.send_signal(signal.SIGTERM)
        # While draining the sidecar is alive but no longer ready.
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503
        assert proc.wait(timeout=15) == 1
        assert "drain did not finish within 0.5s" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.communicate()


def test_second_signal_exits_at_once() -> None:
    port = free_port()
    proc = _stubborn(port, "60s")
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 15, "alive")
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503, 5, "draining")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # Far below the 60 s drain: the second signal did not wait for it.
        assert proc.wait(timeout=15) == 130
        assert time.monotonic() - start < 15
    finally:
        proc.kill()
        proc.communicate()
