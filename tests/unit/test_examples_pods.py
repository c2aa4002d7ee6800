"""examples/pods: valid against the Kubernetes API schema, hardened, probed, and using only
settings the sidecars really have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_support import (
    assert_restricted,
    assert_sidecar_settings,
    containers,
    sidecar_of,
    validate,
)

PODS = Path(__file__).parents[2] / "examples" / "pods"
EXAMPLES = sorted(PODS.glob("*/*.yaml"))
K8S_VERSION = "1.30.0"  # native sidecars (init containers with restartPolicy: Always) are GA


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pods() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in EXAMPLES:
        for doc in documents(path):
            if doc["kind"] == "Pod":
                yield path.name, doc


def test_there_is_one_manifest_per_pattern_and_one_with_all_four_each_with_a_readme() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"tomcat-war", "app-logging", "ambassador", "adapter", "all-four", "debug"} <= names
    for path in EXAMPLES:
        assert (path.parent / "README.md").is_file(), path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_valid_against_the_kubernetes_schema(path: Path) -> None:
    for doc in documents(path):
        validate(doc, K8S_VERSION)


@pytest.mark.parametrize(
    ("name", "pod"), list(pods()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_container_is_hardened_and_bounded(name: str, pod: dict[str, Any]) -> None:
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert_restricted(pod["spec"])


@pytest.mark.parametrize(
    ("name", "pod"), list(pods()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_sidecars_use_real_settings_probes_and_downward_api(name: str, pod: dict[str, Any]) -> None:
    for c in containers(pod["spec"]):
        if sidecar_of(c) is not None:
            assert_sidecar_settings(name, c)


def test_the_debug_pod_shares_its_processes_with_an_unprivileged_debug_container() -> None:
    """The debug example shares one process namespace, and its debug container has the pod's
    single uid (which lets it see the app's sockets' owners and files) and no capability."""
    (pod,) = [d for d in documents(PODS / "debug" / "debug.yaml") if d]
    spec = pod["spec"]
    assert spec["shareProcessNamespace"] is True
    (debug,) = [c for c in containers(spec) if c["name"] == "debug"]
    assert "/sidecars/debug:" in debug["image"]
    assert all("runAsUser" not in c.get("securityContext", {}) for c in containers(spec))
    assert spec["securityContext"]["runAsUser"] == 65532
    assert debug["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_adapter_rules_in_configmaps_load() -> None:
    from sidecars.adapter import rules

    loaded = 0
    for path in EXAMPLES:
        for doc in documents(path):
            if doc["kind"] == "ConfigMap" and "rules.yaml" in doc.get("data", {}):
                assert rules.load(doc["data"]["rules.yaml"]), path.name
                loaded += 1
    assert loaded
