"""The soak run's driver (started by scripts/soak once the trial is up; not part of the tests).

Load, bounded in rate and time, only on the containers of the soak's compose project and on
its 127.0.0.1 ports:
* log lines with a sequence number, written inside the logging pod's app container, which
  also rotates its log every minute (rename + new file, as logrotate's default does);
* Redis requests (a new connection each, PING + INCR) through the ambassador, from one more
  container joining the ambassador pod's network;
* GETs of the adapter's /health from the host.
Faults on a schedule: Elasticsearch restarts, a Redis member killed and revived later. At the
end it waits for the shipper to catch up, reads every document back and reports missing and
duplicated sequence numbers, failed requests, peak memory and restarts per sidecar.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "soak"
SIDECARS = ("logshipper", "ambassador", "adapter")
INDEX = "logs-trial"
SEQ = re.compile(r" soak seq=(\d+) ")

# Runs inside the logging pod's app container: numbered lines at a fixed rate, the log rotated
# every `rotate` seconds (app.log.N-1 -> app.log.N, app.log -> app.log.1, a new app.log), at
# most `keep` rotated files kept. Prints {"written": n, "rotations": r} at the end.
WRITER = r"""
import json, os, sys, time
path, keep = sys.argv[1], int(sys.argv[5])
rate, seconds, rotate = (float(a) for a in sys.argv[2:5])
pad = "x" * 80
n = rotations = 0
out = open(path, "a", buffering=1)
start = time.monotonic()
next_rotation = start + rotate
while True:
    now = time.monotonic()
    if now - start >= seconds:
        break
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    due = min(int((now - start) * rate), int(seconds * rate))
    while n < due:
        n += 1
        out.write(f"{stamp} INFO soak seq={n} {pad}\n")
    if now >= next_rotation:
        for k in range(keep, 1, -1):
            if os.path.exists(f"{path}.{k - 1}"):
                os.replace(f"{path}.{k - 1}", f"{path}.{k}")
        os.rename(path, f"{path}.1")
        out.close()
        out = open(path, "a", buffering=1)
        rotations += 1
        next_rotation += rotate
        print(f"rotated at line {n}", file=sys.stderr, flush=True)
    time.sleep(0.01)
while n < int(seconds * rate):
    n += 1
    out.write(f"{stamp} INFO soak seq={n} {pad}\n")
out.close()
print(json.dumps({"written": n, "rotations": rotations}))
"""

# Runs in one more container of the ambassador pod: a new connection per request to the
# ambassador's 127.0.0.1:6379, PING + INCR, at a fixed rate. Prints a JSON summary.
REDIS_LOAD = r"""
import json, socket, sys, time
from collections import Counter
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
sent = 0
errors = Counter()
start = time.monotonic()
total = int(rate * seconds)
while sent < total:
    elapsed = time.monotonic() - start
    if elapsed >= seconds + 30:
        break
    if sent >= elapsed * rate:
        time.sleep(0.005)
        continue
    sent += 1
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as s:
            s.settimeout(2)
            s.sendall(b"PING\r\nINCR soak\r\n")
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the answer")
                data += chunk
            first, second = data.split(b"\r\n")[:2]
            if first != b"+PONG" or not second.startswith(b":"):
                raise ValueError(f"unexpected answer {data[:60]!r}")
    except (OSError, ValueError) as exc:
        errors[type(exc).__name__] += 1
        line = json.dumps({"t": round(elapsed, 1), "error": repr(exc)[:200]})
        print(line, file=sys.stderr, flush=True)
