"""warloader benchmark: install a large file against cp+sync, cp+sync+sha256sum and curl -o.

Run: .venv/bin/python bench/warloader.py [--size-mib 1024] [--repeat 3] [--dir /tmp]
All side by side in one run, warm page cache, on the same filesystem. Ours is timed inside the
process (the install itself; process start-up is reported separately); the anchors are timed
as the shell commands they are. Each figure is the best of --repeat runs, ours and the anchor
alternately, each from an empty destination after a sync. Then the raw sha256 rates and the
footprint (start-to-exit time and peak RSS of a path-only init run, idle RSS in --watch mode).
Run it under `flock /tmp/bench.lock` on a shared machine. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from sidecars.warloader.copier import CHUNK, Writeback, write_all  # noqa: E402
from support.process import free_port, http_get, wait_until  # noqa: E402
from support.warloader import run_loader, war_bytes  # noqa: E402

NGINX_CONF = """
daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {work}/t1; proxy_temp_path {work}/t2; fastcgi_temp_path {work}/t3;
  uwsgi_temp_path {work}/t4; scgi_temp_path {work}/t5;
  types {{ }} default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def make_source(path: Path, size: int) -> str:
    """A file of random bytes (incompressible, like the jars inside a WAR); returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        block = os.urandom(8 << 20)
        for i in range(size // len(block)):
            piece = block[:8] + i.to_bytes(8, "big") + block[16:]
            f.write(piece)
            h.update(piece)
    return h.hexdigest()


def warm(path: Path) -> None:
    """Read the source once more, so that every run starts with it in the page cache."""
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)


def pair(
    repeat: int,
    prepare: Callable[[], None],
    mine: Callable[[], None],
    theirs: Callable[[], None],
) -> tuple[float, float]:
    """Best of `repeat` for ours and for the anchor, run alternately (ours, anchor, ours, ...)
    so that a change in the machine's load hits both alike. Each run starts from an empty
    destination with nothing dirty (sync), the source in the page cache."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for action, out in ((mine, times[0]), (theirs, times[1])):
            prepare()
            subprocess.run(["sync"], check=True)
            start = time.perf_counter()
            action()
            out.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def hash_rate(src: Path) -> tuple[float, float]:
    """GB/s of Python's hashlib and of coreutils' sha256sum over the cached source."""
    h = hashlib.sha256()
    buf = bytearray(4 << 20)
    start = time.perf_counter()
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
    ours = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(["sha256sum", str(src)], check=True, stdout=subprocess.DEVNULL)
    theirs = time.perf_counter() - start
    size = src.stat().st_size / 1e9
    return size / ours, size / theirs


def durable_write_rate(path: Path, size: int) -> float:
    """GB/s of writing `size` bytes from memory to a file, flushed as the loader flushes (in
    the background as it goes, then fsync): what the disk allows any durable install."""
    block = os.urandom(CHUNK)
    subprocess.run(["sync"], check=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    writeback = Writeback(fd)
    start = time.perf_counter()
    try:
        for _ in range(size // len(block)):
            write_all(fd, block)
            writeback.wrote(len(block))
        writeback.finish()
        os.fsync(fd)
    finally:
        writeback.close()
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return size / elapsed / 1e9


def footprint(work: Path) -> tuple[float, float, float]:
    """A path-only init container copying one small WAR: (start-to-exit seconds, peak RSS MiB);
    and the RSS (MiB) of the same source in --watch mode once ready, idle."""
    war = work / "fp" / "sample.war"
    war.parent.mkdir()
    war.write_bytes(war_bytes())
    env = {
        **os.environ,
        "WARLOADER_SOURCES": str(war),
        "WARLOADER_DEST": str(work / "fp" / "dest"),
        "WARLOADER_LOG_LEVEL": "warning",
        "WARLOADER_ADMIN_ADDR": "127.0.0.1:0",
    }
    runs = []
    for _ in range(3):
        shutil.rmtree(work / "fp" / "dest", ignore_errors=True)
        # /usr/bin/time reports the peak RSS of the loader alone (a child forked from this
        # process would count our pages until its exec)
        cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "sidecars.warloader"]
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"warloader failed in the footprint run: {done.stderr}")
        seconds, kib = done.stderr.split()[-2:]
        runs.append((float(seconds), int(kib) / 1024))
    port = free_port()
    env["WARLOADER_ADMIN_ADDR"] = f"127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "sidecars.warloader", "--watch"], env=env)
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 20, "ready")
        status_lines = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        idle = next(int(x.split()[1]) for x in status_lines if x.startswith("VmRSS:")) / 1024
    finally:
        proc.terminate()
        proc.wait(10)
    return min(r[0] for r in runs), min(r[1] for r in runs), idle


def sh(*cmds: list[str]) -> Callable[[], None]:
    def run() -> None:
        for cmd in cmds:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    return run


