"""Benchmark: TLS origination and termination, the ambassador beside HAProxy, same certificates.

Origination: one nginx member speaks only TLS (a certificate made here by trustme, TLS session
cache on); each proxy takes plain tcp from the load generator and speaks TLS to it, verifying
the chain and the name. wrk with `Connection: close` measures new connections per second (each one a
TLS handshake to the member, resumed when the proxy offers its last session: both do), five
rounds in alternation (the figures: each proxy's median; the ratio: the median and range of the
rounds' paired ratios, bench/_rounds.py); the lean receiver of bench/ambassador.py pulls
1 GiB through each (best of three) for bulk MB/s. Termination: each proxy takes TLS from the
load generator (the same certificate and key; wrk over https with `Connection: close`, a full
handshake per connection, and a Python TLS receiver pulling 1 GiB) and speaks plain tcp to a
plain nginx member. Proxies pinned to CPU 0, the load and the nginx members to CPU 1 (as in
bench/ambassador.py: nothing else takes the proxy's CPU). Needs: nginx, haproxy, wrk, taskset.
Run it under the shared bench lock:

    flock /tmp/bench.lock .venv/bin/python bench/ambassador_tls.py [--seconds 5] [--only term]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from bench._rounds import paired  # noqa: E402
from bench._table import print_table  # noqa: E402
from bench.ambassador import (  # noqa: E402
    LOAD_CPU,
    ambassador,
    bulk_mbs,
    pinned,
    process,
    wait_port,
    wrk,
)
from support.process import free_port  # noqa: E402

ROUNDS = 5
Rounds = dict[str, list[float]]  # per proxy: a figure per round (a bulk stream: one, the best)


def nginx_conf(tmp: Path, port: int, big: Path, plain: int = 0) -> Path:
    conf = tmp / "nginx-tls.conf"
    also = (
        f"  server {{\n    listen 127.0.0.1:{plain};\n"
        '    location = / { return 200 "ok\\n"; }\n'
        f"    location = /big {{ alias {big}; }}\n  }}\n"
    ) if plain else ""  # fmt: skip
    temp = " ".join(f"{k}_temp_path {tmp};" for k in ("client_body", "proxy", "fastcgi"))
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\n  access_log off;\n  {temp}\n  uwsgi_temp_path {tmp};\n"
        f"  scgi_temp_path {tmp};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n"
        f"    ssl_certificate {tmp}/member.crt;\n    ssl_certificate_key {tmp}/member.key;\n"
        "    ssl_session_cache shared:tls:10m;\n"
        '    location = / { return 200 "ok\\n"; }\n'
        f"    location = /big {{ alias {big}; }}\n  }}\n{also}}}\n"
    )
    return conf


def haproxy_conf(tmp: Path, port: int, member: int, terminate: bool = False) -> Path:
    """HAProxy in tcp mode: TLS to the member (origination) or from the client (termination)."""
    conf = tmp / f"haproxy-{'term' if terminate else 'tls'}.cfg"
    bind = f" ssl crt {tmp}/listen.pem" if terminate else ""
    server = "" if terminate else (
        f" ssl verify required ca-file {tmp}/ca.pem sni str(localhost) verifyhost localhost"
    )  # fmt: skip
    conf.write_text(
        "global\n  maxconn 4000\n  nbthread 1\n"
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n"
        f"  timeout server 60s\nlisten p\n  bind 127.0.0.1:{port}{bind}\n"
        f"  server s1 127.0.0.1:{member}{server}\n"
    )
    return conf


def receive_tls(port: int) -> None:
    """The bulk receiver over TLS (run pinned on the load CPU): GET /big, print MB/s."""
    ctx = ssl.create_default_context(cafile=os.environ["BENCH_CA"])
    buf = bytearray(128 << 10)
    total = 0
    started = time.perf_counter()
    with ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
    ) as s:
        s.sendall(b"GET /big HTTP/1.0\r\nHost: bench\r\n\r\n")
        try:
            while n := s.recv_into(buf):
                total += n
        except ssl.SSLEOFError:
            pass  # a proxy relaying the member's close may not send close_notify
    elapsed = time.perf_counter() - started
    if total < 1 << 30:
        sys.exit(f"receiver: short stream, {total} bytes")
    print(f"{total / elapsed / 1e6:.1f}")


def bulk_tls_mbs(port: int, ca: Path, runs: int = 3) -> float:
    cmd = pinned(LOAD_CPU, [sys.executable, __file__, "--receive-tls", str(port)])
    env = {**os.environ, "BENCH_CA": str(ca)}
    return max(
        float(
            subprocess.run(
                cmd, capture_output=True, text=True, check=True, timeout=300, env=env
            ).stdout
        )
        for _ in range(runs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--only", choices=("orig", "term"), help="origination or termination")
    parser.add_argument("--receive-tls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive_tls:
        receive_tls(args.receive_tls)
        return
    with recording("ambassador_tls") as record:
        run(args.seconds, record, args.only)


def run(secs: int, record: Record, only: str | None = None) -> None:
    for tool in ("nginx", "haproxy", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is not installed (scripts/setup --bench installs it)")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ambassador-tls-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run as another user when started as root
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost")
        (tmp / "ca.pem").write_bytes(ca.cert_pem.bytes())
        (tmp / "member.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        (tmp / "member.key").write_bytes(leaf.private_key_pem.bytes())
        big = tmp / "big"
        with big.open("wb") as f:
            f.truncate(1 << 30)  # 1 GiB, sparse: served from the page cache
        (tmp / "listen.pem").write_bytes(
            b"".join(b.bytes() for b in leaf.cert_chain_pems) + leaf.private_key_pem.bytes()
        )
        member, plain, hport, aport = free_port(), free_port(), free_port(), free_port()
        results: list[tuple[str, str, Rounds]] = []
        with process(["nginx", "-c", str(nginx_conf(tmp, member, big, plain))], cpu=LOAD_CPU):
            for port in (member, plain):
                wait_port(port)
            if only != "term":
                results += originate(tmp, secs, member, hport, aport)
            if only != "orig":
                results += terminate(tmp, secs, plain, free_port(), free_port())
    rows = [("figure", "ambassador", "haproxy (anchor)", "ratio ours/anchor")]
    for label, key, figures in results:
        ratios = paired(figures["ambassador"], figures["haproxy"])
        ours, anchor = (statistics.median(figures[x]) for x in ("ambassador", "haproxy"))
        rounds = ratios.rounds if len(ratios.rounds) > 1 else None  # not a bulk's best of three
        record.ratio(key, ratios.median, ours=ours, anchor=anchor, rounds=rounds)
        rows.append((label, f"{ours:.0f}", f"{anchor:.0f}", ratios.text()))
    load_after = os.getloadavg()
    print(
        f"\nambassador TLS bench: {secs}s per run, load average (1 min) {load_before[0]:.2f}"
        f" before, {load_after[0]:.2f} after\n"
    )
    print_table(rows)


def originate(
    tmp: Path, secs: int, member: int, hport: int, aport: int
) -> list[tuple[str, str, Rounds]]:
    tls = {
        "AMBASSADOR_TLS": "true",
        "AMBASSADOR_TLS_CA_FILE": str(tmp / "ca.pem"),
        "AMBASSADOR_TLS_SERVER_NAME": "localhost",
    }
    haproxy = ["haproxy", "-db", "-f", str(haproxy_conf(tmp, hport, member))]
    with process(haproxy), ambassador("tcp", aport, [member], tls):
        wait_port(hport)
        ports = {"ambassador": aport, "haproxy": hport}
        conns = _rates({n: f"http://127.0.0.1:{p}/" for n, p in ports.items()}, secs)
        bulk = {name: [bulk_mbs(port)] for name, port in ports.items()}
    return [
        ("new connections/s (a TLS handshake each to the member)", "tls new connections", conns),
        ("bulk MB/s over TLS to the member", "tls bulk", bulk),
    ]


def terminate(
    tmp: Path, secs: int, member: int, hport: int, aport: int
) -> list[tuple[str, str, Rounds]]:
    term = {
        "AMBASSADOR_LISTEN_TLS_CERT_FILE": str(tmp / "member.crt"),
        "AMBASSADOR_LISTEN_TLS_KEY_FILE": str(tmp / "member.key"),
    }
    haproxy = ["haproxy", "-db", "-f", str(haproxy_conf(tmp, hport, member, terminate=True))]
    with process(haproxy), ambassador("tcp", aport, [member], term):
        wait_port(hport)
        ports = {"ambassador": aport, "haproxy": hport}
        conns = _rates({n: f"https://127.0.0.1:{p}/" for n, p in ports.items()}, secs)
        bulk = {name: [bulk_tls_mbs(port, tmp / "ca.pem")] for name, port in ports.items()}
    return [
        ("new connections/s (a TLS handshake each from the client)", "tls term new connections",
         conns),
        ("bulk MB/s over TLS from the client", "tls term bulk", bulk),
    ]  # fmt: skip


def _rates(urls: dict[str, str], secs: int) -> Rounds:
    """New connections a second of each proxy (`Connection: close`), round by round in
    alternation."""
    rates: dict[str, list[float]] = {name: [] for name in urls}
    for url in urls.values():
        wrk(url, 16, 1, close=True)  # warm-up
    for _ in range(ROUNDS):
        for name, url in urls.items():
            rates[name].append(wrk(url, 16, secs, close=True)[0])
    return rates


if __name__ == "__main__":
    main()
