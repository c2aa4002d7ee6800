"""Instructions per request, new connection or sharded command of the ambassador, by callgrind.

Per request of the http ambassador, per new connection of the tcp one, or per command of the
redis or memcached mode, counted by callgrind: a figure that a shared machine does not disturb,
for comparing two commits of the hot path.

Three nginx backends; the ambassador runs under `valgrind --tool=callgrind` with counting off;
after a warm-up, counting is switched on for a fixed number of keep-alive GET requests sent by
`h2load --h1` (16 connections by default), then the counts are dumped and divided by the number
of requests. With `--tcp-connections N` the ambassador is in tcp mode and the load is N short
connections (connect, one GET with `Connection: close`, read to the end, close), `--conns` of
them open at a time. With `--sharded redis|memcached` the members are three redis-server (or
memcached) shards and the load is `--requests` SET and as many GET of random keys with
`--pipeline` commands per batch over `--conns` connections (redis-benchmark; for memcached the
load client of bench/memcached.py), counted per command. Health checks are off so that only
request work is counted.
Needs: valgrind, nginx, h2load (Debian packages); redis-server, redis-benchmark, memcached.

    .venv/bin/python bench/instructions.py [--requests 20000] [--conns 16] [--annotate]
    .venv/bin/python bench/instructions.py --tcp-connections 5000
    .venv/bin/python bench/instructions.py --sharded redis --pipeline 16 --conns 50
"""

from __future__ import annotations

import argparse
import contextlib
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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
def ambassador(
    tmp: Path, port: int, ports: list[int], mode: str = "http"
) -> Iterator[tuple[int, Path]]:
    """The ambassador under callgrind, counting off; yields (pid, dump file prefix)."""
    admin = free_port()
    out = tmp / "callgrind.out"
    env = {
        "AMBASSADOR_MODE": mode,
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


REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def short_connections(port: int, total: int, conns: int, timeout: float = 600.0) -> None:
    """`total` connections, `conns` open at a time: each sends one GET with `Connection: close`
    and reads until the end of the stream; exits naming what failed (a short answer, a reset)."""
    sel = selectors.DefaultSelector()
    started = done = 0
    deadline = time.monotonic() + timeout

    def start() -> None:
        nonlocal started
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sel.register(sock, selectors.EVENT_WRITE, bytearray())
        started += 1

    for _ in range(min(conns, total)):
        start()
    while done < total:
        if time.monotonic() > deadline:
            sys.exit(f"short connections: {done} of {total} done within {timeout:.0f}s")
        for key, mask in sel.select(1.0):
            sock, got = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            if mask & selectors.EVENT_WRITE:
                sock.send(REQUEST)  # small: fits a fresh socket's buffer
                sel.modify(sock, selectors.EVENT_READ, got)
                continue
            try:
                data = sock.recv(65536)
            except OSError as exc:
                sys.exit(f"short connections: connection {done + 1} failed: {exc}")
            if data:
                got += data
                continue
            if not got.startswith(b"HTTP/1.1 200"):
                sys.exit(f"short connections: a bad answer: {bytes(got[:80])!r}")
            sel.unregister(sock)
            sock.close()
            done += 1
            if started < total:
                start()
    sel.close()


def sharded_load(mode: str, port: int, requests: int, conns: int, pipeline: int) -> int:
    """`requests` SET and as many GET through the redis or memcached mode; the commands sent."""
    if mode == "redis":
        cmd = ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(requests)]
        cmd += ["-c", str(conns), "-P", str(pipeline), "-r", "100000", "-q"]
        subprocess.run(cmd, capture_output=True, check=True, timeout=3600)
        return 2 * requests
    cmd = [sys.executable, str(ROOT / "bench" / "memcached.py"), "--load", str(port)]
    cmd += ["--commands", str(2 * requests), "--pipeline", str(pipeline), "--seconds", "3600"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        sys.exit(f"memcached load failed: {done.stderr[-500:]}")
    return int(done.stdout.split()[-1])


@contextlib.contextmanager
def members(tmp: Path, sharded: str | None) -> Iterator[list[int]]:
    """Three members: nginx backends, or redis-server or memcached shards."""
    if sharded:
        from bench import memcached, redis

        with redis.shards(3) if sharded == "redis" else memcached.shards(3) as ports:
            yield ports
        return
    ports = [free_port() for _ in range(3)]
    with background(backends(tmp, ports)):
        yield ports


def counted(args: argparse.Namespace, pid: int, port: int) -> tuple[int, str]:
    """Warm up, count the load's instructions; (what was counted, its name)."""
    if args.sharded:
        sharded_load(args.sharded, port, 2000, args.conns, args.pipeline)  # shard connections
        control(pid, "--instr=on")
        return sharded_load(args.sharded, port, args.requests, args.conns, args.pipeline), "command"
    if args.tcp_connections:
        short_connections(port, 500, args.conns)  # warm-up: code paths taken once
        control(pid, "--instr=on")
        short_connections(port, args.tcp_connections, args.conns)
        return args.tcp_connections, "new connection"
    load(port, 2000, args.conns)  # warm-up: connections pooled, heads cached
    control(pid, "--instr=on")
    load(port, args.requests, args.conns)
    return args.requests, "request"


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument(
        "--tcp-connections",
        type=int,
        metavar="N",
        help="count per new connection of tcp mode over N short connections",
    )
    parser.add_argument(
        "--sharded",
        choices=("redis", "memcached"),
        help="count per command of this mode (--requests SET and as many GET)",
    )
    parser.add_argument("--pipeline", type=int, default=1, help="commands per batch (--sharded)")
    parser.add_argument("--annotate", action="store_true", help="print callgrind_annotate")
    parser.add_argument("--keep", type=Path, metavar="FILE", help="copy the callgrind dump here")
    args = parser.parse_args()
    tools = ["valgrind", "callgrind_control"]
    if args.sharded:
        tools += ["redis-server", "redis-benchmark"] if args.sharded == "redis" else ["memcached"]
    else:
        tools += ["nginx", "h2load"]
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (scripts/setup --bench installs it)")
    with recording("instructions") as record, tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        port = free_port()
        mode = args.sharded or ("tcp" if args.tcp_connections else "http")
        with members(tmp, args.sharded) as ports, ambassador(tmp, port, ports, mode) as (pid, _):
            count, what = counted(args, pid, port)
            control(pid, "--dump")
            dump = tmp / "callgrind.out.1"  # callgrind_control returns once it is written
            text = dump.read_text(errors="replace")
            if args.keep:
                shutil.copyfile(dump, args.keep)
        m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if m is None:
            sys.exit("callgrind: no totals in the dump")
        total = int(m.group(1))
        per = total / count
        shape = f", -P {args.pipeline}" if args.sharded else ""
        record.figure(f"{mode} instructions per {what}, {args.conns} conns{shape}", per)
        print(f"{per:,.0f} instructions per {what} ({total:,} for "
              f"{count:,}, {args.conns} connections at a time)")  # fmt: skip
        if args.annotate:
            print(subprocess.run(
                ["callgrind_annotate", "--inclusive=yes", str(dump)],
                capture_output=True, text=True, check=True,
            ).stdout)  # fmt: skip


if __name__ == "__main__":
    main()
