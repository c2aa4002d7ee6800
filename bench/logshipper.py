"""Benchmark: logshipper vs rsyslog (imfile -> omelasticsearch) vs syslog-ng (file ->
elasticsearch-http), side by side in one run, shipping one file of N lines of ~200 bytes to the
same local bulk sink (a separate process answering like Elasticsearch).

    .venv/bin/python bench/logshipper.py [--lines 1000000] [--es URL]

Figures per shipper: lines/s (wall time until the sink counted every line), CPU seconds per
million lines (user+system of the shipper process), peak RSS (VmHWM); plus logshipper's peak
RSS while its Elasticsearch is unreachable and 1 GiB is written. The anchors are skipped
when their binaries are missing (apt-get install rsyslog rsyslog-elasticsearch syslog-ng-core
syslog-ng-mod-http). Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port, stop_process  # noqa: E402

SINK = r"""
import asyncio, sys
from aiohttp import web
count = 0
ITEM = b'{"index":{"_id":"x","status":201}}'
async def bulk(request):
    global count
    body = await request.read()
    n = body.count(b"\n") // 2
    count += n
    out = b'{"took":1,"errors":false,"items":[' + b",".join([ITEM] * n) + b"]}"
    return web.Response(body=out, content_type="application/json",
                        headers={"X-Elastic-Product": "Elasticsearch"})
async def info(request):
    return web.json_response({"version": {"number": "8.7.1"}},
                             headers={"X-Elastic-Product": "Elasticsearch"})
async def stats(request):
    return web.Response(text=str(count))
app = web.Application(client_max_size=512 << 20)
app.router.add_post("/_bulk", bulk)
app.router.add_post("/{index}/_bulk", bulk)
app.router.add_post("/{index}/_doc/_bulk", bulk)
app.router.add_get("/", info)
app.router.add_get("/_count_", stats)
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def write_log(path: Path, lines: int) -> None:
    pad = "x" * 150
    with path.open("w") as f:
        for i in range(lines):
            f.write(f"2026-01-01T00:00:00Z host app[1]: request {i:09d} served {pad}\n")


def sink_count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_count_", timeout=5) as r:
        return int(r.read())


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run(name: str, cmd: list[str], env: dict[str, str], port: int, lines: int) -> dict[str, float]:
    base = sink_count(port)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = start + 600
    cpu = hwm = 0.0
    try:
        while sink_count(port) - base < lines:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: stopped early ({sink_count(port) - base} lines)")
            cpu, hwm = proc_cpu(proc.pid), proc_hwm(proc.pid)
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        cpu, hwm = proc_cpu(proc.pid), proc_hwm(proc.pid)
    finally:
        stop_process(proc, 20)
    return {
        "lines/s": lines / elapsed,
        "cpu s/M lines": cpu * 1e6 / lines,
        "peak RSS MiB": hwm / 2**20,
    }


def ours(work: Path, log: Path, port: int) -> tuple[list[str], dict[str, str]]:
    state = work / "ls-state"
    shutil.rmtree(state, ignore_errors=True)
    env = {
        **os.environ,
        "LOGSHIPPER_PATHS": str(log),
        "LOGSHIPPER_ES_HOSTS": f"http://127.0.0.1:{port}",
        "LOGSHIPPER_INDEX": "bench-%Y.%m.%d",
        "LOGSHIPPER_STATE_DIR": str(state),
        "LOGSHIPPER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
        "LOGSHIPPER_LOG_LEVEL": "warning",
    }
    return [sys.executable, "-m", "sidecars.logshipper"], env


