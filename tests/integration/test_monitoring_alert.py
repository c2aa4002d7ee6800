"""End to end: a real Prometheus server scrapes a real adapter in front of the trial's demo app
and evaluates examples/monitoring/rules/adapter.yml; when the app is made to fail (as in the
trial: POST /errors?ratio=0.5), AdapterReportingFailure fires."""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, SidecarProcess, background, free_port, http_get, wait_until
from tests.monitoring_support import MONITORING, tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
DEMO = ROOT / "examples" / "trial" / "demo" / "demo.py"
SCALE = 12  # every duration of the rules divided by this: `for: 2m` becomes 10 s
ALERT = "AdapterReportingFailure"


def _scaled(text: str) -> str:
    """A duration such as 2m as the same duration divided by SCALE, in seconds."""
    seconds = {"s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)([smh])", text)
    assert match, text
    return f"{int(match.group(1)) * seconds[match.group(2)] // SCALE}s"


def scaled_rules(path: Path) -> dict[str, Any]:
    """The rules of `path` with every range, offset and `for` divided by SCALE."""
    doc = yaml.safe_load(path.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = re.sub(r"\[(\w+)\]", lambda m: f"[{_scaled(m.group(1))}]", rule["expr"])
            rule["expr"] = re.sub(
                r"offset (\w+)", lambda m: f"offset {_scaled(m.group(1))}", rule["expr"]
            )
            if "for" in rule:
                rule["for"] = _scaled(rule["for"])
    return doc


def trial_rules() -> str:
    """The adapter's health rules of the compose trial."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return str(compose["services"]["adapter"]["environment"]["ADAPTER_RULES"])


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as resp:
        doc = json.load(resp)
    assert doc["status"] == "success", doc
    return doc["data"]


def firing(base: str) -> list[dict[str, Any]]:
    return [
        a
        for a in api(base, "/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == ALERT and a["state"] == "firing"
    ]


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The demo app, the adapter reading it, the trial's poller calling the adapter's /health,
    and Prometheus (1 s scrapes and evaluations) scraping the adapter's admin port."""
    prometheus = tool("prometheus")
    app_port, health, admin, web = free_port(), free_port(), free_port(), free_port()
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
                (tmp_path / "adapter.yml").write_text(
                    yaml.safe_dump(scaled_rules(MONITORING / "rules" / "adapter.yml"))
                )
                config = {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": ["adapter.yml"],
                    "scrape_configs": [
                        {
                            "job_name": "sidecars",
                            "static_configs": [
                                {
                                    "targets": [f"127.0.0.1:{admin}"],
                                    "labels": {"namespace": "trial", "pod": "adapter"},
                                }
                            ],
                        }
                    ],
                }
                (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
                argv = [
                    str(prometheus),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                ]
                with background(argv) as server:
                    base = f"http://127.0.0.1:{web}"

                    def ready() -> bool:
                        assert server.poll() is None, f"prometheus exited {server.returncode}"
                        return http_get(base + "/-/ready")[0] == 200

                    wait_until(ready, 60, "prometheus ready")
                    yield {"app": app, "prometheus": base}


def test_adapter_alert_fires_when_the_app_fails(monitored: dict[str, str]) -> None:
    """While the app is healthy the alert stays quiet through several evaluations of its
    window; once the app is made to fail, it is firing within a deadline, with the severity
    and the namespace and pod labels of the scrape."""
    base = monitored["prometheus"]
    query = "/api/v1/query?query=" + urllib.parse.quote(
        'sum(rate(adapter_requests_total{route="health"}[10s])) > 0'
    )
    # scraped, and a full window of healthy answers seen: the rule's ratio is defined
    wait_until(lambda: bool(api(base, query)["result"]), 60, "adapter's /health answers scraped")
    rules = api(base, "/api/v1/rules?type=alert")["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} == {ALERT, "AdapterCannotReadApp"}
    # then 15 evaluations while healthy, past the scaled `for` of 10 s: never firing
    evaluations: set[str] = set()
    fired: list[object] = []

    def quiet_evaluations() -> bool:
        fired.extend(firing(base))
        (group,) = api(base, "/api/v1/rules?type=alert")["groups"]
        evaluations.add(group["lastEvaluation"])
        return len(evaluations) >= 15

    wait_until(quiet_evaluations, 60, "15 evaluations of the rules", every=0.3)
    assert fired == [], "the alert fired while the app was healthy"
    request = urllib.request.Request(monitored["app"] + "/errors?ratio=0.5", method="POST")
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    wait_until(lambda: bool(firing(base)), 90, f"{ALERT} firing", every=0.5)
    (alert,) = firing(base)
    assert alert["labels"]["severity"] == "critical"
    assert (alert["labels"]["namespace"], alert["labels"]["pod"]) == ("trial", "adapter")
    assert alert["annotations"]["summary"] == "Adapter trial/adapter reports the app as failing"