print(json.dumps({"sent": sent, "failed": sum(errors.values()), "errors": dict(errors)}))
"""


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        print(f"soak: {name}={raw!r} is not a number above 0", file=sys.stderr)
        sys.exit(2)
    return value


@dataclass
class Settings:
    project: str
    seconds: float
    log_rate: float
    redis_rate: float
    health_rate: float
    rotate_every: float
    es_every: float
    redis_every: float
    redis_down: float
    catch_up: float
    es_port: int
    shipper_port: int
    ambassador_port: int
    health_port: int
    image_prefix: str

    @classmethod
    def from_env(cls) -> Settings:
        seconds = env_number("SOAK_MINUTES", 30) * 60
        return cls(
            project=os.environ.get("COMPOSE_PROJECT_NAME", "sidecars-soak"),
            seconds=seconds,
            log_rate=env_number("SOAK_LOG_RATE", 200),
            redis_rate=env_number("SOAK_REDIS_RATE", 50),
            health_rate=env_number("SOAK_HEALTH_RATE", 10),
            rotate_every=env_number("SOAK_ROTATE_EVERY", 60),
            # short runs still see every fault at least once
            es_every=env_number("SOAK_ES_RESTART_EVERY", min(420, seconds / 2)),
            redis_every=env_number("SOAK_REDIS_KILL_EVERY", min(300, seconds / 3)),
            redis_down=env_number("SOAK_REDIS_DOWN", min(60, seconds / 6)),
            catch_up=env_number("SOAK_CATCH_UP_SECONDS", 600),
            es_port=int(os.environ.get("TRIAL_ES_PORT", "29200")),
            shipper_port=int(os.environ.get("TRIAL_LOGSHIPPER_ADMIN_PORT", "29181")),
            ambassador_port=int(os.environ.get("TRIAL_AMBASSADOR_ADMIN_PORT", "29182")),
            health_port=int(os.environ.get("TRIAL_HEALTH_PORT", "29280")),
            image_prefix=os.environ.get("SIDECARS_IMAGE_PREFIX", "sidecars"),
        )


def say(message: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def container(project: str, service: str) -> str:
    """The id of `service`'s container in the compose project (running or not)."""
    out = docker(
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).stdout.split()
    if len(out) != 1:
        sys.exit(f"soak: expected one {service} container in {project}, found {len(out)}")
    return out[0]


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# ---- memory -------------------------------------------------------------------------------


def cgroup_dir(cid: str) -> Path | None:
    for candidate in (
        f"/sys/fs/cgroup/memory/docker/{cid}",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope",
        f"/sys/fs/cgroup/docker/{cid}",
    ):
        if Path(candidate).is_dir():
            return Path(candidate)
    return None


def memory_bytes(cid: str) -> tuple[int, int] | None:
    """(in use without inactive page cache, as `docker stats` shows; the kernel's peak)."""
    where = cgroup_dir(cid)
    if where is None:
        return None
    try:
        if (where / "memory.usage_in_bytes").exists():  # cgroup v1
            usage = int((where / "memory.usage_in_bytes").read_text())
            peak = int((where / "memory.max_usage_in_bytes").read_text())
            inactive_key = "total_inactive_file"
        else:
            usage = int((where / "memory.current").read_text())
            peak_file = where / "memory.peak"
            peak = int(peak_file.read_text()) if peak_file.exists() else usage
            inactive_key = "inactive_file"
        stat = dict(
            line.split() for line in (where / "memory.stat").read_text().splitlines() if line
        )
        return usage - int(stat.get(inactive_key, 0)), peak
    except (OSError, ValueError):
        return None  # the container is between a stop and a start


UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1000, "MB": 1000**2}


def docker_stats(cids: dict[str, str]) -> dict[str, int]:
    """Fallback without a readable cgroup: one `docker stats --no-stream` sample."""
    out = docker("stats", "--no-stream", "--format", "{{.ID}} {{.MemUsage}}", *cids.values())
    found = {}
    for line in out.stdout.splitlines():
        short, usage = line.split()[0], line.split()[1]
        number = re.match(r"([\d.]+)(\w+)", usage)
        for name, cid in cids.items():
            if cid.startswith(short) and number:
                found[name] = int(float(number[1]) * UNITS.get(number[2], 1))
    return found


@dataclass
class Memory:
    cids: dict[str, str]
    peak: dict[str, int] = field(default_factory=dict)
    kernel_peak: dict[str, int] = field(default_factory=dict)
    source: str = "cgroup"

    def sample(self) -> None:
        via_stats = False
        for name, cid in self.cids.items():
            got = memory_bytes(cid)
            if got is None:
                via_stats = True
                continue
            self.peak[name] = max(self.peak.get(name, 0), got[0])
            self.kernel_peak[name] = max(self.kernel_peak.get(name, 0), got[1])
        if via_stats:
            self.source = "cgroup and docker stats"
            for name, used in docker_stats(self.cids).items():
                self.peak[name] = max(self.peak.get(name, 0), used)


# ---- load ---------------------------------------------------------------------------------


@dataclass
class Requests:
    sent: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "errors": dict(self.errors)}


def health_load(s: Settings, stop: threading.Event, result: Requests) -> None:
    url = f"http://127.0.0.1:{s.health_port}/health"
    start = time.monotonic()
    while not stop.is_set():
        if result.sent >= (time.monotonic() - start) * s.health_rate:
            stop.wait(0.01)
            continue
        result.sent += 1
        try:
            status, _ = http(url, timeout=5)
            kind = "" if status == 200 else f"http_{status}"
        except OSError as exc:
            kind = type(exc).__name__
        if kind:
            result.failed += 1
            result.errors[kind] += 1