def rsyslog(work: Path, log: Path, port: int) -> tuple[list[str], dict[str, str]] | None:
    exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.path.exists(exe) or not os.path.exists(
        "/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so"
    ):
        return None
    d = work / "rsyslog"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    conf = d / "rsyslog.conf"
    conf.write_text(
        f"""
global(workDirectory="{d}")
module(load="imfile")
module(load="omelasticsearch")
template(name="doc" type="list" option.jsonf="on") {{
  property(outname="@timestamp" name="timegenerated" dateFormat="rfc3339" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
  property(outname="log.file.path" name="$!metadata!filename" format="jsonf")
}}
input(type="imfile" File="{log}" Tag="app" addMetadata="on" readMode="0"
      freshStartTail="off" PersistStateInterval="10000" maxLinesAtOnce="0")
action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" template="doc"
       searchIndex="bench" bulkmode="on" maxbytes="5m" queue.type="linkedlist"
       queue.size="100000" queue.dequeuebatchsize="5000" action.resumeretrycount="-1")
"""
    )
    return [exe, "-n", "-f", str(conf), "-i", str(d / "pid")], dict(os.environ)


def syslog_ng(work: Path, log: Path, port: int) -> tuple[list[str], dict[str, str]] | None:
    exe = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
    if not os.path.exists(exe):
        return None
    d = work / "syslog-ng"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    conf = d / "syslog-ng.conf"
    conf.write_text(
        f"""@version: 3.38
@include "scl.conf"
options {{ stats(freq(0)); }};
source s_file {{ file("{log}" flags(no-parse) follow-freq(0.1) log-fetch-limit(10000)
                     log-iw-size(100000)); }};
destination d_es {{
  elasticsearch-http(url("http://127.0.0.1:{port}/_bulk") index("bench") type("")
    batch-lines(5000) batch-timeout(100) workers(2)
    template("$(format-json --scope none @timestamp=${{ISODATE}} message=${{MESSAGE}}
              log.file.path=${{FILE_NAME}})"));
}};
log {{ source(s_file); destination(d_es); }};
"""
    )
    return (
        [
            exe,
            "-F",
            "-f",
            str(conf),
            "-R",
            str(d / "persist"),
            "-p",
            str(d / "pid"),
            "-c",
            str(d / "ctl"),
        ],
        dict(os.environ),
    )


def outage_rss(work: Path, gib: float = 1.0) -> float:
    """Peak RSS (MiB) of logshipper while its Elasticsearch is unreachable and `gib` GiB are
    written to its file (the budget must keep memory flat: the file is the buffer)."""
    log = work / "outage.log"
    cmd, env = ours(work, log, free_port())  # nothing listens on that port
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        block = ("2026-01-01T00:00:00Z host app[1]: request served " + "x" * 150 + "\n").encode()
        block *= 5000
        written = 0
        with log.open("ab") as f:
            while written < gib * (1 << 30):
                f.write(block)
                written += len(block)
        time.sleep(3)
        return proc_hwm(proc.pid) / 2**20
    finally:
        proc.terminate()
        proc.wait(30)
        log.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-logshipper-") as tmp:
        work = Path(tmp)
        log = work / "app.log"
        write_log(log, args.lines)
        port = free_port()
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    sink_count(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            results: dict[str, dict[str, float]] = {}
            hwm_down = outage_rss(work)
            for name, make in (
                ("logshipper", ours),
                ("rsyslog", rsyslog),
                ("syslog-ng", syslog_ng),
            ):
                spec = make(work, log, port)
                if spec is None:
                    print(f"# {name}: not installed, skipped", file=sys.stderr)
                    continue
                results[name] = run(name, spec[0], spec[1], port, args.lines)
        finally:
            sink.terminate()
            sink.wait(10)
    print(f"{args.lines} lines of ~200 bytes, one file, to a local bulk sink")
    print(f"logshipper peak RSS MiB, sink down, 1 GiB written: {hwm_down:.1f}")
    print(f"{'figure':<16}{'shipper':<12}{'ours':>12}{'anchor':>12}{'ratio':>8}")
    mine = results["logshipper"]
    for anchor in (n for n in results if n != "logshipper"):
        for figure, value in results[anchor].items():
            ratio = mine[figure] / value if value else float("nan")
            print(f"{figure:<16}{anchor:<12}{mine[figure]:>12.1f}{value:>12.1f}{ratio:>8.2f}")
    if len(results) == 1:
        for figure, value in mine.items():
            print(f"{figure:<16}{'(none)':<12}{value:>12.1f}{'-':>12}{'-':>8}")


if __name__ == "__main__":
    main()
