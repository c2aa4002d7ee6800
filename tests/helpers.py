"""Test utilities shared by every suite: sidecar subprocesses (ports, deadlines and helper
processes are in support.process, shared with the benchmarks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.process import (  # noqa: F401 - the tests import them from here too
    ROOT,
    background,
    free_port,
    http_get,
    stop_process,
    wait_until,
)


class SidecarProcess:
    """`python -m sidecars.<name>` as a real subprocess with its own environment."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(name.upper() + "_")}
        full_env.update(env or {})
        # stderr goes to a file, not a pipe: a chatty process must never block on a full pipe
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", f"sidecars.{name}", *args],
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def wait_http(self, url: str, timeout: float = 15.0, status: int = 200) -> None:
        """Wait until `url` answers `status`, failing early if the process died."""

        def check() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.stderr()}")
            return http_get(url, timeout=1.0)[0] == status

        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except AssertionError:
                raise
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {url} did not answer {status} in {timeout}s")
            time.sleep(0.05)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the exit code (kill -9 after `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stderr(self) -> str:
        """Everything the process has written to stderr so far."""
        return Path(self._log.name).read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return [json.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]

    def __enter__(self) -> SidecarProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        os.unlink(self._log.name)


def run_sidecar(
    name: str,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a sidecar to completion (for --help, bad settings, init-container runs)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(name.upper() + "_")}
    full_env.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-m", f"sidecars.{name}", *args],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bad_setting_exits_2(name: str, env: Mapping[str, str], var: str, expected: str) -> None:
    """`name` with `env` stops at start: exit 2, one line naming `var` and saying `expected`,
    no traceback."""
    start = time.monotonic()
    done = run_sidecar(name, env=env, timeout=20)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name}: bad setting {var}="), lines[0]
    assert expected in lines[0] and "Traceback" not in done.stderr
    assert time.monotonic() - start < 10  # at start, not after a wait


def inotify_limited(limit: str) -> list[str]:
    """A command prefix (SidecarProcess's `prefix`): run in a user namespace of its own whose
    inotify `limit` (max_inotify_watches, max_inotify_instances) is 0, as an application that
    used them all up leaves a sidecar. Skips the test without `unshare`."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    return [
        "unshare", "--user", "--map-root-user", "sh", "-c",
        f'echo 0 > /proc/sys/user/{limit} && exec "$@"', "sh",
    ]  # fmt: skip


GO_TOOLS = ROOT / ".cache" / "go" / "bin"  # scripts/setup builds the Go tools the tests run there


def go_tool(name: str) -> Path:
    """A Go tool (promtool, prometheus, kustomize, cosign) that scripts/setup builds from the Go
    module proxy. Missing, the test fails naming scripts/setup; it skips only on a machine with
    no Go to build it with, and never in CI (CI=true)."""
    path = GO_TOOLS / name
    if path.is_file():
        return path
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        if os.environ.get("CI") != "true":
            pytest.skip(f"{name} cannot be built on this machine: scripts/setup needs Go")
    pytest.fail(f"{path.relative_to(ROOT)} is missing: run scripts/setup")
