"""All four sidecars side by side in ONE network namespace with their default ports, as the
containers of a pod are: a holder process owns the namespace (the pause container's role) and
every sidecar joins it with nsenter."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, run_sidecar, wait_until

ADMIN_PORTS = {"logshipper": 9181, "ambassador": 9182, "adapter": 9183, "warloader": 9184}

PROBE = """
import json, sys, time, urllib.request
deadline = time.monotonic() + 20
ports = json.loads(sys.argv[1])
status = {}
while time.monotonic() < deadline:
    for name, port in ports.items():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                status[name] = r.status
        except OSError as exc:
            status[name] = str(exc)
    if all(v == 200 for v in status.values()):
        break
    time.sleep(0.1)
print(json.dumps(status))
"""


@pytest.fixture
def pod_netns() -> Iterator[list[str]]:
    """A fresh network namespace held by a sleeping process; yields the nsenter prefix."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("needs root with unshare and nsenter to create a network namespace")
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep 600"]
    )
    ns = f"/proc/{holder.pid}/ns/net"
    try:
        wait_until(lambda: os.readlink(ns) != os.readlink("/proc/self/ns/net"), 10, "netns")
        prefix = ["nsenter", f"--net={ns}", "--"]
        wait_until(
            lambda: (
                "UP"
                in subprocess.run(
                    [*prefix, "ip", "-o", "link", "show", "lo"], capture_output=True, text=True
                ).stdout
            ),
            10,
            "loopback up in the namespace",
        )
        yield prefix
    finally:
        holder.kill()
        holder.wait()


def test_four_sidecars_share_one_namespace_with_defaults(
    pod_netns: list[str], tmp_path: Path
) -> None:
    # The init container first: with default settings warloader has nothing to install.
    init = run_sidecar("warloader", prefix=pod_netns)
    assert init.returncode == 0, init.stderr
    # Only volume paths are set (a pod mounts volumes there); every port is the default one.
    envs = {
        "logshipper": {"LOGSHIPPER_STATE_DIR": str(tmp_path / "state")},
        "ambassador": {},
        "adapter": {},
        "warloader": {"WARLOADER_WATCH": "true", "WARLOADER_DEST": str(tmp_path / "dest")},
    }
    (tmp_path / "dest").mkdir()
    procs = [SidecarProcess(name, env, prefix=pod_netns) for name, env in envs.items()]
    try:
        probe = subprocess.run(
            [*pod_netns, sys.executable, "-c", PROBE, json.dumps(ADMIN_PORTS)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(probe.stdout) == {name: 200 for name in ADMIN_PORTS}, [
            p.stderr() for p in procs
        ]
        codes = {p.name: p.terminate(signal.SIGTERM) for p in procs}
        assert codes == {name: 0 for name in ADMIN_PORTS}, [p.stderr() for p in procs]
    finally:
        for p in procs:
            p.__exit__()
