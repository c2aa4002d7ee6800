"""The service port's HTTP routes: the translated endpoint and the forwarded paths."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sidecars.adapter.forward import Forwarder, ForwardError
from sidecars.adapter.health import CONTENT_TYPE, Answer
from sidecars.adapter.metrics import AdapterMetrics
from sidecars.adapter.reverse import Probe, ProbeCollector
from sidecars.adapter.singleflight import SingleFlight


def health_route(
    app: web.Application, path: str, flight: SingleFlight[Answer], metrics: AdapterMetrics
) -> None:
    """GET/HEAD `path`: the cached health answer (one scrape per cache window)."""
    counters = {code: metrics.requests.labels("health", str(code)) for code in (200, 503)}

    async def handler(_: web.Request) -> web.Response:
        answer = flight.fresh() or await flight.get()
        counters[answer.http_status].inc()
        return web.Response(
            status=answer.http_status,
            body=answer.body,
            content_type=CONTENT_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    app.router.add_get(path, handler)


def metrics_route(
    app: web.Application,
    path: str,
    flight: SingleFlight[Probe],
    collector: ProbeCollector,
    metrics: AdapterMetrics,
) -> None:
    """GET/HEAD `path`: the app's JSON health as Prometheus gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    counter = metrics.requests.labels("metrics", "200")

    async def handler(_: web.Request) -> web.Response:
        collector.latest = flight.fresh() or await flight.get()
        counter.inc()
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get(path, handler)


def forward_route(
    app: web.Application, path: str, forwarder: Forwarder, metrics: AdapterMetrics
) -> None:
    """GET/HEAD `path`: streamed from the app's configured path."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            out = await forwarder.forward(request)
        except ForwardError as exc:
            metrics.requests.labels("forward", str(exc.status)).inc()
            metrics.scrapes.labels(exc.reason).inc()
            return web.Response(status=exc.status, text=f"adapter: {exc}\n")
        metrics.requests.labels("forward", str(out.status)).inc()
        return out

    app.router.add_get(path, handler)
