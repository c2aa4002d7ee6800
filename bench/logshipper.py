"""Benchmark: logshipper vs rsyslog (imfile -> omelasticsearch) vs syslog-ng (file ->
elasticsearch-http) vs Fluent Bit (tail -> es), side by side in one run: one file of N lines of
~200 bytes shipped to a local bulk sink (a separate process answering like Elasticsearch) and to
a real node.

    flock /tmp/bench.lock .venv/bin/python bench/logshipper.py [--lines 1000000] [--pin 0] \
        [--nice -10] [--sink-rounds 5] [--es http://127.0.0.1:9250 --es-lines 200000 \
        --es-rounds 3] [--outage 60]

Figures per shipper and target: lines/s (wall time from start until the target holds every
line), CPU seconds per million lines (user+system of the shipper process), peak RSS (VmHWM).
Beside them, to tell what set the pace: the time the shipper's threads waited for a CPU while
runnable, and the sink's CPU use and wait, as shares of the run's wall time. On a machine
shared with other work, `--pin 0 --nice -10` gives steady rates (the shippers on CPU 0, the
sink on the others, other sessions' work yielding to the bench's).
Then logshipper's peak RSS while the sink is down for `--outage` seconds with 1 GiB written
meanwhile, through the sink's return. `scripts/setup --bench` installs the anchors: rsyslog
from Debian (rsyslog, rsyslog-elasticsearch); syslog-ng's package conflicts with rsyslog's, so
its .debs are unpacked into the user's cache (see `syslog_ng_root`). Fluent Bit is in no
package source here: build it from its sources and name the binary in FLUENT_BIT (see
`fluent_bit`). Missing anchors are skipped. Not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from sidecars.logshipper.template import template_body, template_name  # noqa: E402
from support.process import free_port, stop_process  # noqa: E402


def bulk_documents(body: bytes) -> int:
    """Documents in an NDJSON bulk body of index/create actions: its non-empty lines, two per
    document (action, source). Empty lines count for nothing: rsyslog's omelasticsearch sends
    one after each document. No Python step per line: that was about a tenth of the sink's CPU,
    and the sink must not be what sets the pace."""
    lines = body.split(b"\n")
    return (len(lines) - lines.count(b"")) // 2


SINK = (
    inspect.getsource(bulk_documents)
    + r"""
import asyncio, sys
from aiohttp import web
count = 0
ITEM = b'{"index":{"status":201}}'
async def bulk(request):
    global count
    body = await request.read()
    n = bulk_documents(body)
    count += n
    out = b'{"errors":false,"items":[' + b",".join([ITEM] * n) + b"]}"
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
)

Spec = tuple[list[str], dict[str, str]]
Counter = Callable[[], int]
LINE = "2026-01-01T00:00:00Z host app[1]: request {:09d} served " + "x" * 150 + "\n"


def write_log(path: Path, lines: int) -> None:
    with path.open("w") as f:
        for start in range(0, lines, 10_000):
            f.write("".join(LINE.format(i) for i in range(start, min(lines, start + 10_000))))


