"""Health from metrics against a real app process whose metrics the tests change."""

from __future__ import annotations

import asyncio

import pytest

from tests.adapter_support import (
    QUEUE_RULE,
    AppProcess,
    adapter_in_process,
    app_fixture,  # noqa: F401 - provides the module-scoped `app` fixture
    env,
    get,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _reset(app: AppProcess) -> None:
    app.control("reset")


async def test_answer_follows_the_app_200_503_200(app: AppProcess) -> None:
    app.gauge("queue_depth", 5, worker="a")
    app.gauge("queue_depth", 7, worker="b")
    async with adapter_in_process(env(app, [QUEUE_RULE])) as (base, _, _svc):
        status, headers, doc = await get(base + "/health")
        assert status == 200
        assert headers["Content-Type"].startswith("application/health+json")
        assert doc["status"] == "pass"
        assert doc["checks"]["rule:queue"][0]["observedValue"] == 7
        assert doc["checks"]["target:scrape"][0]["status"] == "pass"

        app.gauge("queue_depth", 500, worker="b")
        status, _, doc = await get(base + "/health")
        assert status == 503
        assert doc["status"] == "fail"
        check = doc["checks"]["rule:queue"][0]
        assert check["status"] == "fail" and check["observedValue"] == 500
        assert "max(queue_depth) = 500.0 > 100" in check["output"]
        assert "max(queue_depth)" in doc["output"]

        app.gauge("queue_depth", 1, worker="b")
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (200, "pass")


async def test_label_matchers_and_warn_severity(app: AppProcess) -> None:
    rule = {
        "name": "slow-api",
        "metric": "latency_p99",
        "labels": {"route": {"re": "/api/.*"}, "method": {"ne": "HEAD"}},
        "agg": "max",
        "op": ">=",
        "threshold": 2,
        "severity": "warn",
    }
    app.gauge("latency_p99", 9, route="/static/x", method="GET")
    app.gauge("latency_p99", 9, route="/api/a", method="HEAD")
    app.gauge("latency_p99", 1, route="/api/a", method="GET")
    async with adapter_in_process(env(app, [rule])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (200, "pass")
        assert doc["checks"]["rule:slow-api"][0]["observedValue"] == 1
        app.gauge("latency_p99", 3, route="/api/a", method="GET")
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (200, "warn")


async def test_ratio_rule(app: AppProcess) -> None:
    rule = {
        "name": "error-ratio",
        "metric": "ratio_requests_total",
        "labels": {"code": {"re": "5.."}},
        "denominator": {"metric": "ratio_requests_total"},
        "op": ">",
        "threshold": 0.1,
    }
    app.inc("ratio_requests_total", 95, code="200")
    app.inc("ratio_requests_total", 5, code="500")
    async with adapter_in_process(env(app, [rule])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert status == 200
        assert doc["checks"]["rule:error-ratio"][0]["observedValue"] == pytest.approx(0.05)
        app.inc("ratio_requests_total", 100, code="503")
        status, _, doc = await get(base + "/health")
        assert status == 503
        assert doc["checks"]["rule:error-ratio"][0]["observedValue"] == pytest.approx(105 / 200)


async def test_rate_rule_over_two_scrapes(app: AppProcess) -> None:
    rule = {
        "name": "req-rate",
        "metric": "rate_events_total",
        "rate": True,
        "op": ">",
        "threshold": 1e6,
    }
    app.inc("rate_events_total", 1)
    async with adapter_in_process(env(app, [rule])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        # The first scrape has nothing to compare with: a warning, not a failure.
        assert (status, doc["status"]) == (200, "warn")
        assert "second scrape" in doc["checks"]["rule:req-rate"][0]["output"]
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (200, "pass")
        assert doc["checks"]["rule:req-rate"][0]["observedValue"] == 0
        # 1e12 events between two scrapes is far above 1e6/s unless they were 1e6 s apart.
        app.inc("rate_events_total", 1e12)
        status, _, doc = await get(base + "/health")
        assert status == 503
        assert doc["checks"]["rule:req-rate"][0]["observedValue"] > 1e6


async def test_no_rules_pass_on_a_parsable_page(app: AppProcess) -> None:
    async with adapter_in_process(env(app)) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (200, "pass")
        assert list(doc["checks"]) == ["target:scrape"]
        app.respond("oops", status=500)
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (503, "fail")
        assert "HTTP 500" in doc["output"]


async def test_many_probes_in_the_cache_window_cause_one_scrape(app: AppProcess) -> None:
    app.gauge("queue_depth", 3, worker="a")
    async with adapter_in_process(env(app, [QUEUE_RULE], cache="60s")) as (base, admin, svc):
        # The app answers slowly so all probes arrive while the one scrape is in flight.
        app.respond("queue_depth 3\n", delay=0.3)
        results = await asyncio.gather(*(get(base + "/health") for _ in range(40)))
        assert {r[0] for r in results} == {200}
        app.respond("queue_depth 900\n")
        status, _, doc = await get(base + "/health")
        assert status == 200  # still the cached answer
        _, _, text = await get(admin + "/metrics")
        assert b'adapter_scrapes_total{result="ok"} 1.0' in text
        assert b'adapter_rule_outcomes_total{rule="queue",status="pass"} 1.0' in text
        assert b'adapter_requests_total{code="200",route="health"} 41.0' in text


async def test_only_get_and_head_and_no_open_proxy(app: AppProcess) -> None:
    app.gauge("queue_depth", 3, worker="a")
    async with adapter_in_process(env(app, [QUEUE_RULE])) as (base, _, _svc):
        status, _, body = await get(base + "/health", "HEAD")
        assert status == 200 and body == b""
        for method in ("POST", "PUT", "DELETE"):
            assert (await get(base + "/health", method))[0] == 405
        assert (await get(base + "/anything"))[0] == 404
        # Nothing in the request can point the adapter elsewhere.
        status, _, doc = await get(base + "/health?target=http://127.0.0.1:1/metrics")
        assert status == 200 and doc["checks"]["rule:queue"][0]["observedValue"] == 3
