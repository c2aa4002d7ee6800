"""Bad input from the app, each a test: the adapter answers `fail` with a reason, never a 500."""

from __future__ import annotations

import random

import pytest

from tests.adapter_support import (
    QUEUE_RULE,
    AppProcess,
    adapter_in_process,
    app_fixture,  # noqa: F401 - provides the module-scoped `app` fixture
    env,
    get,
)
from tests.helpers import free_port, run_sidecar

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _reset(app: AppProcess) -> None:
    app.control("reset")


async def test_malformed_text_fails_naming_the_line(app: AppProcess) -> None:
    app.respond('# TYPE a gauge\na 1\na{x="unterminated} 2\nb 3\n')
    async with adapter_in_process(env(app)) as (base, admin, _svc):
        status, _, doc = await get(base + "/health")
        assert status == 503 and doc["status"] == "fail"
        assert "line 3" in doc["output"] and "unterminated" in doc["output"]
        _, _, text = await get(admin + "/metrics")
        assert b'adapter_scrapes_total{result="parse_error"} 1.0' in text


def ten_megabytes() -> str:
    rng = random.Random(7)
    lines = []
    size = 0
    i = 0
    while size < 10_000_000:
        line = f'big_metric{{shard="{i % 97}",path="/a/b/{i}"}} {rng.random():.6f}\n'
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines) + "queue_depth 1\n"


async def test_a_10mb_page_is_refused_above_the_limit_and_read_below(app: AppProcess) -> None:
    app.respond(ten_megabytes())
    async with adapter_in_process(env(app, [QUEUE_RULE], timeout="20s")) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert status == 503
        assert "exceeds the 8388608 byte limit" in doc["output"]
    rules = [QUEUE_RULE]
    async with adapter_in_process(env(app, rules, timeout="20s", max_bytes="16MiB")) as (
        base,
        _,
        _svc,
    ):
        status, _, doc = await get(base + "/health")
        assert status == 200, doc
        assert doc["checks"]["rule:queue"][0]["observedValue"] == 1


async def test_app_down(app: AppProcess) -> None:
    down = {"ADAPTER_TARGET": f"http://127.0.0.1:{free_port()}/metrics", "ADAPTER_CACHE": "0s"}
    async with adapter_in_process(down) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert status == 503 and "cannot connect" in doc["output"]


async def test_slow_app_fails_within_the_deadline(app: AppProcess) -> None:
    app.respond("queue_depth 1\n", delay=60)
    async with adapter_in_process(env(app, timeout="300ms")) as (base, admin, _svc):
        status, _, doc = await get(base + "/health")  # the client gives up after 15 s
        assert status == 503 and "did not answer within 0.3s" in doc["output"]
        _, _, text = await get(admin + "/metrics")
        assert b'adapter_scrapes_total{result="timeout"} 1.0' in text


@pytest.mark.parametrize(
    ("body", "status", "ctype", "why"),
    [
        ("<html><body>hi</body></html>", 200, "text/html", "text/html, not a metrics page"),
        ("queue_depth 1\n", 500, "text/plain", "HTTP 500"),
        ("<!DOCTYPE html>\n<p>x</p>\n", 200, "text/plain", "line 1"),
    ],
)
async def test_html_or_500(app: AppProcess, body: str, status: int, ctype: str, why: str) -> None:
    app.respond(body, status=status, content_type=ctype)
    async with adapter_in_process(env(app)) as (base, _, _svc):
        code, _, doc = await get(base + "/health")
        assert code == 503 and why in doc["output"]


async def test_nan_and_inf_values(app: AppProcess) -> None:
    nan_warn = dict(QUEUE_RULE, on_missing="warn")
    app.respond("queue_depth NaN\n")
    async with adapter_in_process(env(app, [nan_warn])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (200, "warn")
        assert "is NaN" in doc["checks"]["rule:queue"][0]["output"]
    async with adapter_in_process(env(app, [QUEUE_RULE])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (503, "fail")
        app.respond("queue_depth +Inf\n")
        status, _, doc = await get(base + "/health")
        assert status == 503
        assert doc["checks"]["rule:queue"][0]["observedValue"] == "+Inf"
        app.respond("queue_depth -Inf\n")
        status, _, doc = await get(base + "/health")
        assert status == 200
        assert doc["checks"]["rule:queue"][0]["observedValue"] == "-Inf"


async def test_duplicate_series(app: AppProcess) -> None:
    app.respond('queue_depth{w="a"} 1\nqueue_depth{w="b"} 2\nqueue_depth{w="a"} 3\n')
    async with adapter_in_process(env(app, [QUEUE_RULE])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert status == 503
        assert "line 3: duplicate series" in doc["output"]


@pytest.mark.parametrize(("on_missing", "code"), [("fail", 503), ("warn", 200)])
async def test_rule_naming_a_missing_metric(app: AppProcess, on_missing: str, code: int) -> None:
    rule = dict(QUEUE_RULE, metric="no_such_metric", on_missing=on_missing)
    async with adapter_in_process(env(app, [rule])) as (base, _, _svc):
        status, _, doc = await get(base + "/health")
        assert (status, doc["status"]) == (code, on_missing)
        check = doc["checks"]["rule:queue"][0]
        assert "no_such_metric is missing" in check["output"]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ('[{"name": "q", "metric": "x", "op": ">>", "threshold": 1}]', "rule 1 ('q'): 'op'"),
        ("- {name: a, metric: x, op: '>', threshold: 1}\n- {name: b, op: '<'}", "rule 2 ('b')"),
        ('[{"name": "q", "metric": "x", "op": ">", "threshold": "high"}]', "'threshold'"),
        ("/nonexistent/rules.yaml", "cannot read the rules file"),
    ],
)
def test_invalid_rules_exit_2_naming_the_rule(rules: str, expected: str) -> None:
    done = run_sidecar("adapter", env={"ADAPTER_RULES": rules})
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
