"""Fixtures for the image tests: a running engine, the images built once, a local registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import http_get
from tests.registry_support import local_registry

ROOT = Path(__file__).resolve().parents[2]
SIDECARS = ("logshipper", "ambassador", "adapter", "warloader")
ADMIN_PORTS = {"logshipper": 9181, "ambassador": 9182, "adapter": 9183, "warloader": 9184}
# The only setting the tests give (everything else is a default): the warloader needs watch
# mode to keep running (with defaults it installs its empty source list and exits 0, as an init
# container does).
KEEP_RUNNING = {"warloader": {"WARLOADER_WATCH": "true"}}
# Alive is /healthz: /readyz also needs the sidecar's peers (the logshipper's Elasticsearch,
# the ambassador's upstream members).
ALIVE = "/healthz"
SHUTDOWN_TIMEOUT = 20.0  # the sidecars' default --shutdown-timeout
UID = 65532
BUILD_DEADLINE = 1500.0  # a fresh machine debootstraps the base first


def docker(
    *args: str, timeout: float = 60.0, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI and return its result; a failure shows the command's output."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result


def inspect(ref: str) -> dict[str, object]:
    return json.loads(docker("inspect", ref).stdout)[0]  # type: ignore[no-any-return]


# The images' repository prefix: docker/images builds under IMAGE_PREFIX too (default sidecars).
PREFIX = os.environ.get("IMAGE_PREFIX", "sidecars")


@dataclass
class Images:
    version: str
    prefix: str = PREFIX
    build_seconds: float = 0.0

    def tag(self, name: str) -> str:
        return f"{self.prefix}/{name}:{self.version}"


@dataclass
class Containers:
    """Containers started by a test; all removed at teardown."""

    prefix: str = field(default_factory=lambda: f"sidecars-e2e-{uuid.uuid4().hex[:8]}")
    names: list[str] = field(default_factory=list)

    def run(self, image: str, *args: str, options: Sequence[str] = ()) -> str:
        name = f"{self.prefix}-{len(self.names)}"
        self.names.append(name)
        docker("run", "-d", "--name", name, *options, image, *args)
        return name

    def host_port(self, name: str, port: int) -> int:
        out = docker("port", name, f"{port}/tcp").stdout.split()[0]
        return int(out.rsplit(":", 1)[1])

    def wait_ready(self, name: str, port: int, timeout: float = 20.0, path: str = "/readyz") -> int:
        """Wait until `path` answers 200 through the published admin port; return that port."""
        host_port = self.host_port(name, port)

        def ready() -> bool:
            state = inspect(name)["State"]
            if not state["Running"]:  # type: ignore[index]
                logs = docker("logs", name, check=False)
                raise AssertionError(f"{name} stopped: {state}\n{logs.stdout}{logs.stderr}")
            try:
                return http_get(f"http://127.0.0.1:{host_port}{path}", timeout=1.0)[0] == 200
            except OSError:  # the engine's port proxy resets until the sidecar listens
                return False

        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return host_port
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {path} not 200 within {timeout:.0f}s")
            time.sleep(0.05)

    def remove_all(self) -> None:
        if self.names:
            docker("rm", "-f", "-v", *self.names, check=False)


def hardened(name: str, *extra: str, keep_running: bool = True) -> list[str]:
    """`docker run` options of a hardened pod container, publishing the admin port on loopback.

    With `keep_running`, the settings of KEEP_RUNNING for that sidecar are added.
    """
    options = [
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-p",
        f"127.0.0.1::{ADMIN_PORTS[name]}",
    ]
    for key, value in (KEEP_RUNNING.get(name, {}) if keep_running else {}).items():
        options += ["-e", f"{key}={value}"]
    return options + list(extra)


@pytest.fixture(scope="session")
def engine() -> None:
    """A running Docker engine and `docker compose` (installed and started when missing)."""
    result = subprocess.run(
        [str(ROOT / "docker" / "engine")], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"docker/engine failed:\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def images(engine: None) -> Images:
    """The four sidecar images and the pause image, built once per session by docker/images."""
    started = time.monotonic()
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        [str(ROOT / "docker" / "images")],
        capture_output=True,
        text=True,
        timeout=BUILD_DEADLINE,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(f"docker/images failed:\n{result.stdout}{result.stderr[-4000:]}")
    labels = inspect(f"{PREFIX}/logshipper:latest")["Config"]["Labels"]  # type: ignore[index]
    return Images(
        version=labels["org.opencontainers.image.version"],
        build_seconds=time.monotonic() - started,
    )


@pytest.fixture
def containers(engine: None) -> Iterator[Containers]:
    box = Containers()
    try:
        yield box
    finally:
        box.remove_all()


@pytest.fixture(scope="session")
def registry(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry (CNCF distribution) on 127.0.0.1, storage in a temp dir."""
    with local_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address
