"""examples/monitoring/prometheus.yml's pod job, relabelled by a real Prometheus server: its
relabel rules run over the targets Kubernetes service discovery makes of the example pods (one
per container port, with the `__meta_kubernetes_*` labels Prometheus documents), handed over
through a file, and exactly the sidecars' admin ports come out, with the labels the alerts and
dashboards use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import wait_until
from tests.monitoring_support import MONITORING
from tests.prometheus_support import api, prometheus_server

pytestmark = pytest.mark.integration
PODS = MONITORING.parent / "pods"
# what the job must scrape: (pod, container, port); tomcat-war's warloader is an init
# container that exits, so that pod is not annotated
EXPECTED = {
    ("app-logging", "logshipper", 9181),
    ("app-with-ambassador", "ambassador", 9182),
    ("app-with-adapter", "adapter", 9183),
    ("all-four", "logshipper", 9181),
    ("all-four", "ambassador", 9182),
    ("all-four", "adapter", 9183),
}


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


def discovered(pod: dict[str, Any], ip: str) -> list[dict[str, str]]:
    """The targets Kubernetes service discovery (role: pod) makes of one pod."""
    meta = pod["metadata"]
    common = {
        "__meta_kubernetes_namespace": "shop",
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_phase": "Running",
    }
    for key, value in meta.get("annotations", {}).items():
        common[f"__meta_kubernetes_pod_annotation_{_name(key)}"] = value
        common[f"__meta_kubernetes_pod_annotationpresent_{_name(key)}"] = "true"
    for key, value in meta.get("labels", {}).items():
        common[f"__meta_kubernetes_pod_label_{_name(key)}"] = value
    out = []
    spec = pod["spec"]
    for init, containers in (
        ("true", spec.get("initContainers", [])),
        ("false", spec["containers"]),
    ):
        for c in containers:
            labels = {
                **common,
                "__meta_kubernetes_pod_container_name": c["name"],
                "__meta_kubernetes_pod_container_init": init,
            }
            if not c.get("ports"):
                out.append({**labels, "__address__": ip})
            for port in c.get("ports", []):
                out.append(
                    {
                        **labels,
                        "__address__": f"{ip}:{port['containerPort']}",
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                        "__meta_kubernetes_pod_container_port_protocol": "TCP",
                    }
                )
    return out


def test_the_pod_job_scrapes_exactly_the_sidecars_admin_ports(tmp_path: Path) -> None:
    """Annotated pods are scraped on their prometheus.io/port, the all-four pod (no port
    annotation) on each *-admin port, nothing else; every target has namespace, pod and
    container labels and the annotated path."""
    pods = [
        d
        for path in sorted(PODS.glob("*/*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] == "Pod"
    ]
    # pod IPs on loopback; the scrape interval is long, so nothing is scraped during the test
    groups = [
        {"targets": [t.pop("__address__")], "labels": t}
        for i, pod in enumerate(pods)
        for t in discovered(pod, f"127.0.0.{10 + i}")
    ]
    (tmp_path / "pods.json").write_text(json.dumps(groups))
    (job,) = yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"]
    job.pop("kubernetes_sd_configs")
    job["file_sd_configs"] = [{"files": [str(tmp_path / "pods.json")]}]
    config = {"global": {"scrape_interval": "1h", "scrape_timeout": "1s"}, "scrape_configs": [job]}
    with prometheus_server(tmp_path, config) as base:

        def discovered_all() -> bool:
            found = api(base, "/api/v1/targets")
            return len(found["activeTargets"]) + len(found["droppedTargets"]) == len(groups)

        wait_until(discovered_all, 30, "every discovered target relabelled")
        targets = api(base, "/api/v1/targets")
    active = [t["labels"] for t in targets["activeTargets"]]
    found = {(t["pod"], t["container"], int(t["instance"].rsplit(":", 1)[1])) for t in active}
    assert found == EXPECTED
    assert all(t["namespace"] == "shop" for t in active)
    assert all(t["job"] == "kubernetes-pods" for t in active)
    assert {t["scrapeUrl"].split("/", 3)[3] for t in targets["activeTargets"]} == {"metrics"}
    assert len(targets["droppedTargets"]) == len(groups) - len(EXPECTED)
