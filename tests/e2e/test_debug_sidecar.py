"""The trial's `debug` profile: a debug container (docker/debug, tools on a plain Debian base)
joins the adapter pod's network namespace and the app's process namespace, as `kubectl debug
--target` does, and from there sees what the shell-less images cannot show themselves: the
app's process (ps), the pod's listening sockets and which process owns the app's (ss), and the
app's files through /proc/<pid>/root. It runs as the sidecars' user without capabilities."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import PREFIX, ROOT, Images
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PROFILES = ("adapter", "debug")


class Trial:
    """The trial's adapter pod plus the debug profile under a compose project of its own."""

    def __init__(self) -> None:
        self.project = f"sidecars-e2e-debug-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "SIDECARS_IMAGE_PREFIX": PREFIX,
            "COMPOSE_PROFILES": ",".join(PROFILES),
            "TRIAL_HEALTH_PORT": str(free_port()),
            "TRIAL_METRICS_APP_PORT": str(free_port()),
        }

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        profiles = [arg for p in PROFILES for arg in ("--profile", p)]
        return subprocess.run(
            ["docker", "compose", "-p", self.project, "-f", "docker-compose.yml", *profiles, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def debug(self, *command: str) -> str:
        """Run a command in the debug container; its stdout."""
        result = self.compose("exec", "-T", "debug", *command, timeout=60)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def trial(images: Images) -> Iterator[Trial]:
    build = subprocess.run(
        [str(ROOT / "docker" / "debug" / "build")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "IMAGE_PREFIX": PREFIX},
        stdin=subprocess.DEVNULL,
    )
    assert build.returncode == 0, f"docker/debug/build failed:\n{build.stdout}{build.stderr}"
    box = Trial()
    try:
        up = box.compose("up", "-d", "--wait", "--wait-timeout", "180", timeout=240)
        assert up.returncode == 0, f"compose up failed:\n{up.stdout}{up.stderr}"
        yield box
    finally:
        box.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=120)


def app_pid(trial: Trial) -> int:
    """The PID of the app (the demo metrics server) as the debug container's ps shows it."""
    for line in trial.debug("ps", "-eo", "pid=,user=,args=").splitlines():
        pid, user, args = line.split(None, 2)
        if "demo.py metrics" in args:
            assert user == "65532", line
            return int(pid)
    raise AssertionError("the app's process is not in the debug container's ps")


def listeners(trial: Trial) -> str:
    return trial.debug("ss", "-Hltnp")


def test_the_debug_container_sees_the_apps_process_and_its_listening_socket(trial: Trial) -> None:
    """ps shows the app's process; ss shows its socket on :8080 owned by that very PID, and the
    adapter's :9280 (same network namespace; its owner is in another process namespace)."""
    wait_until(lambda: ":8080 " in listeners(trial), 60, "the app listening on :8080")
    wait_until(lambda: ":9280 " in listeners(trial), 60, "the adapter listening on :9280")
    pid = app_pid(trial)
    sockets = listeners(trial)
    app_socket = next(line for line in sockets.splitlines() if ":8080 " in line)
    assert re.search(rf"users:\(\(\"python\",pid={pid},fd=\d+\)\)", app_socket), sockets
    adapter_socket = next(line for line in sockets.splitlines() if ":9280 " in line)
    assert "users:" not in adapter_socket, sockets


def test_the_debug_container_reads_the_apps_files_and_calls_it_over_localhost(
    trial: Trial,
) -> None:
    """The shell-less app's root is under /proc/<pid>/root (same uid, no capability needed), and
    curl reaches the app's /metrics and the adapter's /health on the pod's localhost."""
    pid = app_pid(trial)
    assert "sidecars" in trial.debug("ls", f"/proc/{pid}/root/opt").split()
    assert "work_queue_depth" in trial.debug("curl", "-fsS", "http://127.0.0.1:8080/metrics")
    assert '"status"' in trial.debug("curl", "-sS", "http://127.0.0.1:9280/health")


def test_the_debug_container_is_unprivileged(trial: Trial) -> None:
    """It runs as 65532 with no capability (the pod stays Pod Security "restricted")."""
    status = trial.debug("cat", "/proc/self/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["65532", "65532"], fields["Uid"]
    assert int(fields["CapEff"].strip(), 16) == 0, fields["CapEff"]
    assert int(fields["NoNewPrivs"].strip()) == 1
