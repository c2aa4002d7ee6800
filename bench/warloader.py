"""warloader benchmark: install a large file against cp+sync, cp+sync+sha256sum and curl -o.

Run: .venv/bin/python bench/warloader.py [--size-mib 1024] [--repeat 3] [--dir /tmp]
All side by side in one run, warm page cache, on the same filesystem. Ours is timed inside the
process (the install itself; process start-up is reported separately); the anchors are timed
as the shell commands they are. Each figure is the best of --repeat runs. Not part of the tests.
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

from tests.helpers import free_port, http_get, wait_until  # noqa: E402
from tests.warloader_support import run_loader  # noqa: E402

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
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    return h.hexdigest()


def best(repeat: int, prepare: Callable[[], None], action: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        prepare()
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    size = args.size_mib << 20
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

        env = {"WARLOADER_DEST": str(dest), "WARLOADER_LOG_LEVEL": "warning"}
        rows: list[tuple[str, float, float, str]] = []
        plain = best(args.repeat, clean, ours({**env, "WARLOADER_SOURCES": str(src)}))
        cp_sync = best(args.repeat, clean, sh(["cp", str(src), str(target)], ["sync"]))
        rows.append(("install from a path vs cp + sync", plain, cp_sync, "cp+sync"))
        pinned = {**env, "WARLOADER_SOURCES": f"{src}#sha256={digest}"}
        verified = best(args.repeat, clean, ours(pinned))
        anchor = sh(["cp", str(src), str(target)], ["sync"], ["sha256sum", str(target)])
        cp_sync_sha = best(args.repeat, clean, anchor)
        rows.append(("verified install vs cp + sync + sha256sum", verified, cp_sync_sha, ""))
        if shutil.which("nginx") and shutil.which("curl"):
            with nginx(work, src_dir) as url:
                remote = {**env, "WARLOADER_SOURCES": f"{url}/big.bin#sha256={digest}"}
                download = best(args.repeat, clean, ours(remote))
                curl = best(
                    args.repeat, clean, sh(["curl", "-sf", "-o", str(target), f"{url}/big.bin"])
                )
                rows.append(("verified download vs curl -o (nginx)", download, curl, ""))
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "sidecars.warloader", "--admin-addr", "127.0.0.1:0"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        startup = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gib = size / (1 << 30)
    print(f"{args.size_mib} MiB, best of {args.repeat}, warm cache, {work.parent}")
    print(f"{'figure':45} {'ours':>12} {'anchor':>12} {'ratio':>7}")
    for figure, mine, theirs, _ in rows:
        print(f"{figure:45} {gib / mine:8.2f} GB/s {gib / theirs:8.2f} GB/s {theirs / mine:6.2f}x")
    print(f"process start-up and exit with nothing to do: {startup:.2f} s (not in the figures)")


if __name__ == "__main__":
    main()
