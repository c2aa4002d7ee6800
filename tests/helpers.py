"""Test utilities shared by every suite: free ports, deadlines, sidecar subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `check` until it is true; fail naming `what` when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a check that raises is simply not ready yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true within {timeout:.1f}s")
        time.sleep(every)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; always reaped."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def background(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A helper process (a server, a load generator) that is stopped and reaped on exit."""
    proc = subprocess.Popen(
        list(argv),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        stop_process(proc)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET `url` and return (status, body); HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


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