def ours(env: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        result = asyncio.run(run_loader(env))
        if result.code != 0 or result.outcomes() != ["installed"]:
            raise SystemExit(f"warloader failed: {result.errors()}")

    return run


@contextmanager
def nginx(work: Path, root: Path) -> Iterator[str]:
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=port, root=root))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/")[0] in (200, 403, 404), 10, "nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    with recording("warloader") as record:
        run(record)


def run(record: Record) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument(
        "--only", choices=("path", "verified", "download"), help="measure one figure (no footprint)"
    )
    args = ap.parse_args()
    if args.only is None and not os.access("/usr/bin/time", os.X_OK):  # the footprint's peak RSS
        sys.exit("bench: GNU time is not installed (scripts/setup --bench installs it)")
    size = args.size_mib << 20
    before = load()
    work = Path(tempfile.mkdtemp(prefix="warloader-bench-", dir=args.dir))
    try:
        src_dir = work / "src"
        src_dir.mkdir()
        src = src_dir / "big.bin"
        digest = make_source(src, size)
        dest = work / "dest"
        target = dest / "big.bin"

        def clean() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            warm(src)

        env = {"WARLOADER_DEST": str(dest), "WARLOADER_LOG_LEVEL": "warning"}
        rows: list[tuple[str, float, float]] = []
        cp_sync = sh(["cp", str(src), str(target)], ["sync"])
        if args.only in (None, "path"):
            mine = ours({**env, "WARLOADER_SOURCES": str(src)})
            rows.append(
                ("install from a path vs cp + sync", *pair(args.repeat, clean, mine, cp_sync))
            )
        if args.only in (None, "verified"):
            pinned = ours({**env, "WARLOADER_SOURCES": f"{src}#sha256={digest}"})
            anchor = sh(["cp", str(src), str(target)], ["sync"], ["sha256sum", str(target)])
            rows.append(
                (
                    "verified install vs cp + sync + sha256sum",
                    *pair(args.repeat, clean, pinned, anchor),
                )
            )
        ceiling = 0.0
        if args.only in (None, "download") and shutil.which("nginx") and shutil.which("curl"):
            with nginx(work, src_dir) as url:
                remote = ours({**env, "WARLOADER_SOURCES": f"{url}/big.bin#sha256={digest}"})
                curl = sh(["curl", "-sf", "-o", str(target), f"{url}/big.bin"])
                rows.append(
                    (
                        "verified download vs curl -o (nginx)",
                        *pair(args.repeat, clean, remote, curl),
                    )
                )
                # curl leaves the file in the page cache; the loader must have it on disk
                curl_sync = sh(["curl", "-sf", "-o", str(target), f"{url}/big.bin"], ["sync"])
                rows.append(
                    (
                        "verified download vs curl -o + sync",
                        *pair(args.repeat, clean, remote, curl_sync),
                    )
                )
            ceiling = durable_write_rate(dest / "ceiling.bin", size)
        hashlib_rate, sha256sum_rate = hash_rate(src)
        start_s, peak_mib, idle_mib = footprint(work) if args.only is None else (0.0, 0.0, 0.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gib = size / (1 << 30)
    print(f"{args.size_mib} MiB, best of {args.repeat} (ours and anchor alternately), warm cache,")
    print(f"{work.parent}; {before} at the start, {load()} at the end")
    print(f"{'figure':46} {'ours':>12} {'anchor':>12} {'ratio':>7}")
    for figure, ours_s, anchor_s in rows:
        record.ratio(figure, anchor_s / ours_s, ours=gib / ours_s, anchor=gib / anchor_s)
        print(
            f"{figure:46} {gib / ours_s:8.2f} GB/s {gib / anchor_s:8.2f} GB/s "
            f"{anchor_s / ours_s:6.2f}x"
        )
    print(f"sha256 alone: hashlib {hashlib_rate:.2f} GB/s, sha256sum {sha256sum_rate:.2f} GB/s")
    record.ratio(
        "sha256 alone: hashlib vs sha256sum",
        hashlib_rate / sha256sum_rate,
        ours=hashlib_rate,
        anchor=sha256sum_rate,
    )
    if ceiling:
        print(f"durable write from memory (the disk's ceiling for any install): {ceiling:.2f} GB/s")
        record.figure("durable write from memory GB/s", ceiling)
    if args.only is None:
        record.figure("path-only init container: start to exit s", start_s)
        record.figure("path-only init container: peak RSS MiB", peak_mib)
        record.figure("idle in --watch mode: RSS MiB", idle_mib)
        print(
            f"path-only init container, one WAR: start to exit {start_s:.2f} s (goal < 0.5 s), "
            f"peak RSS {peak_mib:.1f} MiB; idle in --watch mode: RSS {idle_mib:.1f} MiB "
            "(goal < 40 MiB)"
        )


if __name__ == "__main__":
    main()
