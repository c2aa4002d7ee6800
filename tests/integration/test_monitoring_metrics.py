"""Every metric name the alert rules and dashboards of examples/monitoring read is on a real
sidecar's /metrics page: the four run as real processes, as the other integration tests run
them, so renaming a metric without updating the rules and dashboards fails here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.adapter_support import AppProcess
from tests.helpers import SidecarProcess, free_port, http_get
from tests.logshipper_support import BulkSink
from tests.monitoring_support import (
    DASHBOARDS,
    RULE_FILES,
    dashboard_queries,
    exposed_names,
    load_dashboard,
    metric_names,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
# kube-state-metrics' names (the init-container warloader alert) are not a sidecar's own
FOREIGN_PREFIXES = ("kube_",)


def _settings(name: str, tmp: Path, peers: dict[str, str]) -> dict[str, str]:
    """Settings under which each sidecar runs and exports its metrics."""
    if name == "logshipper":
        (tmp / "logs").mkdir()
        (tmp / "logs" / "app.log").write_text("one line\n")
        return {
            "LOGSHIPPER_PATHS": str(tmp / "logs" / "*.log"),
            "LOGSHIPPER_ES_HOSTS": peers["elasticsearch"],
            "LOGSHIPPER_INDEX": "monitoring-names",
            "LOGSHIPPER_STATE_DIR": str(tmp),
            "LOGSHIPPER_INDEX_TEMPLATE": "false",
        }
    if name.startswith("ambassador"):
        return {
            "AMBASSADOR_LISTEN": f"127.0.0.1:{free_port()}",
            "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{free_port()}",  # a member that is down
            "AMBASSADOR_MODE": name.partition("-")[2],
        }
    if name == "adapter":
        return {"ADAPTER_LISTEN": f"127.0.0.1:{free_port()}", "ADAPTER_TARGET": peers["app"]}
    if name == "adapter-reverse":  # its service port serves the app's health as gauges
        return {
            "ADAPTER_LISTEN": f"127.0.0.1:{free_port()}",
            "ADAPTER_TARGET": peers["health"],
            "ADAPTER_MODE": "metrics-from-health",
        }
    (tmp / "artifacts").mkdir()
    (tmp / "artifacts" / "sample.war").write_bytes(b"PK\x05\x06" + bytes(18))
    (tmp / "webapps").mkdir()
    return {
        "WARLOADER_SOURCES": str(tmp / "artifacts" / "sample.war"),
        "WARLOADER_DEST": str(tmp / "webapps"),
        "WARLOADER_WATCH": "true",
    }


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Each sidecar's /metrics page (Prometheus text format), from a real process (the
    ambassador's pages in tcp and in http mode; the adapter's in both directions, with the app's
    health as gauges on its service port)."""
    out: dict[str, str] = {}
    with BulkSink() as sink:
        app = AppProcess()
        try:
            peers = {
                "elasticsearch": sink.url,
                "app": app.base + "/metrics",
                "health": app.base + "/actuator/health",
            }
            # the ambassador's pages differ by mode: a dashboard may read both
            runs = ("ambassador-tcp", "ambassador-http", "adapter", "adapter-reverse")
            for run in ("logshipper", *runs, "warloader"):
                name = run.partition("-")[0]
                tmp = tmp_path_factory.mktemp(run)
                admin = f"127.0.0.1:{free_port()}"
                env = {**_settings(run, tmp, peers), f"{name.upper()}_ADMIN_ADDR": admin}
                with SidecarProcess(name, env=env) as proc:
                    proc.wait_http(f"http://{admin}/healthz")
                    status, body = http_get(f"http://{admin}/metrics")
                    assert status == 200, run
                    out[name] = out.get(name, "") + body.decode()
                    if run == "adapter-reverse":
                        status, body = http_get(f"http://{env['ADAPTER_LISTEN']}/metrics")
                        assert status == 200, run
                        out[name] += body.decode()
                    proc.terminate()
        finally:
            app.close()
    yield out


def _names(exprs: list[str]) -> set[str]:
    names = set().union(*(metric_names(e) for e in exprs))
    return {n for n in names if ":" not in n and not n.startswith(FOREIGN_PREFIXES)}


def _recorded() -> set[str]:
    return {r["record"] for path in RULE_FILES for g in _groups(path) for r in g if "record" in r}


def _groups(path: Path) -> list[list[dict[str, str]]]:
    return [g["rules"] for g in yaml.safe_load(path.read_text())["groups"]]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_metrics_are_on_the_sidecars_page(path: Path, pages: dict[str, str]) -> None:
    """Each rules file reads only metrics its sidecar's /metrics page has (and its own
    recording rules)."""
    exprs = [r["expr"] for g in _groups(path) for r in g]
    names = _names(exprs)
    assert names, path.name
    recorded = {n for e in exprs for n in metric_names(e) if ":" in n}
    assert recorded <= _recorded(), "a recording rule is read but never recorded"
    missing = names - exposed_names(pages[path.stem])
    assert not missing, f"{path.name} reads metrics {path.stem} does not export: {missing}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_metrics_are_on_the_sidecars_page(path: Path, pages: dict[str, str]) -> None:
    """Each dashboard reads only metrics its sidecar's /metrics page has."""
    names = _names([expr for _, expr in dashboard_queries(load_dashboard(path))])
    missing = names - exposed_names(pages[path.stem])
    assert not missing, f"{path.name} reads metrics {path.stem} does not export: {missing}"


def test_a_renamed_metric_would_be_caught(pages: dict[str, str]) -> None:
    """The check can fail: a name the pages do not have is reported missing, and a labelled
    counter with no sample yet still counts as exported (its # TYPE line)."""
    exported = exposed_names(pages["logshipper"])
    assert "logshipper_documents_dead_lettered_total" in exported
    assert "logshipper_documents_dead_letters_total" not in exported
    assert metric_names('rate(logshipper_documents_dead_letters_total{pod="x"}[5m])') == {
        "logshipper_documents_dead_letters_total"
    }