# ---- faults -------------------------------------------------------------------------------


def wait_es(s: Settings, deadline: float) -> float:
    """Seconds until Elasticsearch answers green/yellow again (or the deadline)."""
    start = time.monotonic()
    url = f"http://127.0.0.1:{s.es_port}/_cluster/health?wait_for_status=yellow&timeout=5s"
    while time.monotonic() - start < deadline:
        try:
            if http(url, timeout=10)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(1)
    return round(time.monotonic() - start, 1)


def faults(s: Settings, stop: threading.Event, events: list[dict[str, Any]]) -> None:
    """Restart Elasticsearch every es_every, kill a Redis member every redis_every (in turn,
    revived redis_down later); nothing is started in the last 30 s."""
    plan: list[tuple[float, str, str]] = []
    t = s.es_every
    while t < s.seconds - 30:
        plan.append((t, "restart", "elasticsearch"))
        t += s.es_every
    t, member = s.redis_every, 0
    while t < s.seconds - 30:
        name = f"redis-{member % 3 + 1}"
        plan += [(t, "kill", name), (min(t + s.redis_down, s.seconds - 5), "start", name)]
        t, member = t + s.redis_every, member + 1
    plan.sort()
    start = time.monotonic()
    running = []
    for at, action, service in plan:
        if stop.wait(max(0.0, at - (time.monotonic() - start))):
            break
        # each in its own thread: waiting for Elasticsearch does not delay a Redis revival
        run = threading.Thread(target=fault, args=(s, action, service, start, events))
        run.start()
        running.append(run)
    for run in running:
        run.join(timeout=400)


def fault(
    s: Settings, action: str, service: str, start: float, events: list[dict[str, Any]]
) -> None:
    began = time.monotonic()
    result = docker(action, container(s.project, service), timeout=180)
    event: dict[str, Any] = {
        "at_s": round(began - start),
        "action": action,
        "service": service,
        "rc": result.returncode,
    }
    if result.returncode != 0:
        event["error"] = result.stderr.strip()[-300:]
    if service == "elasticsearch":
        event["down_s"] = round(time.monotonic() - began + wait_es(s, 300), 1)
    events.append(event)
    say(f"fault: {action} {service} -> {event}")


# ---- the end: what reached Elasticsearch --------------------------------------------------


def es_count(s: Settings) -> int:
    base = f"http://127.0.0.1:{s.es_port}/{INDEX}"
    http(f"{base}/_refresh", {})
    status, body = http(f"{base}/_count", {"query": {"match_all": {}}})
    return int(json.loads(body)["count"]) if status == 200 else -1


def catch_up(s: Settings, written: int) -> tuple[int, float]:
    """Wait until the index holds `written` documents and stays so (or the deadline)."""
    start = time.monotonic()
    count, stable = -1, 0
    while time.monotonic() - start < s.catch_up:
        try:
            now = es_count(s)
        except (OSError, ValueError):
            now = -1
        stable = stable + 1 if now == count and now >= written else 0
        count = now
        if stable >= 2:  # unchanged over two polls 5 s apart
            break
        time.sleep(5)
    return count, round(time.monotonic() - start, 1)


def sequence_numbers(s: Settings) -> tuple[Counter[int], int]:
    """Every indexed document's sequence number (scrolled), and documents without one."""
    seen: Counter[int] = Counter()
    other = 0
    base = f"http://127.0.0.1:{s.es_port}"
    query = {"size": 10000, "_source": ["message"], "sort": ["_doc"]}
    status, body = http(f"{base}/{INDEX}/_search?scroll=2m", query, timeout=60)
    page = json.loads(body)
    if status != 200:
        sys.exit(f"soak: reading the index failed: {status} {body[:300]!r}")
    while True:
        hits = page["hits"]["hits"]
        if not hits:
            break
        for hit in hits:
            found = SEQ.search(hit["_source"].get("message", ""))
            if found:
                seen[int(found[1])] += 1
            else:
                other += 1
        status, body = http(
            f"{base}/_search/scroll", {"scroll": "2m", "scroll_id": page["_scroll_id"]}, timeout=60
        )
        page = json.loads(body)
    http(f"{base}/_search/scroll", {"scroll_id": [page.get("_scroll_id", "")]}, timeout=10)
    return seen, other


