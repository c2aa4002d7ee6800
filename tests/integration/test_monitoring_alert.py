"""End to end on loopback: a real Prometheus server scrapes a real adapter in front of the
trial's demo app and evaluates examples/monitoring/rules/adapter.yml; when the app is made to
fail (as in the trial: POST /errors?ratio=0.5), AdapterReportingFailure fires.
tests/e2e/test_monitoring_trial.py does the same against the compose trial's adapter pod."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, SidecarProcess, background, free_port, http_get, wait_until
from tests.monitoring_support import MONITORING
from tests.prometheus_support import post, prometheus, quiet_then_firing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
DEMO = ROOT / "examples" / "trial" / "demo" / "demo.py"


def trial_rules() -> str:
    """The adapter's health rules of the compose trial."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return str(compose["services"]["adapter"]["environment"]["ADAPTER_RULES"])


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The demo app, the adapter reading it, the trial's poller calling the adapter's /health,
    and Prometheus scraping the adapter's admin port."""
    app_port, health, admin = free_port(), free_port(), free_port()
    app = f"http://127.0.0.1:{app_port}"
    demo = [sys.executable, str(DEMO)]
    with background([*demo, "metrics", "--host", "127.0.0.1", "--port", str(app_port)]):
        wait_until(lambda: http_get(app + "/metrics")[0] == 200, 15, "demo app up")
        env = {
            "ADAPTER_LISTEN": f"127.0.0.1:{health}",
            "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin}",
            "ADAPTER_TARGET": app + "/metrics",
            "ADAPTER_RULES": trial_rules(),
        }
        with SidecarProcess("adapter", env=env) as adapter:
            adapter.wait_http(f"http://127.0.0.1:{admin}/readyz")
            poll_url = f"http://127.0.0.1:{health}/health"
            with background([*demo, "poller", "--url", poll_url, "--every", "0.2"]):
                labels = {"namespace": "trial", "pod": "adapter"}
                rules = MONITORING / "rules" / "adapter.yml"
                with prometheus(tmp_path, f"127.0.0.1:{admin}", labels, rules) as base:
                    yield {"app": app, "prometheus": base}


def test_adapter_alert_fires_when_the_app_fails(monitored: dict[str, str]) -> None:
    """While the app is healthy the alert stays quiet through 15 evaluations; once the app is
    made to fail, it is firing within a deadline, with its severity and the scrape's labels."""
    alert = quiet_then_firing(
        monitored["prometheus"],
        "AdapterReportingFailure",
        lambda: post(monitored["app"] + "/errors?ratio=0.5"),
    )
    assert alert["labels"]["severity"] == "critical"
    assert (alert["labels"]["namespace"], alert["labels"]["pod"]) == ("trial", "adapter")
    assert alert["annotations"]["summary"] == "Adapter trial/adapter reports the app as failing"
