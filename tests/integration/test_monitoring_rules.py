"""examples/monitoring checked by Prometheus's own tool: the rules load, each alert fires when it
should and not otherwise (promtool's unit tests), the scrape configuration loads, and every
dashboard is JSON whose every query parses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring_support import (
    DASHBOARDS,
    MONITORING,
    RULE_FILES,
    RULE_TESTS,
    SIDECARS,
    alerts,
    dashboard_queries,
    load_dashboard,
    metric_names,
    run_tool,
)

pytestmark = pytest.mark.integration
PODS = MONITORING.parent / "pods"


def test_there_are_rules_tests_and_a_dashboard_per_sidecar() -> None:
    """One rules file, one promtool test file and one dashboard for each of the four."""
    for found in (RULE_FILES, RULE_TESTS, DASHBOARDS):
        assert sorted(p.stem for p in found) == sorted(SIDECARS)


def test_promtool_check_rules() -> None:
    """`promtool check rules` accepts every rules file (PromQL, templates, durations)."""
    done = run_tool("promtool", "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    """`promtool test rules` passes, and every alert is tested both firing and not firing."""
    done = run_tool("promtool", "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    fired, quiet = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never seen firing in a test"
    assert names - quiet == set(), "alerts never seen quiet in a test"


def test_promtool_fails_a_rule_test_that_is_wrong(tmp_path: Path) -> None:
    """The unit tests can fail: an alert expected where none fires is reported."""
    case = yaml.safe_load((MONITORING / "tests" / "adapter.yml").read_text())
    case["rule_files"] = [str(MONITORING / "rules" / "adapter.yml")]
    quiet = case["tests"][0]["alert_rule_test"][0]
    fired = case["tests"][0]["alert_rule_test"][1]
    quiet["exp_alerts"] = fired["exp_alerts"]
    (tmp_path / "wrong.yml").write_text(yaml.safe_dump(case))
    done = run_tool("promtool", "test", "rules", str(tmp_path / "wrong.yml"))
    assert done.returncode != 0 and "AdapterReportingFailure" in done.stdout + done.stderr


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_severity_summary_description_and_runbook(alert: dict[str, Any]) -> None:
    """Each alert has a severity, a summary and a description, and its runbook link points to
    a section of examples/monitoring/README.md."""
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    readme = (MONITORING / "README.md").read_text()
    anchor = alert["alert"].lower()
    assert alert["annotations"]["runbook"] == f"examples/monitoring/README.md#{anchor}"
    assert re.search(rf"^#+ {alert['alert']}$", readme, re.MULTILINE), "no runbook section"


def test_the_scrape_configuration_loads() -> None:
    """`promtool check config` accepts prometheus.yml with its rule files."""
    done = run_tool("promtool", "check", "config", str(MONITORING / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def _example_pods() -> list[dict[str, Any]]:
    docs = [d for p in sorted(PODS.glob("*/*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return [d for d in docs if d and d["kind"] == "Pod"]


def test_scraped_pods_annotate_a_declared_admin_port() -> None:
    """Every example pod with a long-running sidecar carries the annotations and the PodMonitor's
    label, and what they select is a sidecar's admin port the pod declares."""
    admin_ports = {9181, 9182, 9183, 9184}
    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    endpoint_names = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = 0
    for pod in _example_pods():
        spec = pod["spec"]
        running = spec["containers"] + [
            c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"
        ]
        ports = {p["name"]: p["containerPort"] for c in running for p in c.get("ports", [])}
        admin = {n: p for n, p in ports.items() if p in admin_ports}
        notes = pod["metadata"].get("annotations", {})
        if not admin:
            assert "prometheus.io/scrape" not in notes, pod["metadata"]["name"]
            continue
        scraped += 1
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/path"] == "/metrics"
        if "prometheus.io/port" in notes:
            assert int(notes["prometheus.io/port"]) in admin.values()
        else:  # prometheus.yml then scrapes each port named admin or *-admin
            assert all(re.fullmatch(r"admin|.+-admin", n) for n in admin)
        assert selector.items() <= pod["metadata"]["labels"].items()
        assert set(admin) <= endpoint_names, "the PodMonitor misses an admin port name"
    assert scraped >= 4


def test_the_podmonitor_is_a_podmonitor() -> None:
    """The PodMonitor has the shape the Prometheus Operator's CRD requires."""
    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    assert set(monitor["spec"]) <= {"selector", "namespaceSelector", "podMetricsEndpoints"}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scheme", "scrapeTimeout"}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", endpoint["port"])
        assert len(endpoint["port"]) <= 15  # a port name is an IANA service name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_current_grafana_json_with_a_datasource_variable(path: Path) -> None:
    """Valid JSON in the current Grafana schema, with a Prometheus datasource variable that
    every panel and query uses, and unique panel ids."""
    doc = load_dashboard(path)
    assert doc["schemaVersion"] == 41  # Grafana 12
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Every panel query and query variable is PromQL that promtool parses, once Grafana's
    variables are substituted; each becomes a recording rule of a scratch rules file."""
    records = []
    for path in DASHBOARDS:
        for i, (where, expr) in enumerate(dashboard_queries(load_dashboard(path))):
            records.append({"record": f"dashboard:{path.stem}:{i}", "expr": expr})
            assert metric_names(expr), f"{path.name} {where}: reads no metric"
    scratch = tmp_path / "dashboards.yml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
    done = run_tool("promtool", "check", "rules", str(scratch))
    assert done.returncode == 0, done.stdout + done.stderr
    # and the check would catch a query that does not parse
    records.append({"record": "dashboard:broken", "expr": "sum by (pod (rate(x[1m]))"})
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
    assert run_tool("promtool", "check", "rules", str(scratch)).returncode != 0