def ranges(numbers: list[int], limit: int = 20) -> list[str]:
    """[1, 2, 3, 7] -> ["1-3", "7"], the first `limit` ranges."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            if len(out) == limit:
                out.append("...")
                break
            out.append(str(n))
    return out


def metric_totals(url: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sum of each named Prometheus counter over its labels."""
    try:
        status, body = http(url, timeout=10)
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        for name in names:
            if line.startswith(name) and line[len(name)] in " {":
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def indexed_lines(s: Settings, written: int) -> dict[str, Any]:
    """Wait for the shipper, then compare the indexed sequence numbers with 1..written."""
    count, caught_up_s = catch_up(s, written)
    seen, other = sequence_numbers(s)
    missing = [n for n in range(1, written + 1) if n not in seen]
    duplicated = sorted(n for n, times in seen.items() if times > 1)
    return {
        "rate_per_s": s.log_rate,
        "written": written,
        "documents": count,
        "distinct_indexed": len(seen),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "out_of_range": sum(1 for n in seen if not 1 <= n <= written),
        "without_sequence_number": other,
        "missing_first": ranges(missing),
        "duplicated_first": ranges(duplicated),
        "catch_up_seconds": caught_up_s,
    }


def sidecar_metrics(s: Settings) -> dict[str, dict[str, float]]:
    return {
        "logshipper_metrics": metric_totals(
            f"http://127.0.0.1:{s.shipper_port}/metrics",
            (
                "logshipper_lines_read_total",
                "logshipper_documents_delivered_total",
                "logshipper_documents_retried_total",
                "logshipper_documents_dead_lettered_total",
                "logshipper_bulk_errors_total",
                "logshipper_file_errors_total",
            ),
        ),
        # listener counters only: a member's series go when DNS drops it (a killed Redis
        # member), so per-member totals read at the end would miss those members' history
        "ambassador_metrics": metric_totals(
            f"http://127.0.0.1:{s.ambassador_port}/metrics",
            (
                "ambassador_retries_total",
                "ambassador_panic_picks_total",
                "ambassador_rejected_total",
                "ambassador_accept_errors_total",
            ),
        ),
    }


def restarts(s: Settings, started: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in SIDECARS:
        info = json.loads(docker("inspect", container(s.project, name)).stdout)[0]
        out[name] = {
            "restart_count": info["RestartCount"],
            "restarted": info["State"]["StartedAt"] != started[name],
            "running": info["State"]["Running"],
        }
    return out


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**2:.1f} MiB"


