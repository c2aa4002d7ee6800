"""adapter benchmark: cached /health and path mapping vs nginx; parser vs prometheus-client.

Run: .venv/bin/python bench/adapter.py [--seconds 3] [--rounds 3] [--connections 50]
Servers (adapter, nginx) are pinned to CPU 0, wrk and the apps to CPU 1; all side by side in one
run on 127.0.0.1. For path mapping the app is a second nginx serving a static JSON file (a fast
app, so the figure is the forwarder's, not the app's). Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from support.process import background as process  # noqa: E402
from support.process import free_port, http_get, wait_until  # noqa: E402

PY = sys.executable
RULES = [{"name": "queue", "metric": "queue_depth", "agg": "max", "op": ">", "threshold": 100}]


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk pinned to CPU 1."""
    out = subprocess.run(
        pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  note: {url} had {errors.group(1)} non-2xx answers", file=sys.stderr)
    return rps, p99


def cpu_seconds(root: int) -> float:
    """User+system CPU seconds of `root` and its direct children (nginx workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measure(url: str, pid: int, seconds: int, connections: int) -> tuple[float, float, float]:
    """(requests/s, p99 ms, server CPU microseconds per request): the last figure does not
    depend on what else the machine is doing, unlike the first two."""
    before = cpu_seconds(pid)
    rps, p99 = wrk(url, seconds, connections)
    used = cpu_seconds(pid) - before
    return rps, p99, used / (rps * seconds) * 1e6


Figures = tuple[float, float, float]


def alternate(
    ours: tuple[str, int], anchor: tuple[str, int], seconds: int, connections: int, rounds: int
) -> tuple[Figures, Figures]:
    """Ours and the anchor measured in turn `rounds` times; the median of each figure, so a
    burst of load from elsewhere hits both sides alike."""
    runs: tuple[list[Figures], list[Figures]] = ([], [])
    for _ in range(rounds):
        for side, (url, pid) in zip(runs, (ours, anchor), strict=True):
            side.append(measure(url, pid, seconds, connections))

    def median(side: list[Figures]) -> Figures:
        a, b, c = (statistics.median(column) for column in zip(*side, strict=True))
        return a, b, c

    return median(runs[0]), median(runs[1])


def compare(
    rows: list[tuple[str, str, str, str]],
    what: str,
    ours: tuple[float, float, float],
    anchor: tuple[float, float, float],
    goal: str,
    record: Record,
) -> None:
    record.ratio(f"{what} req/s", ours[0] / anchor[0], ours=ours[0], anchor=anchor[0])
    record.ratio(f"{what} p99", ours[1] / anchor[1], better="lower", ours=ours[1], anchor=anchor[1])
    # as printed: the anchor's CPU per request over ours, so requests per core relative
    record.ratio(
        f"{what} CPU/req, anchor/ours", anchor[2] / ours[2], ours=ours[2], anchor=anchor[2]
    )
    rows.append(
        (
            f"{what} req/s",
            f"{ours[0]:,.0f}",
            f"{anchor[0]:,.0f}",
            f"{ours[0] / anchor[0]:.2f}x {goal}",
        )
    )
    rows.append(
        (f"{what} p99 ms", f"{ours[1]:.2f}", f"{anchor[1]:.2f}", f"{ours[1] / anchor[1]:.2f}x")
    )
    rows.append(
        (
            f"{what} server CPU us/req",
            f"{ours[2]:.1f}",
            f"{anchor[2]:.1f}",
            f"{anchor[2] / ours[2]:.2f}x (req/s per core, relative)",
        )
    )


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{fast_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location = /health {{ default_type application/health+json; alias {dir}/health.json; }}
    location = /mapped {{
      proxy_pass http://app/actuator/health;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /varied {{
      proxy_pass http://app/actuator/varied;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


APP_NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/app-nginx.pid;
error_log {dir}/app-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location = /actuator/health {{ default_type application/json; alias {dir}/app.json; }}
    location = /actuator/varied {{
      default_type application/json; alias {dir}/app.json; add_header X-Request-Id $request_id;
    }}
  }}
}}
"""


def parser_figures(megabytes: int, escaped: bool) -> dict[str, tuple[float, float]]:
    """{parser: (CPU seconds, peak RSS growth in MiB during the parse)}, each in a fresh
    interpreter that has built the page first (its size is not counted)."""
    code = r"""
import random, resource, sys, time
rng = random.Random(1)
parts, size, i = [], 0, 0
while size < int(sys.argv[2]) * 1_000_000:
    if i % 5 == 0:
        parts.append(f"# HELP m{i}_total Requests.\n# TYPE m{i}_total counter\n")
    item = '\\"item\\"' if sys.argv[3] == "escaped" else "item"
    line = (f'm{i - i % 5}_total{{method="GET",code="{200 + i % 5}",'
            f'path="/api/v1/{item}/{i}"}} {rng.random() * 1000:.3f}\n')
    parts.append(line); size += len(line); i += 1
text = "".join(parts)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
if sys.argv[1] == "ours":
    from sidecars.adapter.exposition import parse
    page = parse(text)
    n = page.series_count
else:
    from prometheus_client.parser import text_string_to_metric_families
    n = sum(len(f.samples) for f in list(text_string_to_metric_families(text)))
took = time.process_time() - start
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(took, grew, n, len(text))
"""
    out = {}
    for which in ("ours", "prometheus-client"):
        res = subprocess.run(
            pinned(0, [PY, "-c", code, which, str(megabytes), "escaped" if escaped else "plain"]),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        out[which] = (float(res[0]), float(res[1]))
        out["_bytes"] = (float(res[3]), float(res[2]))
    return out


def main() -> None:
    with recording("adapter") as record:
        run(record)


def run(record: Record) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per side (median)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--megabytes", type=int, default=10)
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (scripts/setup --bench installs it)")
    rows: list[tuple[str, str, str, str]] = []
    app_port, nginx_port, health_port, paths_port, fast_port = (free_port() for _ in range(5))
    work = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    work.chmod(0o755)  # nginx workers may run as another user
    (work / "app.json").write_text('{"status":"UP","components":{"db":{"status":"UP"}}}\n')
    (work / "app-nginx.conf").write_text(APP_NGINX_CONF.format(dir=work, port=fast_port))
    fast_app = ["nginx", "-c", str(work / "app-nginx.conf"), "-p", str(work)]
    with (
        process(pinned(1, [PY, "-m", "support.metrics_app", str(app_port)])),
        process(pinned(1, fast_app)),
    ):
        app = f"http://127.0.0.1:{app_port}"
        wait_until(lambda: http_get(app + "/metrics")[0] == 200, 15, "app")
        gauge = {"name": "queue_depth", "kind": "gauge", "labels": {}, "value": 3}
        request = urllib.request.Request(app + "/control/metric", json.dumps(gauge).encode())
        urllib.request.urlopen(request, timeout=5).close()
        ready, rss = start_and_idle(app)
        record.figure("start to ready s", ready)
        record.figure("idle RSS MiB", rss)
        rows.append(("start to ready s", f"{ready:.2f}", "0.50", "(goal < 0.5 s)"))
        rows.append(("idle RSS MiB", f"{rss:.1f}", "40.0", "(goal < 40 MiB)"))
        common = {"ADAPTER_TARGET": app + "/metrics", "ADAPTER_LOG_LEVEL": "warning"}
        health_env = {
            **common,
            "ADAPTER_LISTEN": f"127.0.0.1:{health_port}",
            "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
            "ADAPTER_RULES": json.dumps(RULES),
            "ADAPTER_CACHE": "1h",
        }
        paths_env = {
            **common,
            "ADAPTER_TARGET": f"http://127.0.0.1:{fast_port}/metrics",
            "ADAPTER_LISTEN": f"127.0.0.1:{paths_port}",
            "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
            "ADAPTER_MODE": "paths",
            "ADAPTER_PATHS": "/mapped=/actuator/health,/varied=/actuator/varied",
        }
        with (
            process(pinned(0, [PY, "-m", "sidecars.adapter"]), health_env) as health_proc,
            process(pinned(0, [PY, "-m", "sidecars.adapter"]), paths_env) as paths_proc,
        ):
            ours_health = f"http://127.0.0.1:{health_port}/health"
            wait_until(lambda: http_get(ours_health)[0] == 200, 15, "adapter /health")
            (work / "health.json").write_bytes(http_get(ours_health)[1])
            (work / "nginx.conf").write_text(
                NGINX_CONF.format(dir=work, port=nginx_port, fast_port=fast_port)
            )
            nginx_argv = ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)]
            with process(pinned(0, nginx_argv)) as nginx_proc:
                nginx = f"http://127.0.0.1:{nginx_port}"
                wait_until(lambda: http_get(nginx + "/health")[0] == 200, 15, "nginx")
                mapped = f"http://127.0.0.1:{paths_port}/mapped"
                wait_until(lambda: http_get(mapped)[0] == 200, 15, "adapter /mapped")
                s, c = args.seconds, args.connections
                r = args.rounds
                ours, anchor = alternate(
                    (ours_health, health_proc.pid), (nginx + "/health", nginx_proc.pid), s, c, r
                )
                compare(rows, "cached /health", ours, anchor, "(goal >= 0.5x nginx static)", record)
                ours, anchor = alternate(
                    (mapped, paths_proc.pid), (nginx + "/mapped", nginx_proc.pid), s, c, r
                )
                compare(rows, "path mapping", ours, anchor, "(goal >= 0.5x nginx proxy)", record)
                # Every app answer head differs (a request id), so no head is seen twice.
                varied = f"http://127.0.0.1:{paths_port}/varied"
                ours, anchor = alternate(
                    (varied, paths_proc.pid), (nginx + "/varied", nginx_proc.pid), s, c, r
                )
                compare(rows, "mapping, new head each", ours, anchor, "(goal >= 0.5x)", record)
    shutil.rmtree(work, ignore_errors=True)
    for escaped in (False, True):
        parser_rows(rows, parser_figures(args.megabytes, escaped), escaped, record)
    print(
        f"anchors: nginx {nginx_version()} (static file; proxy_pass with keepalive), "
        "prometheus_client.parser"
    )
    print(f"{'figure':44} {'ours':>10} {'anchor':>10}  ratio")
    for figure, ours, anchor, ratio in rows:
        print(f"{figure:44} {ours:>10} {anchor:>10}  {ratio}")


