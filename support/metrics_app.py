"""An app with live Prometheus metrics and a health document, as a real process on 127.0.0.1:
what the adapter reads in the tests and the benchmarks. `python -m support.metrics_app PORT`.
/metrics comes from a prometheus-client registry that POST /control/metric sets; POST
/control/respond and /control/reset change what /metrics answers; /actuator/health answers what
POST /control/health sets; /big streams `chunks` chunks of 64 KiB."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)


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


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    port = int(sys.argv[1])
    # A short shutdown: tests leave requests hanging on purpose (the slow-app cases).
    web.run_app(
        build_app(), host="127.0.0.1", port=port, print=None, access_log=None, shutdown_timeout=0.5
    )


if __name__ == "__main__":
    main()
