"""Benchmark: the ambassador side by side with HAProxy and nginx (and no proxy) on loopback.

Three nginx backends; wrk drives http through each proxy (16 and 64 connections; then a paced
run at half of the ambassador's peak rate for the latency it adds), a lean receiver (one
recv_into loop, far faster than the relays) pulls 1 GiB through each tcp relay (and through
HAProxy with splice(2) forced on, its own in-kernel relay, as a yardstick), wrk with
`Connection: close` measures new tcp connections per second, and 1,000 idle connections measure
resident memory. For each http peak run and each new-connection run the proxy's CPU time per
request (connection) is read from /proc.

Rounds. The http peaks and the new connections run in `--rounds` (5) rounds, each target once
per round, in alternation, so that the runs of one round are adjacent in time. A target's req/s
(connections/s) and CPU per request are its medians over the rounds, its latency and CPU busy
shares those of its median-req/s run. A ratio to HAProxy is the median of the rounds' paired
ratios (ours/HAProxy for a rate, HAProxy/ours for CPU per request), printed with their range:
the host of this VM sometimes slows a CPU for tens of seconds, unseen from inside; that slows
every target of one round alike, so the round's paired ratio cancels it, and a median of five
is not moved by one slowed round.

Placement on two CPUs. Pinned: each proxy under test on CPU 0, the load generator and the nginx
backends on CPU 1, so no proxy is preempted by them. At an http peak both CPUs are then busy (each
about 97 % on an otherwise idle machine, HAProxy or ours): wrk and nginx need about as much CPU per
request as the proxy, so the pinned req/s is capped by the load's CPU too (the direct run shows
that ceiling) and two proxies near it differ mainly in CPU per request. Unpinned, all share both
CPUs and a proxy's CPU per request moves the req/s, but the scheduler's choices (the proxy
preempted by wrk or nginx) move it as well. Neither alone is a fair capacity measure, so the http
half runs both by default, in alternation round by round, and prints for the median run how busy
each CPU was and how much CPU other processes took (a shared machine's other jobs: a run they
disturbed shows it, a slowed host does not); the paced latency run is pinned. tcp and new
connections run pinned. `--placement` picks one; `--no-pin` is `--placement unpinned` (with fewer
than two CPUs pinning is off).
Needs: nginx, haproxy, wrk, taskset (Debian packages: scripts/setup --bench installs them). Run it
under the shared bench lock:

    flock /tmp/bench.lock .venv/bin/python bench/ambassador.py [--seconds 5]
    flock /tmp/bench.lock .venv/bin/python bench/ambassador.py --only http [--placement pinned]
    flock /tmp/bench.lock .venv/bin/python bench/ambassador.py --only conns [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from bench._rounds import median_index, paired  # noqa: E402
from bench._table import print_table  # noqa: E402
from support.process import background, free_port  # noqa: E402

PROXY_CPU, LOAD_CPU = "0", "1"
PINNING = True  # off when unpinned or with fewer than two CPUs (set in `run`, and by `place`)
PLACEMENTS = ("pinned", "unpinned")
Run = tuple[float, float, float]  # (req/s, p50 ms, p99 ms), or CPU busy (0 %, 1 %, others' %)
# per placement, per target, per figure ("c16", "busy16", "cpu16", the same for 64): one per round
Peaks = dict[str, dict[str, dict[str, list[Run]]]]
# per target ("direct" too), per figure ("conns": new connections/s, "cpu": the proxy's CPU us
# per connection, none for direct): one per round
Conns = dict[str, dict[str, list[float]]]


def pinned(cpu: str | None, cmd: list[str]) -> list[str]:
    """`cmd` run on CPU `cpu` (taskset), as it is when `cpu` is None or pinning is off."""
    return ["taskset", "-c", cpu, *cmd] if cpu is not None and PINNING else cmd


def pinning_on(no_pin: bool, cpus: set[int]) -> bool:
    """Whether to pin: not turned off and both CPUs usable (else one line says it cannot)."""
    if no_pin:
        return False
    if {int(PROXY_CPU), int(LOAD_CPU)} <= cpus:
        return True
    have = ", ".join(str(c) for c in sorted(cpus))
    print(f"bench: pinning needs CPUs {PROXY_CPU} and {LOAD_CPU}, usable here: {have}; unpinned")
    return False


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None = None, cpu: str | None = PROXY_CPU
) -> Iterator[subprocess.Popen[bytes]]:
    """`cmd` in the background on CPU `cpu` (a proxy's by default; None: unpinned)."""
    with background(pinned(cpu, cmd), env) as proc:
        yield proc


def backends_conf(tmp: Path, ports: list[int], big: Path) -> Path:
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{p}; location = /big {{ alias {big}; }}"
        f" location / {{ return 200 'hello from {p}\\n'; }} }}"
        for p in ports
    )
    conf = tmp / "backends.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {tmp}/b.pid; error_log {tmp}/b.err;\n"
        "events { worker_connections 8192; }\n"
        f"http {{ access_log off; sendfile on; keepalive_requests 1000000;\n{servers}\n}}\n"
    )
    return conf


