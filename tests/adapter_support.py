"""Test support for the adapter: the app with live metrics (support/metrics_app.py) as a real
process, and in-process adapters."""

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

from sidecars.runtime.metrics import Registry
from tests.helpers import ROOT, free_port, http_get, stop_process, wait_until

# ---- driving the app from tests --------------------------------------------------------------


class AppProcess:
    """The test app as a real subprocess on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "support.metrics_app", str(self.port)],
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
    registry = Registry()
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
