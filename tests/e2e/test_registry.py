"""docker/push to a real registry on 127.0.0.1, then pull the images back and run them.

Runs after test_images.py (file order): it removes the local tags for a while and restores
them at the end.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.conftest import (
    ADMIN_PORTS,
    ALIVE,
    ROOT,
    SIDECARS,
    Containers,
    Images,
    docker,
    hardened,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def test_push_delete_pull_run(images: Images, registry: str, containers: Containers) -> None:
    target = f"{registry}/sidecars"
    names = [*SIDECARS, "pause"]
    tags = {name: images.tag(name) for name in SIDECARS} | {"pause": f"{images.prefix}/pause:1.0"}
    ids = {
        name: docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
        for name, tag in tags.items()
    }
    result = subprocess.run(
        [str(ROOT / "docker" / "push")],
        capture_output=True,
        text=True,
        timeout=600,
        # unsigned: signing and the SBOM have their own test (test_supply_chain.py)
        env={**os.environ, "REGISTRY": target, "SIGN": "0"},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    pulled: dict[str, str] = {}
    try:
        # Delete every tag of the images, so the pulls below must fetch them.
        for name in names:
            repo_tags = json.loads(
                docker("image", "inspect", "-f", "{{json .RepoTags}}", ids[name]).stdout
            )
            docker("rmi", *repo_tags)
            assert docker("image", "inspect", ids[name], check=False).returncode != 0, name
        for name in names:
            version = tags[name].rsplit(":", 1)[1]
            ref = f"{target}/{name}:{version}"
            docker("pull", "-q", ref, timeout=300)
            pulled[name] = ref
            assert docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() == ids[name]
        for name in SIDECARS:
            assert docker("run", "--rm", pulled[name], "--help").stdout.startswith("usage:")
            box = containers.run(pulled[name], options=hardened(name))
            containers.wait_ready(box, ADMIN_PORTS[name], path=ALIVE)
    finally:
        # Give the session its local tags back (from the pulled images, or rebuilt).
        for name in names:
            version = tags[name].rsplit(":", 1)[1]
            if name in pulled:
                docker("tag", pulled[name], f"{images.prefix}/{name}:{version}")
                docker("tag", pulled[name], f"{images.prefix}/{name}:latest")
                docker("rmi", pulled[name], check=False)
        if len(pulled) < len(names):
            subprocess.run([str(ROOT / "docker" / "images")], capture_output=True, timeout=1500)
        for name in names:
            version = tags[name].rsplit(":", 1)[1]
            for tag in (version, "latest"):
                docker("rmi", f"{target}/{name}:{tag}", check=False)