def haproxy_conf(tmp: Path, mode: str, port: int, ports: list[int], splice: bool = False) -> Path:
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    conf = tmp / f"haproxy-{mode}{'-splice' if splice else ''}.cfg"
    options = "  option splice-request\n  option splice-response\n" if splice else ""
    conf.write_text(
        "global\n  maxconn 4000\n  nbthread 1\n"
        f"defaults\n  mode {mode}\n  timeout connect 1s\n  timeout client 60s\n"
        f"  timeout server 60s\n{options}"
        f"frontend f\n  bind 127.0.0.1:{port}\n  default_backend b\n"
        f"backend b\n  balance roundrobin\n{servers}\n"
    )
    return conf


def nginx_proxy_conf(tmp: Path, port: int, ports: list[int]) -> Path:
    servers = " ".join(f"server 127.0.0.1:{p};" for p in ports)
    conf = tmp / "nginx-proxy.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {tmp}/p.pid; error_log {tmp}/p.err;\n"
        "events { worker_connections 8192; }\n"
        f"http {{ access_log off; upstream b {{ {servers} keepalive 64; }}\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://b;"
        " proxy_http_version 1.1; proxy_set_header Connection ''; } } }\n"
    )
    return conf


@contextlib.contextmanager
def ambassador(
    mode: str, port: int, ports: list[int], extra: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    admin = free_port()
    env = {
        "AMBASSADOR_MODE": mode,
        "AMBASSADOR_LISTEN": f"127.0.0.1:{port}",
        "AMBASSADOR_UPSTREAMS": ",".join(f"127.0.0.1:{p}" for p in ports),
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AMBASSADOR_LOG_LEVEL": "warning",
        "AMBASSADOR_MAX_CONNECTIONS": "4000",
        "AMBASSADOR_MAX_PENDING": "4000",
        **(extra or {}),
    }
    with process([sys.executable, "-m", "sidecars.ambassador"], env) as proc:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1).status:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the ambassador did not become ready")
            time.sleep(0.1)
        yield proc


