"""End to end on the compose trial: the adapter pod of docker-compose.yml (the demo app, the
adapter image, the poller) under its own compose project with its admin port published, scraped
by a real Prometheus server evaluating examples/monitoring/rules/adapter.yml; the app is made to
fail as the trial's README says (POST /errors?ratio=0.5) and AdapterReportingFailure fires."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ROOT, docker
from tests.helpers import free_port, go_tool, http_get, wait_until
from tests.monitoring_support import MONITORING
from tests.prometheus_support import post, prometheus, quiet_then_firing

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
PROJECT = "sidecars-monitoring"  # its own project and ports: it runs beside the trial


def compose(files: list[str], env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        ["docker", "compose", "-p", PROJECT, *files, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]


def leftovers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    found = docker("ps", "-aq", "--filter", label).stdout.split()
    for kind in ("volume", "network"):
        found += docker(kind, "ls", "-q", "--filter", label).stdout.split()
    return found


@pytest.fixture(scope="module")
def adapter_pod(
    images: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The trial's adapter pod up under PROJECT; yields the app's and the admin port's URLs."""
    go_tool("prometheus")  # before anything starts
    tmp = tmp_path_factory.mktemp("monitoring-trial")
    app_port, health_port, admin_port = free_port(), free_port(), free_port()
    override = tmp / "admin-port.yml"
    override.write_text(
        yaml.safe_dump({"services": {"adapter-pod": {"ports": [f"127.0.0.1:{admin_port}:9183"]}}})
    )
    files = ["-f", "docker-compose.yml", "-f", str(override)]
    env = {
        **os.environ,
        "COMPOSE_PROFILES": "adapter",
        "TRIAL_HEALTH_PORT": str(health_port),
        "TRIAL_METRICS_APP_PORT": str(app_port),
        "SIDECARS_IMAGE_PREFIX": os.environ.get("IMAGE_PREFIX", "sidecars"),
        "SAMPLE_WAR_SHA256": "unused",
    }
    try:
        compose(files, env, "up", "-d", "--wait", "--wait-timeout", "300")
        admin = f"http://127.0.0.1:{admin_port}"
        wait_until(lambda: http_get(admin + "/readyz")[0] == 200, 60, "the adapter ready")
        yield {"app": f"http://127.0.0.1:{app_port}", "admin": f"127.0.0.1:{admin_port}"}
    finally:
        compose(files, env, "down", "-v", "--remove-orphans", "--timeout", "10")
        assert leftovers() == [], "the monitoring trial left containers, volumes or networks"


def test_adapter_alert_fires_when_the_trial_app_fails(
    adapter_pod: dict[str, str], tmp_path: Path
) -> None:
    """Quiet through 15 evaluations while the trial's app is healthy; firing, with the labels
    of the scrape, once the app is made to fail."""
    labels = {"namespace": "trial", "pod": "adapter-pod"}
    rules = MONITORING / "rules" / "adapter.yml"
    with prometheus(tmp_path, adapter_pod["admin"], labels, rules) as base:
        alert = quiet_then_firing(
            base, "AdapterReportingFailure", lambda: post(adapter_pod["app"] + "/errors?ratio=0.5")
        )
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "Adapter trial/adapter-pod reports the app as failing"
