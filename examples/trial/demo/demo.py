"""The trial's demo programs, one per role: `logs` (an app writing a log file), `metrics` (an app
with a Prometheus /metrics page whose error rate can be switched), `poller` (a monitoring system
that only understands /health). Standard library, aiohttp and the sidecars' own metrics
modules only (the demo runs in the logshipper image)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from aiohttp import web

from sidecars.runtime.exposition import TEXT_1_0_0, text
from sidecars.runtime.metrics import Counter, Gauge, Registry

log = logging.getLogger("demo")


def write_logs(path: Path, lines: int, rate: float) -> None:
    """Append `lines` numbered lines at about `rate` lines/s, then record the total and idle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", buffering=1) as out:
        for n in range(1, lines + 1):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.write(f"{stamp} INFO demo request {n} served in {n % 97} ms\n")
            if rate > 0:
                time.sleep(1.0 / rate)
    (path.parent / "written.count").write_text(f"{lines}\n")
    log.warning("wrote %d lines to %s", lines, path)
    while True:  # an app keeps running; the pod decides when it stops
        time.sleep(3600)


def metrics_app() -> web.Application:
    """/metrics with request and error counters; POST /errors?ratio=R sets the error share."""
    registry = Registry()
    requests = Counter("http_requests", "Requests served", registry=registry)
    errors = Counter("http_requests_errors", "Requests that failed", registry=registry)
    depth = Gauge("work_queue_depth", "Jobs waiting", registry=registry)
    state = {"ratio": 0.0}

    async def traffic() -> None:
        # Simulated load: 100 requests per tick, the configured share of them failing.
        while True:
            requests.inc(100)
            errors.inc(100 * state["ratio"])
            depth.set(10 + 500 * state["ratio"])
            await asyncio.sleep(0.5)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=text(registry.collect()), headers={"Content-Type": TEXT_1_0_0})

    async def set_errors(request: web.Request) -> web.Response:
        state["ratio"] = float(request.query.get("ratio", "0"))
        return web.json_response(state)

    async def background(app: web.Application) -> object:
        task = asyncio.create_task(traffic())
        yield
        task.cancel()

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/errors", set_errors)
    app.cleanup_ctx.append(background)  # type: ignore[arg-type]
    return app


def poll(url: str, every: float) -> None:
    """Call `url` forever and log each answer's status as a JSON line."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        except OSError as exc:
            status, body = 0, str(exc).encode()
        print(
            json.dumps({"url": url, "status": status, "body": body[:300].decode(errors="replace")}),
            flush=True,
        )
        time.sleep(every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    logs = sub.add_parser("logs")
    logs.add_argument("--path", default=os.environ.get("DEMO_LOG", "/var/log/app/app.log"))
    logs.add_argument("--lines", type=int, default=int(os.environ.get("DEMO_LINES", "2000")))
    logs.add_argument("--rate", type=float, default=float(os.environ.get("DEMO_RATE", "200")))
    met = sub.add_parser("metrics")
    met.add_argument("--port", type=int, default=8080)
    met.add_argument("--host", default="0.0.0.0")  # every address of the pod
    pol = sub.add_parser("poller")
    pol.add_argument("--url", default=os.environ.get("POLL_URL", "http://127.0.0.1:9280/health"))
    pol.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.role == "logs":
        write_logs(Path(args.path), args.lines, args.rate)
    elif args.role == "metrics":
        web.run_app(metrics_app(), host=args.host, port=args.port, print=None, access_log=None)
    else:
        poll(args.url, args.every)


if __name__ == "__main__":
    main()