def start_and_idle(app: str) -> tuple[float, float]:
    """(seconds from exec to /readyz 200, idle RSS MiB a second later) of a fresh adapter."""
    admin = free_port()
    env = {
        "ADAPTER_TARGET": app + "/metrics",
        "ADAPTER_LISTEN": f"127.0.0.1:{free_port()}",
        "ADAPTER_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "ADAPTER_RULES": json.dumps(RULES),
        "ADAPTER_LOG_LEVEL": "warning",
    }
    started = time.monotonic()
    with process(pinned(0, [PY, "-m", "sidecars.adapter"]), env) as proc:
        readyz = f"http://127.0.0.1:{admin}/readyz"
        wait_until(lambda: http_get(readyz)[0] == 200, 15, "ready", 0.005)
        ready = time.monotonic() - started
        time.sleep(1.0)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return ready, rss


def parser_rows(
    rows: list[tuple[str, str, str, str]],
    figures: dict[str, tuple[float, float]],
    escaped: bool,
    record: Record,
) -> None:
    size_mb = figures["_bytes"][0] / 1e6
    labels = "escaped" if escaped else "plain"
    what = f"parse {size_mb:.1f} MB, {labels} labels:"
    ours_s, ours_mb = figures["ours"]
    theirs_s, theirs_mb = figures["prometheus-client"]
    record.ratio(
        f"parse, {labels} labels: CPU, anchor/ours", theirs_s / ours_s, ours=ours_s, anchor=theirs_s
    )
    if theirs_mb > 0:
        record.ratio(
            f"parse, {labels} labels: peak RSS growth",
            ours_mb / theirs_mb,
            better="lower",
            ours=ours_mb,
            anchor=theirs_mb,
        )
    ratio = f"{theirs_s / ours_s:.1f}x faster (goal >= 5x)"
    rows.append((f"{what} CPU s", f"{ours_s:.2f}", f"{theirs_s:.2f}", ratio))
    rows.append((f"{what} MB/s", f"{size_mb / ours_s:.1f}", f"{size_mb / theirs_s:.1f}", ""))
    ratio = f"{ours_mb / theirs_mb:.2f}x (goal <= 1x)"
    rows.append((f"{what} peak RSS +MiB", f"{ours_mb:.0f}", f"{theirs_mb:.0f}", ratio))


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    return out.strip().rsplit("/", 1)[-1]


if __name__ == "__main__":
    main()
