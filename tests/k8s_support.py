"""Checks of Kubernetes manifests that the example pods and the injected workloads share:
the API schema (kubernetes-validate, strict), the Pod Security "restricted" profile plus our
hardening (read-only root, requests and limits), and the sidecars' settings, probes and
downward API."""

from __future__ import annotations

import importlib
from typing import Any

import kubernetes_validate

from sidecars.runtime.settings import env_name, load, specs

ADMIN_PORTS = {"logshipper": 9181, "ambassador": 9182, "adapter": 9183, "warloader": 9184}
# Pod Security "restricted": the only volume types it allows
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def validate(doc: dict[str, Any], version: str) -> None:
    """Raise if `doc` breaks the Kubernetes `version` API schema (unknown fields included);
    a `List` (which has no schema of its own) item by item."""
    if doc.get("kind") == "List":
        for item in doc["items"]:
            validate(item, version)
        return
    kubernetes_validate.validate(doc, version, strict=True)


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def assert_restricted(spec: dict[str, Any]) -> None:
    """The pod spec passes Pod Security "restricted", and each container is hardened and
    bounded (read-only root filesystem, cpu and memory requests and limits)."""
    pod_sc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUMES, f"volume {volume['name']}: {kinds}"
    for c in containers(spec):
        name = c["name"]
        sc = c.get("securityContext", {})
        assert not sc.get("privileged"), name
        assert sc.get("allowPrivilegeEscalation") is False, name
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, name
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) != 0, name
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost"), name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}, name
        assert not any(p.get("hostPort") for p in c.get("ports", [])), name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name


def sidecar_of(container: dict[str, Any]) -> str | None:
    for name in ADMIN_PORTS:
        if f"/{name}:" in container["image"]:
            return name
    return None


def _pod_path(env: dict[str, Any]) -> bool:
    """A setting naming a file inside the pod (a mounted ConfigMap) cannot be read here."""
    return env["name"].endswith(("_RULES", "_FILE")) and str(env.get("value", "")).startswith("/")


def assert_sidecar_settings(where: str, c: dict[str, Any]) -> None:
    """A sidecar container sets only settings its sidecar has, each parsing; a long-running one
    is probed on its admin port and gets pod metadata through the downward API."""
    sidecar = sidecar_of(c)
    assert sidecar is not None, c["name"]
    config = importlib.import_module(f"sidecars.{sidecar}.config").Config
    known = {env_name(sidecar.upper(), n) for n, _ in specs(config)}
    ours = [e for e in c.get("env", []) if e["name"].startswith(sidecar.upper() + "_")]
    assert ours, c["name"]
    for env in ours:
        assert env["name"] in known, f"{where}: {env['name']} is no {sidecar} setting"
    # and every value parses (paths inside the pod's volumes are not checked here)
    values = {e["name"]: e["value"] for e in ours if "value" in e and not _pod_path(e)}
    loaded = load(config, sidecar.upper(), [], values)
    if hasattr(loaded, "check"):
        loaded.check()  # cross-field rules (a date pattern for a data stream)
    if sidecar == "warloader":
        return  # an init container that exits: no probes
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports[c["livenessProbe"]["httpGet"]["port"]] == ADMIN_PORTS[sidecar]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert any("valueFrom" in e for e in c["env"]), f"{c['name']}: no downward API metadata"
