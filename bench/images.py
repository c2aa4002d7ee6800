"""Footprint of the sidecar images: size, shared layers, idle RSS, start to /readyz = 200.

    .venv/bin/python bench/images.py [--runs N] [--idle SECONDS]

Needs the images (docker/images) and root (the engine's layer store gives layer sizes,
/proc gives the RSS). Each sidecar runs alone, hardened as in a pod (read-only root,
no capabilities), with default settings except: the warloader gets watch mode (else it
exits, as an init container), the ambassador one upstream member and the logshipper a stub
Elasticsearch on its localhost (they are ready only with those).
Figures:
  image     the image's size (all layers, uncompressed)
  shared    the bytes of its layers the other three sidecar images have too
  own       the layers no other sidecar image has (what a node pulls for it once the
            first sidecar image is there)
  RSS       the sidecar's resident memory after --idle seconds of idling once ready
  ready     from the process start (the engine's StartedAt) to the first /readyz = 200
  best      the fastest run's ready time (the least disturbed by other load)
  CPU       CPU time the sidecar used until ready (user + system; hardly depends on load)
  +engine   from `docker start` to the first /readyz = 200 (adds the engine's own work)
Prints a table; the medians of --runs runs. Not part of the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from support.images import layer_sizes, shared_bytes  # noqa: E402

SIDECARS = ("logshipper", "ambassador", "adapter", "warloader")
ADMIN_PORTS = {"logshipper": 9181, "ambassador": 9182, "adapter": 9183, "warloader": 9184}
SETTINGS = {
    "ambassador": {"AMBASSADOR_UPSTREAMS": "127.0.0.1:8080"},
    "warloader": {"WARLOADER_WATCH": "true"},
}
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
GOALS = {"size": 60e6, "own": 0, "rss": 25 * 2**20, "ready": 0.2}
# A stand-in for the Elasticsearch node the logshipper waits for: answers every request.
ES_STUB = r"""
import http.server, json
INFO = json.dumps({"name": "stub", "cluster_name": "stub", "cluster_uuid": "stub",
    "version": {"number": "8.19.0", "build_flavor": "default"},
    "tagline": "You Know, for Search"}).encode()
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def do_GET(self): self.answer(INFO)
    def do_HEAD(self): self.answer(INFO)
    def do_POST(self): self.answer(b'{"took":0,"errors":false,"items":[]}')
    def do_PUT(self): self.answer(b'{"acknowledged":true}')
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 9200), H).serve_forever()
"""


def docker(*args: str, timeout: float = 60.0) -> str:
    out = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def inspect(ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(docker("inspect", ref))[0]  # type: ignore[no-any-return]


def get_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def started_at(name: str) -> float:
    raw = inspect(name)["State"]["StartedAt"]
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()


def measure(image: str, name: str, idle: float) -> tuple[float, float, int, float]:
    """One run: (process start to ready, docker start to ready, idle RSS in bytes, CPU s)."""
    tag = uuid.uuid4().hex[:8]
    box, stub = f"bench-{name}-{tag}", f"bench-{name}-{tag}-es"
    env = [f"--env={k}={v}" for k, v in SETTINGS.get(name, {}).items()]
    try:
        if name == "logshipper":
            # The stub owns the network namespace (like a pod's infra container).
            docker(
                "run",
                "-d",
                "--name",
                stub,
                *HARDENED,
                "-p",
                f"127.0.0.1::{ADMIN_PORTS[name]}",
                "--entrypoint",
                "/opt/venv/bin/python",
                image,
                "-c",
                ES_STUB,
            )
            port = int(docker("port", stub, str(ADMIN_PORTS[name])).split()[0].rsplit(":", 1)[1])
            probe = "import socket; socket.create_connection(('127.0.0.1', 9200), 1).close()"
            deadline = time.monotonic() + 20
            while True:
                check = subprocess.run(
                    ["docker", "exec", stub, "python", "-c", probe],
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
                if check.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the Elasticsearch stub did not listen within 20s")
                time.sleep(0.05)
            network = ["--network", f"container:{stub}"]
        else:
            network = ["-p", f"127.0.0.1::{ADMIN_PORTS[name]}"]
        docker("create", "--name", box, *HARDENED, *network, *env, image)
        if name != "logshipper":
            port = 0
        begin = time.time()
        docker("start", box)
        if not port:
            port = int(docker("port", box, str(ADMIN_PORTS[name])).split()[0].rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while get_status(port, "/readyz") != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: not ready within 30s: {docker('logs', box)[-2000:]}")
            time.sleep(0.005)
        ready = time.time()
        pid = inspect(box)["State"]["Pid"]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        time.sleep(idle)  # idle on purpose: the RSS of an idle sidecar
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        return ready - started_at(box), ready - begin, rss * 1024, cpu
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", box, stub], capture_output=True, check=False)


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main(record: Record) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--prefix", default="sidecars")
    parser.add_argument("--tag", default="latest")
    args = parser.parse_args()

    images = {n: f"{args.prefix}/{n}:{args.tag}" for n in SIDECARS}
    per_image = {n: layer_sizes(ref) for n, ref in images.items()}
    shared = set.intersection(*({d for d, _ in ls} for ls in per_image.values()))
    shared_size = sum(s for d, s in per_image["logshipper"] if d in shared)
    rows = []
    for name, ref in images.items():
        shared_with_others = shared_bytes(per_image, name)
        own = sum(s for _, s in per_image[name]) - shared_with_others
        size = inspect(ref)["Size"]
        runs = [measure(ref, name, args.idle) for _ in range(args.runs)]
        ready = statistics.median(r[0] for r in runs)
        engine = statistics.median(r[1] for r in runs)
        rss = statistics.median(r[2] for r in runs)
        best = min(r[0] for r in runs)
        cpu = statistics.median(r[3] for r in runs)
        rows.append((name, size, shared_with_others, own, rss, ready, best, cpu, engine))

    print(f"images {args.prefix}/*:{args.tag}; median of {args.runs} runs; idle {args.idle:.0f}s")
    head = ("image", "size", "shared", "own", "idle RSS", "ready", "best", "CPU", "+engine")
    print(
        f"{head[0]:<12}{head[1]:>10}{head[2]:>10}{head[3]:>10}{head[4]:>11}{head[5]:>9}"
        f"{head[6]:>8}{head[7]:>8}{head[8]:>9}"
    )
    ok = True
    for name, size, shared, own, rss, ready, best, cpu, engine in rows:
        print(
            f"{name:<12}{mb(size):>10}{mb(shared):>10}{own / 1e3:>7.1f} kB"
            f"{rss / 2**20:>7.1f} MiB{ready:>8.2f}s{best:>7.2f}s{cpu:>7.2f}s{engine:>8.2f}s"
        )
        ok &= size <= GOALS["size"] and own <= GOALS["own"]
        ok &= rss <= GOALS["rss"] and ready <= GOALS["ready"]
        # no anchor here: the goals stand in for one
        record.ratio(f"{name}: image size / goal", size / GOALS["size"], better="lower")
        record.ratio(f"{name}: idle RSS / goal", rss / GOALS["rss"], better="lower")
        record.ratio(f"{name}: ready / goal", ready / GOALS["ready"], better="lower")
        record.figure(f"{name}: image MB", size / 1e6)
        record.figure(f"{name}: shared MB", shared / 1e6)
        record.figure(f"{name}: own layers MB", own / 1e6)
    pause = inspect(f"{args.prefix}/pause:latest")["Size"]
    print(
        f"shared by all four: {mb(shared_size)} (root, dependencies, package); pause: {mb(pause)}"
    )
    print(
        "goals: size <= 60 MB, every layer shared, idle RSS <= 25 MiB, ready <= 0.2 s:",
        "met" if ok else "NOT met",
    )
    return 0


if __name__ == "__main__":
    with recording("images") as record:
        code = main(record)
    sys.exit(code)
