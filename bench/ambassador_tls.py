"""Benchmark: TLS origination, the ambassador side by side with HAProxy on the same certificates.

One nginx member speaks only TLS (a certificate made here by trustme, TLS session cache on);
each proxy takes plain tcp from the load generator and speaks TLS to it, verifying the chain
and the name. wrk with `Connection: close` measures new connections per second (each one a
TLS handshake to the member, resumed when the proxy offers its last session: both do), three
rounds in alternation, the median of each; the lean receiver of bench/ambassador.py pulls
1 GiB through each (best of three) for bulk MB/s. Proxies pinned to CPU 0, load to CPU 1.
Needs: nginx, haproxy, wrk, taskset. Run it under the shared bench lock:

    flock /tmp/bench.lock .venv/bin/python bench/ambassador_tls.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from bench.ambassador import ambassador, bulk_mbs, process, wait_port, wrk  # noqa: E402
from support.process import free_port  # noqa: E402

ROUNDS = 3


def nginx_conf(tmp: Path, port: int, big: Path) -> Path:
    conf = tmp / "nginx-tls.conf"
    temp = " ".join(f"{k}_temp_path {tmp};" for k in ("client_body", "proxy", "fastcgi"))
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\n  access_log off;\n  {temp}\n  uwsgi_temp_path {tmp};\n"
        f"  scgi_temp_path {tmp};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n"
        f"    ssl_certificate {tmp}/member.crt;\n    ssl_certificate_key {tmp}/member.key;\n"
        "    ssl_session_cache shared:tls:10m;\n"
        '    location = / { return 200 "ok\\n"; }\n'
        f"    location = /big {{ alias {big}; }}\n  }}\n}}\n"
    )
    return conf


def haproxy_conf(tmp: Path, port: int, member: int) -> Path:
    conf = tmp / "haproxy-tls.cfg"
    conf.write_text(
        "global\n  maxconn 4000\n  nbthread 1\n"
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n"
        f"  timeout server 60s\nlisten p\n  bind 127.0.0.1:{port}\n"
        f"  server s1 127.0.0.1:{member} ssl verify required ca-file {tmp}/ca.pem"
        " sni str(localhost) verifyhost localhost\n"
    )
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with recording("ambassador_tls") as record:
        run(args.seconds, record)


def run(secs: int, record: Record) -> None:
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
        member, hport, aport = free_port(), free_port(), free_port()
        tls = {
            "AMBASSADOR_TLS": "true",
            "AMBASSADOR_TLS_CA_FILE": str(tmp / "ca.pem"),
            "AMBASSADOR_TLS_SERVER_NAME": "localhost",
        }
        haproxy = ["haproxy", "-db", "-f", str(haproxy_conf(tmp, hport, member))]
        with (
            process(["nginx", "-c", str(nginx_conf(tmp, member, big))], pin=False),
            process(haproxy),
            ambassador("tcp", aport, [member], tls),
        ):
            for port in (member, hport):
                wait_port(port)
            ports = {"ambassador": aport, "haproxy": hport}
            rates: dict[str, list[float]] = {name: [] for name in ports}
            for port in ports.values():
                wrk(f"http://127.0.0.1:{port}/", 16, 1, close=True)  # warm-up
            for _ in range(ROUNDS):
                for name, port in ports.items():
                    rates[name].append(wrk(f"http://127.0.0.1:{port}/", 16, secs, close=True)[0])
            conns = {name: statistics.median(r) for name, r in rates.items()}
            bulk = {name: bulk_mbs(port) for name, port in ports.items()}
    rows = [("figure", "ambassador", "haproxy (anchor)", "ratio ours/anchor")]
    for label, key, figures in (
        ("new connections/s (a TLS handshake each)", "tls new connections", conns),
        ("bulk MB/s over TLS", "tls bulk", bulk),
    ):
        ours, anchor = figures["ambassador"], figures["haproxy"]
        record.ratio(key, ours / anchor, ours=ours, anchor=anchor)
        rows.append((label, f"{ours:.0f}", f"{anchor:.0f}", f"{ours / anchor:.2f}x"))
    load_after = os.getloadavg()
    print(
        f"\nambassador TLS bench: {secs}s per run, load average (1 min) {load_before[0]:.2f}"
        f" before, {load_after[0]:.2f} after\n"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
