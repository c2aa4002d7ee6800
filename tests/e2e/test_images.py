"""The four sidecar images and the pause image on a real engine (built once per session)."""

from __future__ import annotations

import io
import json
import re
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from support.images import layer_sizes
from tests.e2e.conftest import (
    ADMIN_PORTS,
    ALIVE,
    ROOT,
    SHUTDOWN_TIMEOUT,
    SIDECARS,
    UID,
    Containers,
    Images,
    docker,
    hardened,
    inspect,
)
from tests.helpers import wait_until

# The first test also waits for the session's image build (minutes on a fresh machine).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

DOCKERFILE = ROOT / "docker" / "Dockerfile"
OCI_LABELS = ("title", "description", "version", "source", "licenses")
# Nothing of a distribution's userland: no shell, package manager, compiler, pip or coreutils.
NO_TOOLS = {"sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "perl", "pip", "pip3"}
NO_TOOLS |= {"gcc", "cc", "c++", "make", "ld", "as", "ldconfig", "ls", "cat"}
SIZE_LIMIT = 60 * 1000 * 1000  # uncompressed, each image


@pytest.mark.parametrize("name", SIDECARS)
def test_help(images: Images, name: str) -> None:
    result = docker("run", "--rm", images.tag(name), "--help", timeout=30)
    assert result.stdout.startswith(f"usage: sidecar-{name}")
    assert "--admin-addr" in result.stdout


@pytest.mark.parametrize("name", SIDECARS)
def test_bad_setting_exits_2_with_one_line(images: Images, name: str) -> None:
    variable = f"{name.upper()}_LOG_LEVEL"
    result = docker("run", "--rm", "-e", f"{variable}=bogus", images.tag(name), check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "bogus" in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("name", SIDECARS)
def test_image_metadata(images: Images, name: str) -> None:
    config = inspect(images.tag(name))["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", f"sidecars.{name}"]
    labels = config["Labels"]
    for key in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.title"] == f"sidecars-{name}"
    assert labels["org.opencontainers.image.version"] == images.version
    assert f"{ADMIN_PORTS[name]}/tcp" in config["ExposedPorts"]
    assert inspect(f"{images.prefix}/{name}:latest")["Id"] == inspect(images.tag(name))["Id"]


def image_files(image: str) -> dict[str, tarfile.TarInfo]:
    """Every path of an image's filesystem (from `docker export`), without the leading /."""
    box = docker("create", image).stdout.strip()
    try:
        exported = subprocess.run(
            ["docker", "export", box], capture_output=True, check=True, timeout=120
        ).stdout
    finally:
        docker("rm", box, check=False)
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        return {member.name.rstrip("/"): member for member in tar.getmembers()}


@pytest.mark.parametrize("name", SIDECARS)
def test_runtime_stage_is_distroless(images: Images, name: str) -> None:
    """No shell, package manager, compiler, pip or perl: the interpreter and what it loads."""
    files = image_files(images.tag(name))
    names = {path.rsplit("/", 1)[-1] for path in files}
    assert not names & NO_TOOLS, sorted(names & NO_TOOLS)
    assert not [p for p in files if "/site-packages/pip" in p or p.endswith("/.cache/pip")]
    assert not [p for p in files if p.startswith(("var/lib/dpkg", "var/lib/apt", "etc/apt"))]
    # the interpreter, CA certificates, tzdata and the sidecar user are there
    assert files["usr/bin/python3.11"].isfile()
    assert files["etc/ssl/certs/ca-certificates.crt"].isfile()
    assert files["usr/share/zoneinfo/Europe/Paris"].isfile()
    assert (
        "sidecar:x:65532:65532:"
        in docker(
            "run",
            "--rm",
            "--entrypoint",
            "python",
            images.tag(name),
            "-c",
            "print(open('/etc/passwd').read())",
        ).stdout
    )
    # the writable directories of the logshipper and the warloader belong to the sidecar user
    for path in ("var/lib/logshipper", "target"):
        mode = stat.S_IMODE(files[path].mode)
        assert (files[path].uid, files[path].gid, mode) == (UID, UID, 0o755), path
    assert stat.S_IMODE(files["tmp"].mode) == 0o1777


@pytest.mark.parametrize("name", SIDECARS)
def test_runs_as_non_root_with_read_only_root(
    images: Images, containers: Containers, name: str
) -> None:
    box = containers.run(images.tag(name), options=hardened(name))
    containers.wait_ready(box, ADMIN_PORTS[name], path=ALIVE)
    pid = inspect(box)["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    ids = {k: v.split() for k, v in re.findall(r"^(Uid|Gid):\s+(.*)$", status, re.M)}
    assert ids["Uid"] == [str(UID)] * 4 and ids["Gid"] == [str(UID)] * 4
    assert re.search(r"^CapEff:\s+0+$", status, re.M)
    assert inspect(box)["HostConfig"]["ReadonlyRootfs"] is True
    # The root filesystem really is read-only for the sidecar's user.
    probe = docker("exec", box, "python", "-c", "open('/opt/probe', 'w')", check=False)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr


def test_warloader_runs_to_completion_as_init_container(
    images: Images, containers: Containers
) -> None:
    """With default settings the warloader installs its sources and exits 0."""
    box = containers.run(images.tag("warloader"), options=hardened("warloader", keep_running=False))
    result = docker("wait", box, timeout=30)
    assert result.stdout.strip() == "0", docker("logs", box).stderr


@pytest.mark.parametrize("name", SIDECARS)
def test_sigterm_exits_0_within_shutdown_timeout(
    images: Images, containers: Containers, name: str
) -> None:
    box = containers.run(images.tag(name), options=hardened(name))
    containers.wait_ready(box, ADMIN_PORTS[name], path=ALIVE)
    started = time.monotonic()
    docker("kill", "--signal", "SIGTERM", box)
    code = docker("wait", box, timeout=SHUTDOWN_TIMEOUT + 10).stdout.strip()
    elapsed = time.monotonic() - started
    assert code == "0", docker("logs", box).stderr
    assert elapsed < SHUTDOWN_TIMEOUT
    assert inspect(box)["State"]["OOMKilled"] is False


def test_images_share_every_layer_and_fit_the_size_limit(images: Images) -> None:
    """The four images differ only in their metadata: a node pulls their layers once."""
    layers = {name: layer_sizes(images.tag(name)) for name in SIDECARS}
    assert len({tuple(sizes) for sizes in layers.values()}) == 1, layers
    for name in SIDECARS:
        size = inspect(images.tag(name))["Size"]
        assert size <= SIZE_LIMIT, f"{name}: {size} bytes"


def test_pause_image(images: Images, containers: Containers) -> None:
    image = inspect(f"{images.prefix}/pause:latest")
    assert image["Size"] < 2_000_000
    assert image["Config"]["User"] == f"{UID}:{UID}"
    box = containers.run(
        f"{images.prefix}/pause:latest", options=["--read-only", "--cap-drop", "ALL"]
    )
    wait_until(lambda: inspect(box)["State"]["Running"], 10.0, "pause running")
    pid = inspect(box)["State"]["Pid"]
    # It takes signals once it sleeps in sigtimedwait(2): then SIGTERM must end it with 0.
    wait_until(
        lambda: "sigtimedwait" in Path(f"/proc/{pid}/wchan").read_text(),
        10.0,
        "pause waiting for signals",
    )
    docker("kill", "--signal", "SIGTERM", box)
    assert docker("wait", box, timeout=10).stdout.strip() == "0"


def test_one_dockerfile_one_target_per_sidecar() -> None:
    """The four images are targets of one Dockerfile, each only metadata on the shared `runtime`
    stage: the layers are shared because they are built once."""
    text = DOCKERFILE.read_text()
    targets = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)
    assert sorted(t for base, t in targets if base == "runtime") == sorted(SIDECARS)
    for name in SIDECARS:
        stage = text.split(f"FROM runtime AS {name}\n", 1)[1].split("\nFROM ", 1)[0]
        kinds = {line.split()[0] for line in stage.splitlines() if line[:1] not in ("", "#", " ")}
        assert kinds <= {"LABEL", "EXPOSE", "ENTRYPOINT", "VOLUME"}, (name, kinds)


def test_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    paths = [DOCKERFILE, ROOT / "docker" / "pause" / "Dockerfile"]
    result = subprocess.run(
        [str(hadolint), *map(str, paths)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pod_with_all_four_sidecars(images: Images) -> None:
    """One emulated pod: pause owns the network, init container first, sidecars on localhost."""
    project = f"sidecars-e2e-pod-{uuid.uuid4().hex[:8]}"
    compose = ["compose", "-f", str(ROOT / "docker" / "pod.yml"), "-p", project]
    env = {"SIDECARS_TAG": images.version, "SIDECARS_IMAGE_PREFIX": images.prefix}
    try:
        docker(*compose, "up", "-d", "--wait", "--wait-timeout", "60", timeout=120, env=env)
        ps = [
            json.loads(line)
            for line in docker(
                *compose, "ps", "-a", "--format", "json", env=env
            ).stdout.splitlines()
            if line.strip()
        ]
        states = {c["Service"]: (c["State"], c["ExitCode"]) for c in ps}
        assert states["warloader-init"] == ("exited", 0)
        for service in ("pod", *SIDECARS):
            assert states[service][0] == "running", states
        pod_id = inspect(f"{project}-pod-1")["Id"]
        for service in (*SIDECARS, "warloader-init"):
            mode = inspect(f"{project}-{service}-1")["HostConfig"]["NetworkMode"]
            assert mode == f"container:{pod_id}", (service, mode)
        # The init container finished before any sidecar started.
        init_done = inspect(f"{project}-warloader-init-1")["State"]["FinishedAt"]
        for service in SIDECARS:
            assert inspect(f"{project}-{service}-1")["State"]["StartedAt"] > init_done
        # Every sidecar answers /healthz on the pod's localhost, seen from another container.
        probe = (
            "import time, urllib.request\n"
            "deadline = time.monotonic() + 20\n"
            "for port in (9181, 9182, 9183, 9184):\n"
            "    url = f'http://127.0.0.1:{port}/healthz'\n"
            "    while True:\n"
            "        try:\n"
            "            with urllib.request.urlopen(url, timeout=2) as resp:\n"
            "                print(port, resp.status)\n"
            "                break\n"
            "        except OSError:\n"
            "            if time.monotonic() > deadline:\n"
            "                raise\n"
            "            time.sleep(0.05)\n"
        )
        for service in SIDECARS:
            out = docker(*compose, "exec", "-T", service, "python", "-c", probe, env=env).stdout
            assert out.split() == ["9181", "200", "9182", "200", "9183", "200", "9184", "200"]
        # Stopping the pod stops every sidecar gracefully.
        docker(*compose, "stop", "-t", "30", timeout=90, env=env)
        for service in SIDECARS:
            assert inspect(f"{project}-{service}-1")["State"]["ExitCode"] == 0, service
    finally:
        docker(*compose, "down", "-v", "-t", "5", timeout=120, check=False, env=env)
