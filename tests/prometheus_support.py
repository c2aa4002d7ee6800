"""A real Prometheus server for the monitoring tests: it scrapes one target every second and
evaluates a rules file of examples/monitoring with its durations scaled down, and the check
both end-to-end tests make (quiet while the app is healthy, firing once it is made to fail)."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import background, free_port, go_tool, http_get, wait_until

SCALE = 12  # every duration of the rules divided by this: `for: 2m` becomes 10 s


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
            expr = re.sub(r"\[(\w+)\]", lambda m: f"[{_scaled(m.group(1))}]", rule["expr"])
            rule["expr"] = re.sub(r"offset (\w+)", lambda m: f"offset {_scaled(m.group(1))}", expr)
            if "for" in rule:
                rule["for"] = _scaled(rule["for"])
    return doc


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as resp:
        doc = json.load(resp)
    assert doc["status"] == "success", doc
    return doc["data"]


def firing(base: str, alert: str) -> list[dict[str, Any]]:
    return [
        a
        for a in api(base, "/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == alert and a["state"] == "firing"
    ]


@contextlib.contextmanager
def prometheus_server(tmp: Path, config: dict[str, Any]) -> Iterator[str]:
    """Prometheus with `config` on a free loopback port, its data in `tmp`; yields its base URL
    once it is ready."""
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    base = f"http://127.0.0.1:{free_port()}"
    argv = [
        str(go_tool("prometheus")),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address={base.removeprefix('http://')}",
    ]
    with background(argv) as server:

        def ready() -> bool:
            assert server.poll() is None, f"prometheus exited {server.returncode}"
            return http_get(base + "/-/ready")[0] == 200

        wait_until(ready, 60, "prometheus ready")
        yield base


@contextlib.contextmanager
def prometheus(tmp: Path, target: str, labels: dict[str, str], rules: Path) -> Iterator[str]:
    """Prometheus (1 s scrapes and evaluations) scraping `target` with `labels` and evaluating
    `rules` scaled down; yields its base URL once it is ready."""
    (tmp / "rules.yml").write_text(yaml.safe_dump(scaled_rules(rules)))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {"job_name": "sidecars", "static_configs": [{"targets": [target], "labels": labels}]}
        ],
    }
    with prometheus_server(tmp, config) as base:
        yield base


def quiet_then_firing(base: str, alert: str, make_fail: Callable[[], None]) -> dict[str, Any]:
    """The adapter's /health answers are scraped, then `alert` stays quiet through 15
    evaluations (past its scaled `for`) while the app is healthy; after `make_fail` it is
    firing within a deadline. Returns the firing alert."""
    query = "/api/v1/query?query=" + urllib.parse.quote(
        'sum(rate(adapter_requests_total{route="health"}[10s])) > 0'
    )
    wait_until(lambda: bool(api(base, query)["result"]), 90, "adapter's /health answers scraped")
    evaluations: set[str] = set()
    fired: list[object] = []

    def quiet_evaluations() -> bool:
        fired.extend(firing(base, alert))
        (group,) = api(base, "/api/v1/rules?type=alert")["groups"]
        evaluations.add(group["lastEvaluation"])
        return len(evaluations) >= 15

    wait_until(quiet_evaluations, 60, "15 evaluations of the rules", every=0.3)
    assert fired == [], f"{alert} fired while the app was healthy"
    make_fail()
    wait_until(lambda: bool(firing(base, alert)), 90, f"{alert} firing", every=0.5)
    (found,) = firing(base, alert)
    return found


def post(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10) as resp:
        assert resp.status == 200, url
