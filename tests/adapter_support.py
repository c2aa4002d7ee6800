"""Test support for the adapter: a real app process with live metrics, and in-process adapters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from tests.helpers import ROOT, free_port, http_get, stop_process, wait_until

# ---- the app: run as `python -m tests.adapter_support PORT` ---------------------------------


def build_app() -> web.Application:
    """/metrics (live prometheus-client registry), /actuator/health (JSON), control endpoints."""
    registry = CollectorRegistry()
    metrics: dict[str, Gauge | Counter] = {}
    state: dict[str, Any] = {"override": None, "health": (200, {"status": "UP"})}

    async def show_metrics(_: web.Request) -> web.StreamResponse:
        override = state["override"]
        if override is None:
            return web.Response(
                body=generate_latest(registry),
                content_type=None,
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )
        if override.get("delay"):
            await asyncio.sleep(override["delay"])
        return web.Response(
            status=override.get("status", 200),
            text=override.get("body", ""),
            content_type=override.get("content_type", "text/plain"),
        )

    async def set_metric(request: web.Request) -> web.Response:
        spec = await request.json()
        name, labels = spec["name"], spec.get("labels", {})
        if name not in metrics:
            kind = Counter if spec["kind"] == "counter" else Gauge
            metrics[name] = kind(name, f"test metric {name}", list(labels), registry=registry)
        metric = metrics[name]
        child = metric.labels(**labels) if labels else metric
        if "inc" in spec:
            child.inc(spec["inc"])
        else:
            assert isinstance(child, Gauge)
            child.set(spec["value"])
        return web.Response(text="ok")

    async def respond(request: web.Request) -> web.Response:
        state["override"] = await request.json()
        return web.Response(text="ok")

    async def reset(_: web.Request) -> web.Response:
        state["override"] = None
        return web.Response(text="ok")

    async def set_health(request: web.Request) -> web.Response:
        spec = await request.json()
        state["health"] = (spec.get("status", 200), spec["doc"], spec.get("delay", 0))
        return web.Response(text="ok")

    async def health(_: web.Request) -> web.Response:
        status, doc, *rest = state["health"]
        if rest and rest[0]:
            await asyncio.sleep(rest[0])
        if isinstance(doc, str):
            return web.Response(status=status, text=doc, content_type="text/html")
        return web.json_response(doc, status=status)

    async def big(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await out.prepare(request)
        for _ in range(int(request.query.get("chunks", "4"))):
            await out.write(b"x" * 65536)
        await out.write_eof()
        return out

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/metrics", show_metrics)
    app.router.add_get("/actuator/health", health)
    app.router.add_get("/big", big)
    app.router.add_post("/control/metric", set_metric)
    app.router.add_post("/control/respond", respond)
    app.router.add_post("/control/reset", reset)
    app.router.add_post("/control/health", set_health)
    return app


# ---- driving the app from tests --------------------------------------------------------------


class AppProcess:
    """The test app as a real subprocess on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.adapter_support", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: http_get(self.base + "/metrics")[0] == 200, 15.0, "test app up")

    def control(self, what: str, spec: Mapping[str, Any] | None = None) -> None:
        req = urllib.request.Request(
            f"{self.base}/control/{what}",
            data=json.dumps(spec or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=15) as resp:
            assert resp.status == 200

    def gauge(self, name: str, value: float, **labels: str) -> None:
        self.control("metric", {"name": name, "kind": "gauge", "labels": labels, "value": value})

    def inc(self, name: str, amount: float, **labels: str) -> None:
        self.control("metric", {"name": name, "kind": "counter", "labels": labels, "inc": amount})

    def respond(
        self,
        body: str = "",
        status: int = 200,
        content_type: str = "text/plain",
        delay: float = 0.0,
    ) -> None:
        self.control(
            "respond",
            {"body": body, "status": status, "content_type": content_type, "delay": delay},
        )

    def close(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def app_process() -> Iterator[AppProcess]:
    app = AppProcess()
    try:
        yield app
    finally:
        app.close()


@contextlib.asynccontextmanager
async def adapter_in_process(env: Mapping[str, str]) -> AsyncIterator[tuple[str, str, Any]]:
    """The real Adapter service in this event loop: yields (service base URL, admin base URL,
    the Adapter). For tests that need no process boundary; one test uses the subprocess."""
    from sidecars.adapter.service import SIDECAR, Adapter
    from sidecars.runtime import Runtime, admin

    port, admin_port = free_port(), free_port()
    full = {
        "ADAPTER_LISTEN": f"127.0.0.1:{port}",
        "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin_port}",
        **env,
    }
    config = SIDECAR.load_config([], full)
    registry = CollectorRegistry()
    readiness = admin.Readiness()
    rt = Runtime(
        "adapter",
        logging.getLogger("test.adapter"),
        registry,
        readiness,
        admin.build_app(readiness, registry),
    )
    service = Adapter(config, rt)
    runner = await admin.start(rt.admin_app, "127.0.0.1", admin_port)
    stopping = asyncio.Event()
    task = asyncio.create_task(service.run(stopping))
    try:
        async with asyncio.timeout(10):
            while not readiness.ready:
                if task.done():
                    task.result()
                    raise AssertionError("adapter stopped before it was ready")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}", service
    finally:
        stopping.set()
        async with asyncio.timeout(10):
            assert await task == 0
        await runner.cleanup()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    port = int(sys.argv[1])
    # A short shutdown: tests leave requests hanging on purpose (the slow-app cases).
    web.run_app(
        build_app(), host="127.0.0.1", port=port, print=None, access_log=None, shutdown_timeout=0.5
    )


if __name__ == "__main__":
    main()


@pytest.fixture(scope="module", name="app")
def app_fixture() -> Iterator[AppProcess]:
    """One real app process per test module; each module resets it between tests."""
    with app_process() as proc:
        yield proc


async def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        async with s.request(method, url) as resp:
            body = await resp.read()
            doc = json.loads(body) if body and "json" in resp.content_type else body
            return resp.status, dict(resp.headers), doc


def env(app: AppProcess, rules: Any = None, **extra: str) -> dict[str, str]:
    out = {"ADAPTER_TARGET": app.base + "/metrics", "ADAPTER_CACHE": "0s"}
    if rules is not None:
        out["ADAPTER_RULES"] = json.dumps(rules)
    out.update({f"ADAPTER_{k.upper()}": v for k, v in extra.items()})
    return out


QUEUE_RULE = {"name": "queue", "metric": "queue_depth", "agg": "max", "op": ">", "threshold": 100}