def http(url: str, method: str = "GET", body: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return bytes(r.read())


def sink_counter(port: int) -> Counter:
    return lambda: int(http(f"http://127.0.0.1:{port}/_count_"))


def es_counter(es: str, index: str) -> Counter:
    """Documents the node has indexed, without forcing a refresh: a refresh per poll makes
    tiny segments, which slows the node down and most of all for shippers that send their
    own ids (each id is looked up in every segment). The exact count is checked once, at the
    end, by es_exact_count."""

    def count() -> int:
        try:
            stats = json.loads(http(f"{es}/{index}/_stats/indexing"))
            return int(stats["_all"]["primaries"]["indexing"]["index_total"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise

    return count


def es_exact_count(es: str, index: str) -> int:
    http(f"{es}/{index}/_refresh", "POST")
    return int(json.loads(http(f"{es}/{index}/_count"))["count"])


AUTO = b'{"index":{}}\n'


def es_warm_up(es: str, log: Path, round_docs: int = 100_000, max_rounds: int = 12) -> None:
    """A freshly started node indexes several times slower until its JIT has compiled the
    paths in use (measured: 10.6k, 16.3k, then 21k lines/s for three runs of our shipper in a
    row). Whoever ran first paid for it, so the node is warmed up with documents of the bench's
    shape, sent both ways the shippers send them (our explicit ids and template mapping, the
    anchors' node-generated ids and dynamic mapping), until the rate of one round is within
    10% of the round before."""
    with log.open("rb") as f:
        docs = [
            json.dumps(
                {
                    "@timestamp": "2026-01-01T00:00:00Z",
                    "message": line.decode().rstrip("\n"),
                    "log": {"file": {"path": str(log)}, "offset": i * 200},
                }
            ).encode()
            for i, line in zip(range(5000), f, strict=False)
        ]
    mapping = template_body("bench-warm-up-ids", 0)["template"]["mappings"]
    previous = 0.0
    for n in range(max_rounds):
        start = time.monotonic()
        for index, explicit in (("bench-warm-up-ids", True), ("bench-warm-up-auto", False)):
            if n == 0:
                es_reset(es, index, mapping if explicit else None)
            for chunk in range(round_docs // 2 // len(docs)):
                body = b"".join(
                    (b'{"index":{"_id":"w%d-%d-%d"}}\n' % (n, chunk, i) if explicit else AUTO)
                    + doc
                    + b"\n"
                    for i, doc in enumerate(docs)
                )
                http(f"{es}/{index}/_bulk", "POST", body)
        rate = round_docs / (time.monotonic() - start)
        print(f"# node warm-up round {n + 1}: {rate:,.0f} documents/s", file=sys.stderr)
        if previous and abs(rate - previous) <= 0.1 * previous:
            break
        previous = rate
    for index in ("bench-warm-up-ids", "bench-warm-up-auto"):
        http(f"{es}/{index}", "DELETE")


def es_reset(es: str, index: str, mappings: dict[str, object] | None = None) -> None:
    try:
        http(f"{es}/{index}", "DELETE")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
    settings: dict[str, object] = {"settings": {"number_of_replicas": 0, "refresh_interval": "5s"}}
    if mappings:
        settings["mappings"] = mappings
    http(f"{es}/{index}", "PUT", json.dumps(settings).encode())


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_runq_wait(pid: int) -> float:
    """Seconds the threads of `pid` (those alive now) spent runnable, waiting for a CPU."""
    wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            wait += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # the thread ended; no schedstats
            continue
    return wait / 1e9


def proc_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run(
    name: str, spec: Spec, count: Counter, lines: int, every: float = 0.05, sink: int = 0
) -> dict[str, float]:
    """Start the shipper, poll `count` every `every` s until it reached `lines` more. Also, as
    shares of the run's wall time: how long the shipper's threads waited for a CPU while
    runnable ("runq wait %", other work on its CPU), and with the sink's pid `sink`, the sink's
    CPU use and wait ("sink CPU %" near 100 or a long "sink runq wait %": the sink set the
    pace, not the shipper)."""
    base = count()
    sink_base = (proc_cpu(sink), proc_runq_wait(sink)) if sink else (0.0, 0.0)
    start = time.monotonic()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(spec[0], env=spec[1], stdout=subprocess.DEVNULL, stderr=err)
    deadline = start + 60 + lines / 10_000
    cpu = hwm = wait = 0.0
    try:
        while count() - base < lines:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc, 5)
                err.seek(0)
                tail = err.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{name}: stopped early ({count() - base} lines)\n{tail}")
            cpu, hwm, wait = proc_cpu(proc.pid), proc_hwm(proc.pid), proc_runq_wait(proc.pid)
            time.sleep(every)
        elapsed = time.monotonic() - start
        cpu, hwm, wait = proc_cpu(proc.pid), proc_hwm(proc.pid), proc_runq_wait(proc.pid)
        sink_cpu = proc_cpu(sink) - sink_base[0] if sink else 0.0
        sink_wait = proc_runq_wait(sink) - sink_base[1] if sink else 0.0
    finally:
        stop_process(proc, 20)
        err.close()
    held = count() - base
    if held != lines:  # more: documents sent twice (or counted wrong); the rate is off too
        print(f"# {name}: the target holds {held} documents for {lines} lines", file=sys.stderr)
    figures = {
        "lines/s": lines / elapsed,
        "cpu s/M lines": cpu * 1e6 / lines,
        "peak RSS MiB": hwm / 2**20,
    }
    figures["runq wait %"] = 100 * wait / elapsed
    if sink:
        figures["sink CPU %"] = 100 * sink_cpu / elapsed
        figures["sink runq wait %"] = 100 * sink_wait / elapsed
    return figures


def in_page_cache(path: Path) -> None:
    """`path` read once, so that each shipper starts with its file in the page cache. Fluent
    Bit's tail drops a file's pages from the cache as it reads it (`posix_fadvise` DONTNEED,
    its `File_Cache_Advise` default): whoever ran after it read the file from disk, at 0.2-0.35 s
    more system time per million lines."""
    with path.open("rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


def when() -> str:
    """The UTC time and the load average, for a round's line."""
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load {load}:"


def compile_bytecode() -> None:
    """The package's bytecode written ahead (gitignored __pycache__), as the images do
    (compileall at build): with PYTHONDONTWRITEBYTECODE set and no bytecode, every start would
    compile the sources again and that CPU would be charged to the lines."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "sidecars")], check=True)


def ours(work: Path, log: Path, url: str, index: str) -> Spec:
    state = work / "ls-state"
    shutil.rmtree(state, ignore_errors=True)
    env = {
        **os.environ,
        "LOGSHIPPER_PATHS": str(log),
        "LOGSHIPPER_ES_HOSTS": url,
        "LOGSHIPPER_INDEX": index,
        "LOGSHIPPER_STATE_DIR": str(state),
        "LOGSHIPPER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
        "LOGSHIPPER_LOG_LEVEL": "warning",
    }
    return [sys.executable, "-m", "sidecars.logshipper"], env


def rsyslog(work: Path, log: Path, url: str, index: str) -> Spec | None:
    exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.path.exists(exe) or not list(Path("/usr/lib").glob("*/rsyslog/omelasticsearch.so")):
        return None
    d = work / "rsyslog"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    port = url.rsplit(":", 1)[1]
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
       searchIndex="{index}" esVersion.major="8" bulkmode="on" maxbytes="5m"
       queue.type="linkedlist" queue.size="100000" queue.dequeuebatchsize="5000"
       action.resumeretrycount="-1")
"""
    )
    return [exe, "-n", "-f", str(conf), "-i", str(d / "pid")], dict(os.environ)


def syslog_ng_root() -> Path:
    """syslog-ng from Debian's .debs, unpacked privately by `scripts/setup --bench` (with the
    libraries it needs that the machine lacks) into the user's cache (SIDECARS_CACHE, default
    ~/.cache/sidecars); SYSLOG_NG_ROOT moves it, for both."""
    cache = Path(os.environ.get("SIDECARS_CACHE") or Path.home() / ".cache" / "sidecars")
    return Path(os.environ.get("SYSLOG_NG_ROOT") or cache / "bench" / "syslog-ng" / "root")


def syslog_ng(work: Path, log: Path, url: str, index: str) -> Spec | None:
    root = syslog_ng_root()
    exe = root / "usr" / "sbin" / "syslog-ng"
    if not exe.exists():
        return None
    d = work / "syslog-ng"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    conf = d / "syslog-ng.conf"
    scl = root / "usr" / "share" / "syslog-ng" / "include" / "scl"
    conf.write_text(
        f"""@version: 3.38
@include "{scl}/elasticsearch/elastic-http.conf"
options {{ stats_freq(0); }};
source s_file {{ file("{log}" flags(no-parse) follow-freq(0.1) log-fetch-limit(10000)
                     log-iw-size(100000)); }};
destination d_es {{
  elasticsearch-http(url("{url}/_bulk") index("{index}") type("")
    batch-lines(5000) batch-timeout(100) workers(2)
    template("$(format-json --scope none @timestamp=${{ISODATE}} message=${{MESSAGE}}
              log.file.path=${{FILE_NAME}})"));
}};
log {{ source(s_file); destination(d_es); flags(flow-control); }};
"""
    )
    libs = f"{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu:{root}/usr/lib/syslog-ng"
    env = {**os.environ, "LD_LIBRARY_PATH": libs}
    return (
        [
            str(exe),
            "-F",
            "-f",
            str(conf),
            f"--module-path={root}/usr/lib/syslog-ng/3.38",
            "-R",
            str(d / "persist"),
            "-p",
            str(d / "pid"),
            "-c",
            str(d / "ctl"),
        ],
        env,
    )


def fluent_bit(work: Path, log: Path, url: str, index: str) -> Spec | None:
    """Fluent Bit's fastest configuration measured here: memory buffering, no offset
    database, flushed every 0.2 s (its rate is capped near the buffer limit / Flush), a
    document of the same fields as the other anchors' (@timestamp, message, log.file.path)."""
    exe = os.environ.get("FLUENT_BIT", "")
    if not exe or not os.access(exe, os.X_OK):
        return None
    d = work / "fluent-bit"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    conf = d / "fluent-bit.conf"
    conf.write_text(
        f"""
[SERVICE]
    Flush        0.2
    Grace        1
    Log_Level    warn
[INPUT]
    Name              tail
    Path              {log}
    Path_Key          log.file.path
    Key               message
    Read_from_Head    On
    Refresh_Interval  1
    Buffer_Chunk_Size 1M
    Buffer_Max_Size   1M
    Mem_Buf_Limit     64M
[OUTPUT]
    Name               es
    Match              *
    Host               {host}
    Port               {port}
    Index              {index}
    Suppress_Type_Name On
    Buffer_Size        False
    Retry_Limit        no_limits
"""
    )
    return [exe, "-c", str(conf)], dict(os.environ)


NICE = 0  # --nice: the shippers' and the sink's niceness (set once, in run_all)


def pinned(argv: list[str], cpus: str) -> list[str]:
    """`argv` run on the CPUs `cpus` (a taskset list) when given and taskset is there, at
    niceness NICE when set."""
    if cpus and shutil.which("taskset"):
        argv = ["taskset", "-c", cpus, *argv]
    return ["nice", "-n", str(NICE), *argv] if NICE else argv


def other_cpus(cpu: str) -> str:
    """Every CPU of this process but `cpu` (the sink's, when the shippers get `cpu`)."""
    rest = sorted(os.sched_getaffinity(0) - {int(cpu)}) if cpu else []
    return ",".join(map(str, rest))


# the sink's malloc keeps freed memory: each bulk body (a MiB) was otherwise mapped afresh and
# faulted in page by page (about 200k page faults per million lines, a large part of its CPU)
SINK_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def start_sink(port: int, cpus: str = "") -> subprocess.Popen[bytes]:
    argv = pinned([sys.executable, "-c", SINK, str(port)], cpus)
    sink = subprocess.Popen(argv, env={**os.environ, **SINK_MALLOC})
    deadline = time.monotonic() + 20
    while True:
        try:
            sink_counter(port)()
            return sink
        except OSError:
            if time.monotonic() > deadline:
                stop_process(sink)
                raise
            time.sleep(0.05)


def outage_rss(work: Path, seconds: float, gib: float = 1.0) -> tuple[float, float]:
    """logshipper's peak RSS (MiB) while its sink is down for `seconds` and `gib` GiB are
    written meanwhile, then through 10 s after the sink's return; and the lines/s it
    delivered in those 10 s (proof it was shipping, not stuck)."""
    log = work / "outage.log"
    port = free_port()
    cmd, env = ours(work, log, f"http://127.0.0.1:{port}", "outage")
    sink = start_sink(port)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        line = (LINE.format(0)).encode()
        block = line * 5000
        with log.open("ab") as f:
            f.write(block)
        time.sleep(2)
        stop_process(sink)
        down = time.monotonic()
        written, target = 0, gib * (1 << 30)
        with log.open("ab") as f:
            while written < target:
                f.write(block)
                written += len(block)
                # spread the writes over the outage
                ahead = written / target * seconds * 0.9 - (time.monotonic() - down)
                if ahead > 0:
                    time.sleep(min(ahead, 0.5))
        time.sleep(max(0.0, seconds - (time.monotonic() - down)))
        sink = start_sink(port)
        base = sink_counter(port)()
        time.sleep(10)
        rate = (sink_counter(port)() - base) / 10
        return proc_hwm(proc.pid) / 2**20, rate
    finally:
        stop_process(proc, 20)
        stop_process(sink)
        log.unlink()


SHIPPERS = (
    ("logshipper", ours),
    ("rsyslog", rsyslog),
    ("syslog-ng", syslog_ng),
    ("fluent-bit", fluent_bit),
)
MISSING = {"fluent-bit": "set FLUENT_BIT to a fluent-bit binary built from its sources"}


def es_run(
    es: str,
    work: Path,
    head: Path,
    name: str,
    make: Callable[..., Spec | None],
    lines: int,
    pin: str = "",
) -> dict[str, float] | None:
    """One shipper's run to a fresh index on the node (on CPU `pin` when given)."""
    index = f"bench-{name}"
    # logshipper's index template (created at its start) maps its ECS fields; the bench
    # creates the index beforehand (one node, no replicas, refresh 5 s), so it creates it
    # with that template's mappings, as the template would
    ours_mapping = template_body(index, 0)["template"]["mappings"]
    es_reset(es, index, ours_mapping if name == "logshipper" else None)
    spec = make(work, head, es, index)
    if spec is None:
        return None
    spec = pinned(spec[0], pin), spec[1]
    result = None
    try:
        result = run(name, spec, es_counter(es, index), lines, every=0.1)
        exact = es_exact_count(es, index)
        if exact != lines:  # indexing ops also count re-sent documents
            print(f"# {name}: the index holds {exact} documents", file=sys.stderr)
    except RuntimeError as exc:
        print(f"# {name} to the node: {exc}", file=sys.stderr)
    http(f"{es}/{index}", "DELETE")
    if name == "logshipper":
        try:
            http(f"{es}/_index_template/{template_name(index)}", "DELETE")
        except urllib.error.HTTPError as exc:
            print(f"# {name}: no index template to delete ({exc})", file=sys.stderr)
    return result


def median_figures(runs: list[dict[str, float]]) -> dict[str, float]:
    return {figure: statistics.median(r[figure] for r in runs) for figure in runs[0]}


BETTER = {"lines/s": "higher", "cpu s/M lines": "lower", "peak RSS MiB": "lower"}


def table(title: str, results: dict[str, dict[str, float]], record: Record, target: str) -> None:
    print(f"\n{title}", flush=True)
    print(f"{'figure':<18}{'anchor':<12}{'ours':>12}{'anchor':>12}{'ratio':>8}")
    mine = results.get("logshipper")
    if mine is None:
        return
    for anchor in (n for n in results if n != "logshipper"):
        for figure, value in results[anchor].items():
            if figure not in BETTER:  # where the CPU went during the runs: context, not a score
                record.figure(f"{target}: {figure}", mine[figure])
                record.figure(f"{target}: {figure}, {anchor}", value)
                print(f"{figure:<18}{anchor:<12}{mine[figure]:>12.1f}{value:>12.1f}{'-':>8}")
                continue
            ratio = mine[figure] / value if value else float("nan")
            record.ratio(
                f"{target}: {figure} vs {anchor}",
                ratio,
                better=BETTER[figure],
                ours=mine[figure],
                anchor=value,
            )
            print(f"{figure:<18}{anchor:<12}{mine[figure]:>12.1f}{value:>12.1f}{ratio:>8.2f}")
    if len(results) == 1:
        for figure, value in mine.items():
            print(f"{figure:<18}{'(none)':<12}{value:>12.1f}{'-':>12}{'-':>8}")


@contextlib.contextmanager
def autogroup_nice(nice: int) -> Iterator[None]:
    """The bench's scheduler autogroup at niceness `nice`, back as it was after. With autogroups
    on (Linux's default for sessions), CPU time is shared between sessions first and a process's
    own niceness counts only within its session: without this, `--nice` gives the shippers no
    more of a CPU that other sessions' work also wants."""
    path = Path("/proc/self/autogroup")
    try:
        before = path.read_text().split()[-1]
        path.write_text(str(nice))
    except (OSError, IndexError) as exc:  # no autogroups, or not allowed to lower the niceness
        if nice:
            print(f"# autogroup niceness not set: {exc}", file=sys.stderr)
        yield
        return
    try:
        yield
    finally:
        path.write_text(before)


def main() -> None:
    with recording("logshipper") as record:
        run_all(record)


def run_all(record: Record) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines in the file")
    parser.add_argument("--es", default="", help="a real node's URL (skipped when empty)")
    parser.add_argument(
        "--es-lines", type=int, default=200_000, help="lines to the node (its file's head)"
    )
    parser.add_argument(
        "--es-rounds", type=int, default=3, help="runs per shipper to the node (medians shown)"
    )
    parser.add_argument("--outage", type=float, default=60.0, help="sink outage (0: skip)")
    parser.add_argument("--only", default="", help="comma-separated shippers to run")
    parser.add_argument(
        "--pin", default="", help="a CPU to run each shipper on (the sink gets the others)"
    )
    parser.add_argument(
        "--sink-rounds", type=int, default=1, help="runs per shipper to the sink (medians shown)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the bench's scheduler autogroup, the shippers and the sink (below 0 "
        "needs root or CAP_SYS_NICE: the machine's other work then yields to the runs)",
    )
    args = parser.parse_args()
    global NICE
    NICE = args.nice
    with autogroup_nice(args.nice):
        only = set(filter(None, args.only.split(",")))
        shippers = [(n, m) for n, m in SHIPPERS if not only or n in only]
        with open("/proc/loadavg") as f:
            print(f"load average at start: {' '.join(f.read().split()[:3])}")
        if not only or "logshipper" in only:
            compile_bytecode()
        with tempfile.TemporaryDirectory(prefix="bench-logshipper-") as tmp:
            work = Path(tmp)
            log = work / "app.log"
            write_log(log, args.lines)
            lines = sum(1 for _ in log.open("rb"))
            port = free_port()
            sink = start_sink(port, other_cpus(args.pin))
            sink_rounds: dict[str, list[dict[str, float]]] = {}
            try:
                for n in range(args.sink_rounds):  # shippers alternate, so drift hits each alike
                    for name, make in shippers:
                        spec = make(work, log, f"http://127.0.0.1:{port}", "bench")
                        if spec is None:
                            if n == 0:
                                why = MISSING.get(name, "not installed")
                                print(f"# {name}: skipped ({why})", file=sys.stderr)
                            continue
                        spec = pinned(spec[0], args.pin), spec[1]
                        in_page_cache(log)
                        result = run(name, spec, sink_counter(port), lines, sink=sink.pid)
                        if args.sink_rounds > 1:
                            print(
                                f"# sink round {n + 1}, {name}: {when()} {result}", file=sys.stderr
                            )
                        sink_rounds.setdefault(name, []).append(result)
            finally:
                stop_process(sink)
            sink_results = {name: median_figures(runs) for name, runs in sink_rounds.items()}
            table(
                f"{lines} lines of ~200 bytes, one file, to a local bulk sink",
                sink_results,
                record,
                "sink",
            )
            if args.es:
                head = work / "head.log"
                with log.open("rb") as src, head.open("wb") as dst:
                    for _, line in zip(range(args.es_lines), src, strict=False):
                        dst.write(line)
                es_warm_up(args.es, head)
                rounds: dict[str, list[dict[str, float]]] = {}
                for n in range(args.es_rounds):  # shippers alternate, so drift hits each alike
                    for name, make in shippers:
                        in_page_cache(head)
                        got = es_run(args.es, work, head, name, make, args.es_lines, args.pin)
                        if got is not None:
                            print(f"# node round {n + 1}, {name}: {when()} {got}", file=sys.stderr)
                            rounds.setdefault(name, []).append(got)
                es_results = {name: median_figures(runs) for name, runs in rounds.items()}
                table(
                    f"{args.es_lines} lines to the real node at {args.es}",
                    es_results,
                    record,
                    "node",
                )
            if args.outage and (not only or "logshipper" in only):
                hwm, rate = outage_rss(work, args.outage)
                record.figure("peak RSS MiB through a sink outage", hwm)
                record.figure("lines/s after a sink outage", rate)
                print(
                    f"\nlogshipper peak RSS, sink down {args.outage:.0f} s with 1 GiB written, "
                    f"then 10 s of catching up: {hwm:.1f} MiB ({rate:,.0f} lines/s after)"
                )
        with open("/proc/loadavg") as f:
            print(f"load average at end: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
