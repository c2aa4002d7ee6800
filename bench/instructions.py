"""Instructions per request of the http ambassador, counted by callgrind: a figure that a shared
machine does not disturb, for comparing two commits of the hot path.

Three nginx backends; the ambassador runs under `valgrind --tool=callgrind` with counting off;
after a warm-up, counting is switched on for a fixed number of keep-alive GET requests sent by
`h2load --h1` (16 connections by default), then the counts are dumped and divided by the number
of requests. Health checks are off so that only request work is counted.
Needs: valgrind, nginx, h2load (Debian packages).

    .venv/bin/python bench/instructions.py [--requests 20000] [--conns 16] [--annotate]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import recording  # noqa: E402
from support.process import background, free_port, wait_until  # noqa: E402


def backends(tmp: Path, ports: list[int]) -> list[str]:
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{p}; location / {{ return 200 'hello from {p}\\n'; }} }}"
        for p in ports
    )
    conf = tmp / "backends.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {tmp}/b.pid; error_log {tmp}/b.err;\n"
        "events { worker_connections 8192; }\n"
        f"http {{ access_log off; keepalive_requests 1000000;\n{servers}\n}}\n"
    )
    return ["nginx", "-p", str(tmp), "-c", str(conf)]


@contextlib.contextmanager
def ambassador(tmp: Path, port: int, ports: list[int]) -> Iterator[tuple[int, Path]]:
    """The ambassador under callgrind, counting off; yields (pid, dump file prefix)."""
    admin = free_port()
    out = tmp / "callgrind.out"
    env = {
        "AMBASSADOR_MODE": "http",
        "AMBASSADOR_LISTEN": f"127.0.0.1:{port}",
        "AMBASSADOR_UPSTREAMS": ",".join(f"127.0.0.1:{p}" for p in ports),
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
        "AMBASSADOR_LOG_LEVEL": "warning",
        "AMBASSADOR_HEALTH_CHECK": "none",
        "AMBASSADOR_MAX_CONNECTIONS": "4000",
        "AMBASSADOR_MAX_PENDING": "4000",
    }
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        sys.executable, "-m", "sidecars.ambassador",
    ]  # fmt: skip
    with background(cmd, env) as proc:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("the ambassador exited")
            url = f"http://127.0.0.1:{admin}/readyz"
            return bool(urllib.request.urlopen(url, timeout=5).status == 200)

        wait_until(ready, 120, "the ambassador under callgrind is ready", every=0.5)
        yield proc.pid, out


def load(port: int, requests: int, conns: int) -> None:
    cmd = ["h2load", "--h1", "-n", str(requests), "-c", str(conns), "-t", "1"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if m is None or int(m.group(2)) != requests:
        sys.exit(f"h2load: not every request succeeded:\n{out}")


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--annotate", action="store_true", help="print callgrind_annotate")
    parser.add_argument("--keep", type=Path, metavar="FILE", help="copy the callgrind dump here")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (scripts/setup --bench installs it)")
    with recording("instructions") as record, tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ports = [free_port() for _ in range(3)]
        port = free_port()
        with background(backends(tmp, ports)), ambassador(tmp, port, ports) as (pid, out):
            load(port, 2000, args.conns)  # warm-up: connections pooled, heads cached
            control(pid, "--instr=on")
            load(port, args.requests, args.conns)
            control(pid, "--dump")
            dump = tmp / "callgrind.out.1"  # callgrind_control returns once it is written
            text = dump.read_text(errors="replace")
            if args.keep:
                shutil.copyfile(dump, args.keep)
        m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if m is None:
            sys.exit("callgrind: no totals in the dump")
        total = int(m.group(1))
        per = total / args.requests
        record.figure(f"http instructions per request, {args.conns} conns", per)
        print(f"{per:,.0f} instructions per request ({total:,} for "
              f"{args.requests:,} requests, {args.conns} connections)")  # fmt: skip
        if args.annotate:
            print(subprocess.run(
                ["callgrind_annotate", "--inclusive=yes", str(dump)],
                capture_output=True, text=True, check=True,
            ).stdout)  # fmt: skip


if __name__ == "__main__":
    main()
