"""The service port's routes: the translated endpoint (cached) and the forwarded paths."""

from __future__ import annotations

from sidecars.adapter.forward import Forwarder, ForwardError
from sidecars.adapter.health import CONTENT_TYPE, Answer
from sidecars.adapter.metrics import AdapterMetrics
from sidecars.adapter.reverse import Probe, ProbeCollector
from sidecars.adapter.singleflight import SingleFlight
from sidecars.runtime.exposition import render
from sidecars.runtime.http.server import (
    Connection,
    Deferred,
    Request,
    Writer,
    date_line,
    response_head,
)
from sidecars.runtime.metrics import Registry

_MAX_WIRES = 16


class _Wire:
    """A response serialized once: head (without Date) and body, for GET and HEAD."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body
        full = [*headers, ("Content-Length", str(len(body)))]
        self._head = response_head(status, full, True)

    def get(self, head_only: bool) -> bytes:
        tail = b"\r\n" if head_only else b"\r\n" + self.body
        return self._head + date_line() + tail


class HealthRoute:
    """GET/HEAD: the cached health answer; a probe after the window waits for one new read."""

    def __init__(self, flight: SingleFlight[Answer], metrics: AdapterMetrics) -> None:
        self.flight = flight
        self.counts = {code: metrics.tally.cell("health", str(code)) for code in (200, 503)}
        self._wire: tuple[Answer, _Wire] | None = None

    def _wire_for(self, answer: Answer) -> _Wire:
        if self._wire is None or self._wire[0] is not answer:
            headers = [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")]
            self._wire = (answer, _Wire(answer.http_status, headers, answer.body))
        return self._wire[1]

    def immediate(self, request: Request) -> bytes | None:
        answer = self.flight.fresh()
        if answer is None:
            return None
        self.counts[answer.http_status][0] += 1
        return self._wire_for(answer).get(request.method == "HEAD")

    async def respond(self, request: Request, out: Writer) -> None:
        answer = await self.flight.get()
        self.counts[answer.http_status][0] += 1
        wire = self._wire_for(answer)
        out.full(wire.status, wire.headers, wire.body)


class MetricsRoute:
    """GET/HEAD: the app's JSON health as Prometheus gauges, rendered once per probe and per
    format and encoding asked for (negotiated as on the admin server)."""

    def __init__(
        self, flight: SingleFlight[Probe], collector: ProbeCollector, metrics: AdapterMetrics
    ) -> None:
        self.flight, self.collector = flight, collector
        self.registry = Registry()
        self.registry.register(collector)
        self.count = metrics.tally.cell("metrics", "200")
        self._probe: Probe | None = None
        self._wires: dict[tuple[str, str], _Wire] = {}  # by Accept and Accept-Encoding

    def _wire_for(self, probe: Probe, request: Request) -> _Wire:
        if self._probe is not probe:
            self._probe, self._wires = probe, {}
            self.collector.latest = probe
        key = (request.accept, request.accept_encoding)
        wire = self._wires.get(key)
        if wire is None:
            if len(self._wires) >= _MAX_WIRES:  # the headers come from clients: keep it bounded
                self._wires.clear()
            body, headers = render(self.registry.collect(), *key)
            wire = self._wires[key] = _Wire(200, headers, body)
        return wire

    def immediate(self, request: Request) -> bytes | None:
        probe = self.flight.fresh()
        if probe is None:
            return None
        self.count[0] += 1
        return self._wire_for(probe, request).get(request.method == "HEAD")

    async def respond(self, request: Request, out: Writer) -> None:
        wire = self._wire_for(await self.flight.get(), request)
        self.count[0] += 1
        out.full(wire.status, wire.headers, wire.body)


class ForwardRoute(Deferred):
    """GET/HEAD: from the app's configured path; whole small answers without a task, others
    streamed."""

    def __init__(self, forwarder: Forwarder, metrics: AdapterMetrics) -> None:
        self.forwarder, self.metrics = forwarder, metrics
        self._counts: dict[int, list[int]] = {}

    def _count(self, status: int) -> None:
        cell = self._counts.get(status)
        if cell is None:  # statuses are bounded (100-599, 0 for a cut answer)
            code = str(status) if status else "cut"
            cell = self._counts[status] = self.metrics.tally.cell("forward", code)
        cell[0] += 1

    def immediate(self, request: Request) -> bytes | None:
        return None

    def begin(self, request: Request, conn: Connection) -> bool:
        return self.forwarder.begin(request, conn, self, self._count)

    async def respond(self, request: Request, out: Writer) -> None:
        try:
            status = await self.forwarder.forward(request, out)
        except ForwardError as exc:
            self._count(exc.status)
            self.metrics.scrapes.labels(exc.reason).inc()
            body = f"adapter: {exc}\n".encode()
            out.full(exc.status, [("Content-Type", "text/plain; charset=utf-8")], body)
            return
        self._count(status)