def start_load(
    s: Settings, app: str, pod: str
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """The writer in the logging app's container, the Redis load in the ambassador's pod."""
    python = "/opt/venv/bin/python"
    writer = subprocess.Popen(
        ["docker", "exec", app, python, "-c", WRITER, "/var/log/app/app.log"]
        + [str(v) for v in (s.log_rate, s.seconds, s.rotate_every, 5)],
        stdout=subprocess.PIPE,
        stderr=(OUT / "writer.log").open("w"),
        text=True,
        stdin=subprocess.DEVNULL,
    )
    redis = subprocess.Popen(
        ["docker", "run", "--rm", "--name", f"{s.project}-redis-load"]
        + [f"--network=container:{pod}", "--entrypoint", python]
        + [f"{s.image_prefix}/logshipper:latest", "-c", REDIS_LOAD, str(s.redis_rate)]
        + [str(s.seconds)],
        stdout=subprocess.PIPE,
        stderr=(OUT / "redis-load.log").open("w"),
        text=True,
        stdin=subprocess.DEVNULL,
    )
    return writer, redis


def main() -> int:
    s = Settings.from_env()
    if sys.argv[1:] == ["--check"]:  # scripts/soak checks the settings before the trial is up
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    cids = {name: container(s.project, name) for name in SIDECARS}
    started = {
        name: json.loads(docker("inspect", cid).stdout)[0]["State"]["StartedAt"]
        for name, cid in cids.items()
    }
    app = container(s.project, "logging-app")
    pod = container(s.project, "ambassador-pod")
    wall_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    say(
        f"{s.seconds / 60:g} min: {s.log_rate:g} lines/s, {s.redis_rate:g} Redis requests/s, "
        f"{s.health_rate:g} /health GETs/s; log rotated every {s.rotate_every:g}s, "
        f"Elasticsearch restarted every {s.es_every:g}s, a Redis member killed every "
        f"{s.redis_every:g}s for {s.redis_down:g}s"
    )
    writer, redis = start_load(s, app, pod)
    stop = threading.Event()
    health = Requests()
    events: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=health_load, args=(s, stop, health), daemon=True),
        threading.Thread(target=faults, args=(s, stop, events), daemon=True),
    ]
    for thread in threads:
        thread.start()
    memory = Memory(cids)
    loads: list[float] = []
    begin = time.monotonic()
    next_report = begin + 60
    while time.monotonic() - begin < s.seconds + 60 and writer.poll() is None:
        memory.sample()
        loads.append(os.getloadavg()[0])
        if time.monotonic() >= next_report:
            next_report += 60
            say(
                f"{(time.monotonic() - begin) / 60:.0f} min, load {loads[-1]:.2f}, "
                f"memory {', '.join(f'{k} {mib(v)}' for k, v in memory.peak.items())}, "
                f"/health {health.failed}/{health.sent} failed"
            )
        time.sleep(2)
    stop.set()
    try:
        writer_out, _ = writer.communicate(timeout=60)
        redis_out, _ = redis.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        writer.kill()
        redis.kill()
        sys.exit("soak: the load did not stop within its deadline")
    for thread in threads:
        thread.join(timeout=420)
    events.sort(key=lambda event: int(event["at_s"]))
    try:
        wrote = json.loads(writer_out.strip().splitlines()[-1])
        redis_result = json.loads(redis_out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        say(
            f"writer exited {writer.returncode}, Redis load exited {redis.returncode}: "
            "see build/soak/writer.log and redis-load.log"
        )
        return 1
    written = int(wrote["written"])
    say(f"load stopped: {written} lines written; waiting for the shipper to catch up")
    lines = indexed_lines(s, written)
    memory.sample()
    lines["rotations"] = wrote["rotations"]
    ok = written > 0 and not any(lines[k] for k in ("missing", "duplicated", "out_of_range"))
    ok = ok and not lines["without_sequence_number"]
    summary = {
        "started": wall_start,
        "minutes": s.seconds / 60,
        "ok": ok,
        "load_average_1m": {
            "mean": round(sum(loads) / max(1, len(loads)), 2),
            "max": round(max(loads, default=0), 2),
            "cores": os.cpu_count(),
        },
        "lines": lines,
        "requests": {
            "redis_via_ambassador": redis_result,
            "adapter_health": health.as_dict(),
        },
        "memory_peak_bytes": {
            name: {"in_use": memory.peak.get(name), "kernel_peak": memory.kernel_peak.get(name)}
            for name in SIDECARS
        },
        "memory_source": memory.source,
        "restarts": restarts(s, started),
        "faults": events,
        **sidecar_metrics(s),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    return 0 if ok else 1


def print_table(summary: dict[str, Any]) -> None:
    lines, req = summary["lines"], summary["requests"]
    rows = [
        ("started (UTC)", summary["started"]),
        ("minutes", f"{summary['minutes']:g}"),
        (
            "load average (1 min), mean / max",
            "{mean} / {max} on {cores} cores".format(**summary["load_average_1m"]),
        ),
        ("lines written / rotations", f"{lines['written']} / {lines['rotations']}"),
        ("documents in the index", str(lines["documents"])),
        ("lines indexed once", str(lines["distinct_indexed"] - lines["duplicated"])),
        ("lines missing", f"{lines['missing']} {' '.join(lines['missing_first'])}".strip()),
        (
            "lines duplicated",
            f"{lines['duplicated']} {' '.join(lines['duplicated_first'])}".strip(),
        ),
        ("catch-up after the load (s)", str(lines["catch_up_seconds"])),
    ]
    for kind, result in req.items():
        errors = ", ".join(f"{k} {v}" for k, v in result["errors"].items())
        rows.append((f"{kind}: failed / sent", f"{result['failed']} / {result['sent']} {errors}"))
    for name, peak in summary["memory_peak_bytes"].items():
        restart = summary["restarts"][name]
        rows.append(
            (
                f"{name}: peak memory (in use / kernel), restarts",
                f"{mib(peak['in_use'])} / {mib(peak['kernel_peak'])}, "
                f"{restart['restart_count']}{' (restarted)' if restart['restarted'] else ''}",
            )
        )
    for event in summary["faults"]:
        rows.append(
            (
                f"fault at {event['at_s']}s",
                f"{event['action']} {event['service']}"
                + (f" (back in {event['down_s']}s)" if "down_s" in event else ""),
            )
        )
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(f"\n  {'PASS' if summary['ok'] else 'FAIL'}: build/soak/summary.json")


if __name__ == "__main__":
    sys.exit(main())