def wrk(
    url: str, conns: int, seconds: int, close: bool = False, delay_ms: int = 0
) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms). With `delay_ms` each connection pauses a random 0 to 2x that
    long between requests: a paced load with spread arrivals (wrk has no fixed-rate mode; a
    fixed pause would line the connections up on wrk's millisecond timer and send bursts)."""
    cmd = pinned(LOAD_CPU, ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"])
    if close:
        cmd += ["-H", "Connection: close"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if delay_ms:
            script.write(f"function delay() return math.random(0, {2 * delay_ms}) end\n")
            script.flush()
            cmd += ["-s", script.name]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    return rps, pct("50"), pct("99")


def receive(port: int) -> None:
    """The lean bulk receiver (run pinned on the load CPU): GET /big, count bytes until EOF,
    print MB/s. One recv_into a 128 KiB buffer (cache-sized) per call."""
    buf = bytearray(128 << 10)
    view = memoryview(buf)
    total = 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /big HTTP/1.0\r\nHost: bench\r\n\r\n")
        while n := s.recv_into(view):
            total += n
    elapsed = time.perf_counter() - started
    if total < 1 << 30:
        sys.exit(f"receiver: short stream, {total} bytes")
    print(f"{total / elapsed / 1e6:.1f}")


def bulk_mbs(port: int, runs: int = 3) -> float:
    """The best of `runs` streams: the machine is shared, the best run is the least disturbed."""
    cmd = pinned(LOAD_CPU, [sys.executable, __file__, "--receive", str(port)])
    return max(
        float(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout)
        for _ in range(runs)
    )


def rss_with_idle_conns(pid: int, port: int, n: int = 1000) -> float:
    """Peak resident MiB of `pid` while `n` client connections are open through it."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        time.sleep(1.0)
        status = Path(f"/proc/{pid}/status").read_text()
        kib = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return kib / 1024
    finally:
        for s in socks:
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=("http", "tcp", "conns"),
        help="run one half of the bench, or only the new tcp connections (conns)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of the http peaks (per placement) and of the new connections: each runs "
        "every target once, in alternation; a ratio is the median of the rounds' paired ratios",
    )
    parser.add_argument(
        "--placement",
        choices=(*PLACEMENTS, "both"),
        default="both",
        help=f"pinned: each proxy on CPU {PROXY_CPU}, the load generator and the nginx backends on "
        f"CPU {LOAD_CPU}; unpinned: all on every CPU; both (the default): the http peaks in each, "
        "round by round, the rest pinned (pinning is off anyway with fewer than two CPUs)",
    )
    parser.add_argument("--no-pin", action="store_true", help="the same as --placement unpinned")
    parser.add_argument("--receive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.receive:  # this script as the bulk receiver (bulk_mbs): no record of its own
        receive(args.receive)
        return
    with recording("ambassador") as record:
        run(args, record)


def run(args: argparse.Namespace, record: Record) -> None:
    global PINNING
    unpinned = args.no_pin or args.placement == "unpinned"
    PINNING = pinning_on(unpinned, os.sched_getaffinity(0))
    # the http peaks' placements; the rest of the bench runs in the first
    placements = ("pinned",) if args.placement == "pinned" else PLACEMENTS
    placements = placements if PINNING else ("unpinned",)
    for tool in ("nginx", "haproxy", "wrk", *(("taskset",) if PINNING else ())):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (scripts/setup --bench installs it)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    secs = args.seconds
    load_before = os.getloadavg()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="ambassador-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run as another user when started as root
        big = tmp / "big"
        with big.open("wb") as f:
            f.truncate(1 << 30)  # 1 GiB, sparse: served from the page cache
        with big.open("rb") as f:  # fill the page cache now, not during the first stream
            while f.read(8 << 20):
                pass
        ports = [free_port() for _ in range(3)]
        # the backends beside the load, off the proxies' CPU: preempted by them a proxy's
        # kernel time per connection rose by up to 1.6x, unevenly between proxies
        with process(["nginx", "-c", str(backends_conf(tmp, ports, big))], cpu=LOAD_CPU) as ng:
            for p in ports:
                wait_port(p)
            if args.only == "conns":
                rows += conns_rows(measure_conns_only(tmp, ports, secs, args.rounds), record)
            if args.only in (None, "http"):
                peaks, paced = measure_http(tmp, ports, secs, args.rounds, placements, ng.pid)
                rows += http_rows(peaks, paced, placements, record)
            if args.only in (None, "tcp"):
                rows += tcp_rows(*measure_tcp(tmp, ports, secs, args.rounds), record)
    load_after = os.getloadavg()
    pinning = (
        f"proxies pinned to CPU {PROXY_CPU}, load and nginx backends to CPU {LOAD_CPU}"
        if PINNING
        else "no CPU pinning"
    )
    if args.only in (None, "http") and len(placements) > 1:
        pinning = f"http peaks pinned and unpinned in alternation, the rest {pinning}"
    rounds = {"http": "http peaks", None: "http peaks and new connections"}
    print(
        f"\nambassador bench: {pinning}, "
        f"{os.cpu_count()} CPUs, {secs}s per run, {args.rounds} rounds of "
        f"{rounds.get(args.only, 'new connections')} (figures: medians over the rounds; ratios: "
        "median and range of the per-round paired ratios); load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        "nginx has no stream module here (tcp n/a)\n"
    )
    print_table(rows, HEAD)


HEAD = ("figure", "ambassador", "haproxy (anchor)", "nginx", "direct", "ratio ours/anchor")
HALF_DELAY_MS = 4  # pause between requests per connection in the paced half-load run


def ratio(ours: float, anchor: float) -> str:
    return f"{ours / anchor:.2f}x" if anchor else "n/a"


def http_rows(
    peaks: Peaks, paced: dict[str, Run], placements: tuple[str, ...], record: Record
) -> list[tuple[str, ...]]:
    """The table's http rows: the peaks of each placement (figures of the unpinned one named so
    when both ran), then the paced run (in the first placement). A target's req/s and CPU per
    request are its medians over the rounds, its latency and CPU busy shares those of its
    median-req/s run; the ratios are the medians of the per-round paired ratios."""
    rows: list[tuple[str, ...]] = []
    names = ("ambassador", "haproxy", "nginx", "direct")
    for placement in placements:
        figures = peaks[placement]
        suffix = ", unpinned" if placement == "unpinned" and len(placements) > 1 else ""
        if len(placements) > 1:
            rows.append((f"http peaks, {placement}", "", "", "", "", ""))
        for conns in (16, 64):
            label = f"{conns} conns{suffix}"
            rps = {x: [r[0] for r in figures[x][f"c{conns}"]] for x in names}
            cpu = {x: [r[0] for r in figures[x][f"cpu{conns}"]] for x in names[:3]}
            mid = {x: median_index(rps[x]) for x in names}
            rate = paired(rps["ambassador"], rps["haproxy"])
            ours, anchor = (statistics.median(rps[x]) for x in ("ambassador", "haproxy"))
            record.ratio(
                f"http req/s, {label}", rate.median, ours=ours, anchor=anchor, rounds=rate.rounds
            )
            rows.append(
                (
                    f"http req/s, {label}",
                    *(f"{statistics.median(rps[x]):.0f}" for x in names),
                    rate.text(),
                )
            )
            runs = (figures[x][f"c{conns}"][mid[x]] for x in names)
            rows.append((f"  p50/p99 ms, {label}", *(f"{r[1]:.2f}/{r[2]:.2f}" for r in runs), ""))
            cost = paired(cpu["haproxy"], cpu["ambassador"])
            ca, ch, cn = (statistics.median(cpu[x]) for x in names[:3])
            record.ratio(
                f"http proxy CPU/request, {label}, anchor/ours",
                cost.median,
                ours=ca,
                anchor=ch,
                rounds=cost.rounds,
            )
            rows.append(
                (
                    f"  proxy CPU us/request, {label}",
                    *(f"{x:.1f}" for x in (ca, ch, cn)),
                    "",
                    cost.text("anchor/ours"),
                )
            )
            busy = (figures[x][f"busy{conns}"][mid[x]] for x in names)
            rows.append(
                (
                    f"  CPU {PROXY_CPU}/{LOAD_CPU} busy %, others' %",
                    *(f"{b[0]:.0f}/{b[1]:.0f}, {b[2]:.0f}" for b in busy),
                    "",
                )
            )
    a, h, n, d = (paced[x] for x in names)
    record.figure("http half load: p99 ms added vs direct, ours", a[2] - d[2])
    record.figure("http half load: p99 ms added vs direct, haproxy", h[2] - d[2])
    rows.append(
        (f"http half load ({placements[0]}): req/s", *(f"{x[0]:.0f}" for x in (a, h, n, d)), "")
    )
    rows.append(("  p50/p99 ms", *(f"{x[1]:.2f}/{x[2]:.2f}" for x in (a, h, n, d)), ""))
    rows.append(
        (
            "  p99 added vs direct, ms",
            f"{a[2] - d[2]:.2f}",
            f"{h[2] - d[2]:.2f}",
            f"{n[2] - d[2]:.2f}",
            "0",
            "goal < 1 ms",
        )
    )
    return rows


def tcp_rows(
    tcp: dict[str, dict[str, float]], conns: Conns, record: Record
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for key, name, better in [
        ("bulk", "tcp MB/s, 1 GiB stream", "higher"),
        ("rss", "peak RSS, 1000 conns", "lower"),
    ]:
        a, h = tcp["ambassador"][key], tcp["haproxy"][key]
        record.ratio(name, a / h if h else math.nan, better=better, ours=a, anchor=h)
    a, h = tcp["ambassador"]["bulk"], tcp["haproxy"]["bulk_splice"]
    record.ratio("tcp MB/s vs HAProxy with splice(2)", a / h, ours=a, anchor=h)
    a, h, d = (tcp[x]["bulk"] for x in ("ambassador", "haproxy", "direct"))
    direct = f"{ratio(a, h)}, {ratio(a, d)} direct"
    rows.append(("tcp MB/s, 1 GiB stream", f"{a:.0f}", f"{h:.0f}", "n/a", f"{d:.0f}", direct))
    spliced = tcp["haproxy"]["bulk_splice"]  # the anchor's own in-kernel relay, forced on
    direct = f"{ratio(a, spliced)}, {ratio(spliced, d)} direct"
    rows.append(("  HAProxy with splice(2)", "", f"{spliced:.0f}", "n/a", "", direct))
    rows += conns_rows(conns, record)
    a, h = tcp["ambassador"]["rss"], tcp["haproxy"]["rss"]
    rows.append(("peak RSS MiB, 1000 conns", f"{a:.1f}", f"{h:.1f}", "n/a", "", ratio(a, h)))
    return rows


def measure_http(
    tmp: Path, ports: list[int], secs: int, rounds: int, placements: tuple[str, ...], backends: int
) -> tuple[Peaks, dict[str, Run]]:
    """The peak runs of every round: per placement, per target, the wrk figures ("c16", "c64"),
    how busy the CPUs were ("busy16", "busy64": CPU 0 %, CPU 1 %, others' %) and the proxy CPU
    per request ("cpu16", "cpu64": us, 0, 0); then, per target, the paced run in the
    first placement."""
    peaks: Peaks = {}

    def peak(placement: str, name: str, port: int, pid: int | None) -> None:
        url = f"http://127.0.0.1:{port}/"
        wrk(url, 16, 1)  # warm-up: pools filled, caches hot
        mine = peaks.setdefault(placement, {}).setdefault(name, {})
        for conns in (16, 64):
            ticks, ours = cpu_ticks(), cpu_seconds(backends) + waited_seconds()
            before = cpu_seconds(pid) if pid else 0.0
            rps, p50, p99 = result = wrk(url, conns, secs)
            mine.setdefault(f"c{conns}", []).append(result)
            # CPU time per request: what the proxy costs, less disturbed by a shared machine
            used = cpu_seconds(pid) - before if pid else 0.0
            mine.setdefault(f"cpu{conns}", []).append((used / (rps * secs) * 1e6, 0.0, 0.0))
            ours = cpu_seconds(backends) + waited_seconds() - ours + used
            mine.setdefault(f"busy{conns}", []).append(busy_since(ticks, ours))

    targets = [("direct", ports[0], ["true"])]
    port = free_port()
    targets.append(
        ("haproxy", port, ["haproxy", "-db", "-f", str(haproxy_conf(tmp, "http", port, ports))])
    )
    port = free_port()
    targets.append(("nginx", port, ["nginx", "-c", str(nginx_proxy_conf(tmp, port, ports))]))
    port = free_port()
    targets.append(("ambassador", port, []))
    # Peaks first: the paced run is at half of the ambassador's peak, the same rate for all.
    # Rounds in alternation: a slowdown of the host falls on one round's runs of every target.
    for _ in range(rounds):
        for placement in placements:
            place(placement, backends)
            for name, port, cmd in targets:
                with target(name, port, cmd, ports) as pid:
                    peak(placement, name, port, pid)
    ours = peaks[placements[0]]["ambassador"]
    half = max(statistics.median(r[0] for r in ours[f"c{c}"]) for c in (16, 64)) / 2
    # each connection's cycle is the pause plus a reply plus wrk's timer slack (~1.5 ms)
    conns = max(1, round(half * (HALF_DELAY_MS + 1.5) / 1000))
    place(placements[0], backends)
    paced: dict[str, Run] = {}
    for name, port, cmd in targets:
        with target(name, port, cmd, ports):
            url = f"http://127.0.0.1:{port}/"
            wrk(url, conns, 1, delay_ms=HALF_DELAY_MS)  # warm-up
            # the least disturbed of three runs: the machine is shared, a tail is easily hit
            runs = [wrk(url, conns, secs, delay_ms=HALF_DELAY_MS) for _ in range(3)]
            paced[name] = min(runs, key=lambda r: r[2])
    return peaks, paced


def place(placement: str, backends: int) -> None:
    """Switch to `placement` (while pinning is possible): the commands started from now on, and
    the running nginx backends (`backends`: its master's pid) moved to their CPUs."""
    global PINNING
    PINNING = placement == "pinned"
    cpus = {int(LOAD_CPU)} if PINNING else os.sched_getaffinity(0)
    for pid in process_tree(backends):
        with contextlib.suppress(OSError):  # a worker that just ended
            os.sched_setaffinity(pid, cpus)


def cpu_ticks() -> dict[str, tuple[int, int]]:
    """Per CPU ("cpu0", ...): (busy, total) clock ticks so far, from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            out[name] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def busy_since(before: dict[str, tuple[int, int]], ours: float) -> tuple[float, float, float]:
    """(CPU 0 busy %, CPU 1 busy %, CPU taken by other processes as % of one CPU) since
    `before`, `ours` being the CPU seconds the bench's own processes used meanwhile."""
    after, tick = cpu_ticks(), os.sysconf("SC_CLK_TCK")

    def pct(cpu: str) -> float:
        if cpu not in after:  # one CPU: the load's is not there
            return math.nan
        (b0, t0), (b1, t1) = before[cpu], after[cpu]
        return 100 * (b1 - b0) / max(1, t1 - t0)

    busy = sum(after[c][0] - before[c][0] for c in after) / tick
    wall = (after[f"cpu{PROXY_CPU}"][1] - before[f"cpu{PROXY_CPU}"][1]) / tick
    others = max(0.0, busy - ours) / max(wall, 1e-9) * 100
    return pct(f"cpu{PROXY_CPU}"), pct(f"cpu{LOAD_CPU}"), others


def waited_seconds() -> float:
    """CPU seconds of this process's ended children (each wrk run, once it is waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def target(name: str, port: int, cmd: list[str], ports: list[int]) -> Iterator[int | None]:
    """Run one http target; yields the pid of the proxy (None for direct)."""
    if name == "direct":
        yield None
    elif name == "ambassador":
        with ambassador("http", port, ports) as proc:
            yield proc.pid
    else:
        with process(cmd) as proc:
            wait_port(port)
            yield proc.pid


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (nginx workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its live descendants (nginx workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measure_tcp(
    tmp: Path, ports: list[int], secs: int, rounds: int
) -> tuple[dict[str, dict[str, float]], Conns]:
    """Per target: bulk MB/s ("bulk", HAProxy's with splice forced on "bulk_splice") and peak
    RSS at 1000 connections ("rss"); then `measure_conns` over `rounds`."""
    out: dict[str, dict[str, float]] = {"direct": {"bulk": bulk_mbs(ports[0]), "rss": 0.0}}
    hport, aport = free_port(), free_port()
    haproxy = ["haproxy", "-db", "-f", str(haproxy_conf(tmp, "tcp", hport, ports))]
    with process(haproxy) as h, ambassador("tcp", aport, ports) as a:
        wait_port(hport)
        targets = {"haproxy": (hport, h.pid), "ambassador": (aport, a.pid)}
        for name, (port, pid) in targets.items():
            out[name] = {"bulk": bulk_mbs(port), "rss": rss_with_idle_conns(pid, port)}
        # HAProxy relays through its buffers by default; with splice forced on it moves bulk
        # data in the kernel as we do: what an in-kernel relay reaches on this machine
        sport = free_port()
        spliced = ["haproxy", "-db", "-f", str(haproxy_conf(tmp, "tcp", sport, ports, True))]
        with process(spliced):
            wait_port(sport)
            out["haproxy"]["bulk_splice"] = bulk_mbs(sport)
        conns = measure_conns(targets, f"http://127.0.0.1:{ports[0]}/", secs, rounds)
    return out, conns


def measure_conns(
    targets: dict[str, tuple[int, int]], direct: str, secs: int, rounds: int
) -> Conns:
    """New connections per second (wrk, 16 connections, `Connection: close`) and the proxy's CPU
    time per connection, for each of `targets` (name: (port, pid)) and for `direct` (an URL),
    round by round. Every proxy is up the whole time (an idle one costs nothing) and they are
    measured in alternation, so that one round's runs are adjacent in time."""
    urls = {name: f"http://127.0.0.1:{port}/" for name, (port, _) in targets.items()}
    urls["direct"] = direct
    out: Conns = {name: {"conns": [], "cpu": []} for name in urls}
    for url in urls.values():
        wrk(url, 16, 1, close=True)  # warm-up
    for _ in range(rounds):
        for name, url in urls.items():
            pid = targets[name][1] if name in targets else 0
            before = cpu_seconds(pid) if pid else 0.0
            rate = wrk(url, 16, secs, close=True)[0]
            out[name]["conns"].append(rate)
            if pid:
                out[name]["cpu"].append((cpu_seconds(pid) - before) / (rate * secs) * 1e6)
    return out


def measure_conns_only(tmp: Path, ports: list[int], secs: int, rounds: int) -> Conns:
    """`measure_conns` alone (`--only conns`): HAProxy and the ambassador in tcp mode."""
    hport, aport = free_port(), free_port()
    haproxy = ["haproxy", "-db", "-f", str(haproxy_conf(tmp, "tcp", hport, ports))]
    with process(haproxy) as h, ambassador("tcp", aport, ports) as a:
        wait_port(hport)
        targets = {"haproxy": (hport, h.pid), "ambassador": (aport, a.pid)}
        return measure_conns(targets, f"http://127.0.0.1:{ports[0]}/", secs, rounds)


def conns_rows(conns: Conns, record: Record) -> list[tuple[str, ...]]:
    """The new-connection rows: each target's medians over the rounds, the medians of the
    per-round paired ratios."""
    a, h, d = (conns[x] for x in ("ambassador", "haproxy", "direct"))
    rate, cost = paired(a["conns"], h["conns"]), paired(h["cpu"], a["cpu"])
    ra, rh, rd, ca, ch = (
        statistics.median(x) for x in (a["conns"], h["conns"], d["conns"], a["cpu"], h["cpu"])
    )
    record.ratio("tcp new connections/s", rate.median, ours=ra, anchor=rh, rounds=rate.rounds)
    record.ratio(
        "tcp proxy CPU/connection, anchor/ours",
        cost.median,
        ours=ca,
        anchor=ch,
        rounds=cost.rounds,
    )
    direct = paired(a["conns"], d["conns"]).median
    return [
        (
            "tcp new connections/s",
            f"{ra:.0f}",
            f"{rh:.0f}",
            "n/a",
            f"{rd:.0f}",
            f"{rate.text()}, {direct:.2f}x direct",
        ),
        (
            "  proxy CPU us/connection",
            f"{ca:.1f}",
            f"{ch:.1f}",
            "n/a",
            "",
            cost.text("anchor/ours"),
        ),
    ]


if __name__ == "__main__":
    main()
