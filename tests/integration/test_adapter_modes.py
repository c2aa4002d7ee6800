"""Reverse mode (gauges from a JSON health endpoint), path mapping, and the real subprocess."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import aiohttp
import pytest

from sidecars.adapter import exposition
from tests.adapter_support import (
    QUEUE_RULE,
    AppProcess,
    adapter_in_process,
    app_fixture,  # noqa: F401 - provides the module-scoped `app` fixture
    get,
)
from tests.helpers import SidecarProcess, free_port, http_get, wait_until

pytestmark = pytest.mark.integration

SPRING_UP = {
    "status": "UP",
    "components": {
        "db": {"status": "UP", "details": {"database": "PostgreSQL"}},
        "disk": {"status": "OUT_OF_SERVICE"},
        "grp": {"status": "UP", "components": {"cache": {"status": "DOWN"}}},
    },
}


@pytest.fixture(autouse=True)
def _reset(app: AppProcess) -> None:
    app.control("reset")
    app.control("health", {"status": 200, "doc": {"status": "UP"}})


def reverse_env(app: AppProcess) -> dict[str, str]:
    return {
        "ADAPTER_MODE": "metrics-from-health",
        "ADAPTER_TARGET": app.base + "/actuator/health",
        "ADAPTER_CACHE": "0s",
        "ADAPTER_TIMEOUT": "500ms",
    }


def gauges(text: bytes) -> dict[str, float]:
    page = exposition.parse(text.decode())
    return {
        name + raw: value
        for name, fam in page.families.items()
        for raw, value in fam.series.items()
    }


def state(g: dict[str, float], name: str, labels: str = "") -> str:
    """The one state whose series is 1 (the other three are 0)."""
    states = {
        s: g[f'{name}{{{labels}state="{s}"}}'] for s in ("ok", "degraded", "failing", "unknown")
    }
    assert sorted(states.values()) == [0, 0, 0, 1], states
    return next(s for s, v in states.items() if v == 1)


async def test_reverse_mode_spring_boot_shape(app: AppProcess) -> None:
    app.control("health", {"status": 200, "doc": SPRING_UP})
    async with adapter_in_process(reverse_env(app)) as (base, _, _svc):
        status, headers, body = await get(base + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        g = gauges(body)
        assert g["app_health_up"] == 1 and state(g, "app_health_state") == "ok"
        assert g["app_health_http_status"] == 200
        assert state(g, "app_health_check_state", 'check="db",') == "ok"
        assert state(g, "app_health_check_state", 'check="disk",') == "failing"
        assert state(g, "app_health_check_state", 'check="grp.cache",') == "failing"
        assert g["app_health_response_seconds"] >= 0

        app.control("health", {"status": 503, "doc": {"status": "DOWN"}})
        g = gauges((await get(base + "/metrics"))[2])
        assert g["app_health_up"] == 1 and g["app_health_http_status"] == 503
        assert state(g, "app_health_state") == "failing"


async def test_reverse_mode_ietf_shape_and_failures(app: AppProcess) -> None:
    doc = {
        "status": "warn",
        "checks": {"db:responseTime": [{"status": "pass"}, {"status": "warn"}], "q": []},
    }
    app.control("health", {"doc": doc})
    async with adapter_in_process(reverse_env(app)) as (base, _, _svc):
        g = gauges((await get(base + "/metrics"))[2])
        assert state(g, "app_health_state") == "degraded"
        assert state(g, "app_health_check_state", 'check="db:responseTime",') == "degraded"
        assert state(g, "app_health_check_state", 'check="q",') == "unknown"
        # Not JSON: the endpoint is not "up" in the sense of answering a status.
        app.control("health", {"status": 200, "doc": "<html>login</html>"})
        g = gauges((await get(base + "/metrics"))[2])
        assert g["app_health_up"] == 0 and state(g, "app_health_state") == "unknown"
        # Hanging: answered within the deadline, up = 0.
        app.control("health", {"doc": {"status": "UP"}, "delay": 60})
        status, _, body = await get(base + "/metrics")
        assert status == 200 and gauges(body)["app_health_up"] == 0


async def test_path_mapping_streams_the_app_answer(app: AppProcess) -> None:
    app.control("health", {"status": 503, "doc": {"status": "DOWN"}})
    env = {
        "ADAPTER_MODE": "paths",
        "ADAPTER_TARGET": app.base + "/metrics",
        "ADAPTER_PATHS": "/health=/actuator/health,/blob=/big",
        "ADAPTER_MAX_BYTES": "128KiB",
        "ADAPTER_TIMEOUT": "500ms",
    }
    async with adapter_in_process(env) as (base, admin, _svc):
        status, headers, doc = await get(base + "/health")
        assert status == 503 and doc == {"status": "DOWN"}
        assert headers["Content-Type"].startswith("application/json")
        status, _, body = await get(base + "/health", "HEAD")
        assert status == 503 and body == b""
        assert (await get(base + "/health", "POST"))[0] == 405
        assert (await get(base + "/metrics"))[0] == 404  # only the mapped paths are served
        # 4 x 64 KiB streamed without Content-Length: cut at 128 KiB, never passed on whole.
        with pytest.raises(aiohttp.ClientError):  # the connection is cut mid-body
            await get(base + "/blob")
        app.control("health", {"doc": {"status": "UP"}, "delay": 60})
        status, _, body = await get(base + "/health")
        assert status == 504 and b"did not answer in 0.5s" in body
        _, _, text = await get(admin + "/metrics")
        assert b'adapter_requests_total{code="504",route="forward"} 1.0' in text


async def test_path_mapping_reuses_connections_and_survives_an_app_restart() -> None:
    first = AppProcess()
    env = {
        "ADAPTER_MODE": "paths",
        "ADAPTER_TARGET": first.base + "/metrics",
        "ADAPTER_PATHS": "/health=/actuator/health",
    }
    try:
        async with adapter_in_process(env) as (base, _, svc):
            for _ in range(3):
                assert (await get(base + "/health"))[0] == 200
            assert len(svc.app_client._idle) == 1  # one kept-alive connection, reused
            first.close()
            second = AppProcess(first.port)  # the app restarts: the pooled connection is dead
            try:
                second.control("health", {"status": 503, "doc": {"status": "DOWN"}})
                status, _, doc = await get(base + "/health")
                assert (status, doc) == (503, {"status": "DOWN"})
            finally:
                second.close()
            status, _, body = await get(base + "/health")
            assert status == 502 and b"cannot read the app" in body
    finally:
        first.close()


def test_real_subprocess_follows_the_app_and_drains_on_sigterm(app: AppProcess) -> None:
    port, admin_port = free_port(), free_port()
    app.gauge("queue_depth", 1, worker="a")
    env = {
        "ADAPTER_LISTEN": f"127.0.0.1:{port}",
        "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin_port}",
        "ADAPTER_TARGET": app.base + "/metrics",
        "ADAPTER_RULES": json.dumps({"rules": [QUEUE_RULE]}),
        "ADAPTER_CACHE": "0s",
    }
    url = f"http://127.0.0.1:{port}/health"
    with SidecarProcess("adapter", env) as proc:
        proc.wait_http(f"http://127.0.0.1:{admin_port}/readyz")
        assert http_get(url)[0] == 200
        app.gauge("queue_depth", 101, worker="a")
        wait_until(lambda: http_get(url)[0] == 503, 10, "adapter answers 503")
        assert json.loads(http_get(url)[1])["status"] == "fail"
        app.gauge("queue_depth", 0, worker="a")
        wait_until(lambda: http_get(url)[0] == 200, 10, "adapter answers 200 again")
        _, text = http_get(f"http://127.0.0.1:{admin_port}/metrics")
        assert b'adapter_rule_outcomes_total{rule="queue",status="fail"}' in text
        # Having served and scraped, the process has not loaded aiohttp (nor its yarl).
        maps = Path(f"/proc/{proc.proc.pid}/maps").read_text()
        assert "/aiohttp/" not in maps and "/yarl/" not in maps
        assert proc.terminate(signal.SIGTERM) == 0
        messages = [line["msg"] for line in proc.log_lines()]
        assert messages[-1] == "stopped"
        # Logged on change only, however many probes asked meanwhile.
        health = [m for m in messages if m.startswith("health is")]
        assert health == ["health is pass", "health is fail", "health is pass"]
