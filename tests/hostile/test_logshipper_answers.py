"""A hostile Elasticsearch (or something in its place) answers bulk requests with bodies a
real node never sends: huge, malformed, deeply nested, never-ending, or 200 with items that
do not match the request. Each is retried (counted by reason), memory stays bounded, and
once real answers come back every line is delivered exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from tests.helpers import SidecarProcess, http_get, wait_until
from tests.logshipper_support import (
    PRODUCT,
    BulkSink,
    LogWriter,
    admin_url,
    checksum,
    metric,
    rss_bytes,
    shipper_env,
)

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: bytes) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=body, content_type="application/json", headers=PRODUCT)

    return answer


async def _endless(request: web.Request) -> web.StreamResponse:
    """200, chunked, a few bytes every 50 ms, never finished (until the client gives up)."""
    await request.read()
    resp = web.StreamResponse(headers={**PRODUCT, "content-type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b'{"errors":false,"items":[')
    for _ in range(100_000):
        await resp.write(b'{"index":{"status":201}},')
        await asyncio.sleep(0.05)
    return resp


HUGE = b'{"errors":true,"items":[' + b"0," * (20 << 20) + b"0]}"  # 40 MiB, 20M items
CASES: dict[str, tuple[Handler, str]] = {
    "40 MiB 200 answer": (_json(HUGE), "bad_response"),
    "malformed JSON": (_json(b'{"errors":true,"items":[{"index":'), "bad_response"),
    "nested 100,000 deep": (_json(b"[" * 100_000 + b"]" * 100_000), "bad_response"),
    "endless chunked 200": (_endless, "timeout"),
    "200 errors:true, one item": (
        _json(b'{"errors":true,"items":[{"index":{"status":201}}]}'),
        "bad_response",
    ),
    "200 item status a string": (
        _json(b'{"errors":true,"items":[' + b'{"index":{"status":"201"}},' * 29 + b"{}]}"),
        "bad_response",
    ),
    "200 errors:false, no items": (_json(b'{"errors":false,"took":1}'), "bad_response"),
    "200 item status 1000": (
        _json(b'{"errors":true,"items":[' + b'{"index":{"status":1000}},' * 29 + b"{}]}"),
        "bad_response",
    ),
    "200 not an object": (_json(b'[{"errors":false}]'), "bad_response"),
}


def _peak_until_delivered(sink: BulkSink, count: int, measure: Callable[[], int]) -> int:
    """Wait until the sink holds `count` documents; the peak of `measure` meanwhile."""
    peak = 0

    def delivered() -> bool:
        nonlocal peak
        peak = max(peak, measure())
        return sink.count() >= count

    wait_until(delivered, 60, f"{count} lines", every=0.02)
    return peak


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_bulk_answer_is_retried_and_nothing_is_lost(
    dirs: tuple[Path, Path], case: str
) -> None:
    """Two hostile answers, then real ones: the batch is retried with the case's reason,
    RSS stays under 200 MiB, and each of the 30 lines is delivered once."""
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(30)
    handler, reason = CASES[case]
    with BulkSink() as sink:
        sink.mode, sink.fail_next, sink.hostile = "hostile", 2, handler
        env = shipper_env(logs, state, sink.url, "logs", es_timeout="1s")
        with SidecarProcess("logshipper", env=env) as proc:
            peak = _peak_until_delivered(sink, 30, lambda: rss_bytes(proc.proc.pid))
            got = sink.messages()
            assert len(got) == 30 and checksum(got) == checksum(writer.written)
            admin = admin_url(env)
            assert metric(admin, "logshipper_documents_retried_total", reason) >= 30
            assert peak < 200 << 20, peak
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()


async def _announces_65_mib(request: web.Request) -> web.StreamResponse:
    """200 announcing a 65 MiB body (over the 64 MiB bound), then a few bytes and a wait."""
    await request.read()
    resp = web.StreamResponse(headers={**PRODUCT, "content-type": "application/json"})
    resp.content_length = 65 << 20
    await resp.prepare(request)
    await resp.write(b'{"errors":false')
    with contextlib.suppress(ConnectionError):
        for _ in range(200):
            await asyncio.sleep(0.05)
            await resp.write(b" ")
    return resp


def _sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def test_answers_over_the_bound_do_not_leak_connections(dirs: tuple[Path, Path]) -> None:
    """40 answers announcing more than 64 MiB, each refused at its head: every refused
    connection is closed (it was left open: one fd lost per retry, until the shipper could
    open no more files), and the lines are delivered once real answers come back."""
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(30)
    with BulkSink() as sink:
        sink.mode, sink.fail_next, sink.hostile = "hostile", 40, _announces_65_mib
        env = shipper_env(logs, state, sink.url, "logs", retry_max_backoff="20ms")
        with SidecarProcess("logshipper", env=env) as proc:
            peak = _peak_until_delivered(sink, 30, lambda: _sockets(proc.proc.pid))
            assert peak <= 12, peak
            assert sink.requests >= 41
            assert proc.terminate() == 0


def _refuse_each_its_own_way() -> Handler:
    """Every document refused (400) with an error type of its own, or one that is no error
    type at all (spaces, 10 KiB long)."""
    served = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal served
        lines = (await request.read()).split(b"\n")
        items = []
        for n in range(served, served + (len(lines) - 1) // 2):
            kind = f"made_up_{n}_exception" if n % 2 else f"Not A Type {n} " + "x" * 10_000
            error = {"type": kind, "reason": "hostile"}
            items.append({"index": {"status": 400, "error": error}})
        served += len(items)
        body = orjson.dumps({"errors": True, "items": items})
        return web.Response(body=body, content_type="application/json", headers=PRODUCT)

    return answer


def test_error_types_from_answers_make_a_bounded_number_of_metric_series(
    dirs: tuple[Path, Path],
) -> None:
    """500 documents refused with 500 different error types (half not shaped like one):
    all go to the dead-letter file with their own reason, but the metric keeps at most 64
    reason series plus `other` (each series is kept for good: memory and scrapes)."""
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(500)
    with BulkSink() as sink:
        sink.mode, sink.hostile = "hostile", _refuse_each_its_own_way()
        env = shipper_env(logs, state, sink.url, "logs", batch_max_docs="50")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_until(
                lambda: metric(admin, "logshipper_documents_dead_lettered_total") == 500,
                30,
                "500 dead letters",
            )
            _, body = http_get(admin + "/metrics")
            series = [
                line
                for line in body.decode().splitlines()
                if line.startswith("logshipper_documents_dead_lettered_total{")
            ]
            assert 2 <= len(series) <= 65 and any('reason="other"' in x for x in series)
            assert not any("Not A Type" in x for x in series)
            assert proc.terminate() == 0
