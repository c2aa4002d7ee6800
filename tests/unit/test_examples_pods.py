"""examples/pods: valid against the Kubernetes API schema, hardened, probed, and using only
settings the sidecars really have."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecars.runtime.settings import env_name, load, specs

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "pods").glob("*/*.yaml"))
K8S_VERSION = "1.30.0"  # native sidecars (init containers with restartPolicy: Always) are GA
ADMIN_PORTS = {"logshipper": 9181, "ambassador": 9182, "adapter": 9183, "warloader": 9184}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pods() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in EXAMPLES:
        for doc in documents(path):
            if doc["kind"] == "Pod":
                yield path.name, doc


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _pod_path(env: dict[str, Any]) -> bool:
    """A setting naming a file inside the pod (a mounted ConfigMap) cannot be read here."""
    return env["name"].endswith("_RULES") and str(env.get("value", "")).startswith("/")


def sidecar_of(container: dict[str, Any]) -> str | None:
    for name in ADMIN_PORTS:
        if f"/sidecars/{name}:" in container["image"]:
            return name
    return None


def test_there_is_one_manifest_per_pattern_and_one_with_all_four_each_with_a_readme() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"tomcat-war", "app-logging", "ambassador", "adapter", "all-four"} <= names
    for path in EXAMPLES:
        assert (path.parent / "README.md").is_file(), path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_valid_against_the_kubernetes_schema(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("name", "pod"), list(pods()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_container_is_hardened_and_bounded(name: str, pod: dict[str, Any]) -> None:
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for c in containers(pod):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["limits"]), c["name"]


@pytest.mark.parametrize(
    ("name", "pod"), list(pods()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_sidecars_use_real_settings_probes_and_downward_api(name: str, pod: dict[str, Any]) -> None:
    for c in containers(pod):
        sidecar = sidecar_of(c)
        if sidecar is None:
            continue
        config = importlib.import_module(f"sidecars.{sidecar}.config").Config
        known = {env_name(sidecar.upper(), n) for n, _ in specs(config)}
        ours = [e for e in c.get("env", []) if e["name"].startswith(sidecar.upper() + "_")]
        assert ours, c["name"]
        for env in ours:
            assert env["name"] in known, f"{name}: {env['name']} is no {sidecar} setting"
        # and every value parses (paths inside the pod's volumes are not checked here)
        values = {e["name"]: e["value"] for e in ours if "value" in e and not _pod_path(e)}
        load(config, sidecar.upper(), [], values)
        if sidecar == "warloader":
            continue  # an init container that exits: no probes
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports[c["livenessProbe"]["httpGet"]["port"]] == ADMIN_PORTS[sidecar]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert any("valueFrom" in e for e in c["env"]), f"{c['name']}: no downward API metadata"


def test_adapter_rules_in_configmaps_load() -> None:
    from sidecars.adapter import rules

    loaded = 0
    for path in EXAMPLES:
        for doc in documents(path):
            if doc["kind"] == "ConfigMap" and "rules.yaml" in doc.get("data", {}):
                assert rules.load(doc["data"]["rules.yaml"]), path.name
                loaded += 1
    assert loaded
