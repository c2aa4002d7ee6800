"""examples/kustomize: rendered with kustomize, the overlay's workloads get exactly the sidecars
their annotations ask for, valid against Kubernetes 1.29-1.31 (strict), Pod Security
"restricted", with real settings, and each component's container is the one `sidecars inject`
writes (same ports, probes, security context, resources, order)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from sidecars.inject.catalog import SIDECARS
from sidecars.inject.containers import build
from sidecars.inject.request import Request
from tests.helpers import ROOT, go_tool
from tests.k8s_support import assert_restricted, assert_sidecar_settings, sidecar_of, validate

EXAMPLES = ROOT / "examples" / "kustomize"
VERSIONS = ("1.29.0", "1.30.0", "1.31.0")
WANTED = {"tomcat": ["warloader", "logshipper"], "visits": ["ambassador", "adapter"]}
# what `sidecars inject` needs to build each (the components use fixed volume names)
OPTIONS = {"logshipper": {"logs-volume": "app-logs"}, "warloader": {"volume": "artifacts"}}
SETTINGS = {"warloader": {"sources": "http://x/a.war"}}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(go_tool("kustomize")), "build", str(EXAMPLES / "production")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def with_settings(c: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The container with its envFrom ConfigMaps written out as env entries."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env = list(c.get("env", []))
    for source in c.get("envFrom", []):
        data = maps[source["configMapRef"]["name"]]  # the hashed name kustomize wrote
        env.extend({"name": k, "value": v} for k, v in data.items())
    return {**c, "env": env}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_rendered_overlay_is_valid_and_restricted(
    rendered: list[dict[str, Any]], version: str
) -> None:
    for doc in rendered:
        validate(doc, version)
    deployments = [d for d in rendered if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == set(WANTED)
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        assert_restricted(spec)
        inits = [c["name"] for c in spec.get("initContainers", [])]
        assert inits == WANTED[d["metadata"]["name"]], inits  # the order inject uses
        for c in spec["initContainers"]:
            assert_sidecar_settings(d["metadata"]["name"], with_settings(c, rendered))
            assert c["image"] == f"registry.example.com/team/{c['name']}:0.1.0"


def test_each_component_writes_what_sidecars_inject_writes(
    rendered: list[dict[str, Any]],
) -> None:
    """Beyond env and image (settings come from a ConfigMap here), a component's container is
    the container inject builds: kept in step, one design."""
    seen = set()
    for d in (d for d in rendered if d["kind"] == "Deployment"):
        app = d["spec"]["template"]["spec"]["containers"][0]["name"]
        for c in d["spec"]["template"]["spec"]["initContainers"]:
            name = sidecar_of(c)
            assert name is not None
            request = Request(SIDECARS[name], dict(SETTINGS.get(name, {})), OPTIONS.get(name, {}))
            built = json.loads(json.dumps(build(request, "x", True, app).container))
            for key in ("env", "envFrom", "image"):
                built.pop(key, None)
                c.pop(key, None)
            assert c == built, name
            seen.add(name)
    assert seen == set(SIDECARS)
