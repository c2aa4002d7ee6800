"""Benchmark: the ambassador's redis mode side by side with twemproxy (nutcracker) on loopback.

Three redis-server shards; `redis-benchmark -t set,get -r 100000` (random keys, so every shard
gets its share) through the ambassador and through nutcracker with the same shards, md5 ketama
and `{}` hash tags, without pipelining (-P 1) and with 16 commands per pipeline (-P 16), 50
connections each. `--rounds` (5) rounds, each running both proxies in turn: the figures are
each proxy's medians over the rounds, a ratio the median (and range) of the rounds' paired
ratios (bench/_rounds.py). The proxy under test is pinned to CPU 0, redis-benchmark to CPU 1.
Needs: redis-server, redis-benchmark, nutcracker, taskset (Debian packages; scripts/setup
installs them). Run it under the shared bench lock:

    flock /tmp/bench.lock .venv/bin/python bench/redis.py [--requests 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from bench._rounds import paired  # noqa: E402
from bench._table import print_table  # noqa: E402
from bench.ambassador import LOAD_CPU, ambassador, process, wait_port  # noqa: E402
from support.process import background, free_port  # noqa: E402

SHARDS = 3
PIPELINES = (1, 16)
ROUNDS_HELP = (
    "rounds, each running both proxies in turn; a ratio is the median of the rounds' paired ratios"
)


@contextlib.contextmanager
def shards(n: int) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(n)]
    with contextlib.ExitStack() as stack:
        for port in ports:
            cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            stack.enter_context(background([*cmd, "--appendonly", "no"]))
        for port in ports:
            wait_port(port)
        yield ports


@contextlib.contextmanager
def nutcracker(tmp: Path, port: int, ports: list[int], redis: bool = True) -> Iterator[None]:
    """nutcracker on `port` over redis (or memcached) shards, md5 ketama, `{}` hash tags."""
    servers = "".join(f"    - 127.0.0.1:{p}:1\n" for p in ports)
    conf = tmp / "nutcracker.yml"
    conf.write_text(
        f"pool:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n"
        f'  hash_tag: "{{}}"\n  redis: {str(redis).lower()}\n  auto_eject_hosts: false\n'
        f"  servers:\n{servers}"
    )
    binary = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
    stats = str(free_port())
    with process([binary, "-c", str(conf), "-s", stats, "-a", "127.0.0.1", "-o", f"{tmp}/nc"]):
        wait_port(port)
        yield


def benchmark(port: int, requests: int, pipeline: int) -> dict[str, float]:
    """Requests per second of SET and GET through 127.0.0.1:port."""
    cmd = ["taskset", "-c", LOAD_CPU, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port)]
    cmd += ["-t", "set,get", "-n", str(requests), "-P", str(pipeline), "-r", "100000", "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = [row for row in csv.reader(io.StringIO(out)) if row and row[0] in ("SET", "GET")]
    if len(rows) != 2:
        raise RuntimeError(f"redis-benchmark printed no SET/GET rates: {out[-300:]!r}")
    return {row[0]: float(row[1]) for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000, help="per test and pipeline")
    parser.add_argument("--rounds", type=int, default=5, help=ROUNDS_HELP)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    with recording("redis") as record:
        run(args.requests, args.rounds, record)


def run(requests: int, rounds: int, record: Record) -> None:
    results: dict[str, dict[tuple[int, str], list[float]]] = {"ours": {}, "nutcracker": {}}
    with shards(SHARDS) as ports, tempfile.TemporaryDirectory() as tmpdir:
        ours, theirs = free_port(), free_port()
        with ambassador("redis", ours, ports), nutcracker(Path(tmpdir), theirs, ports):
            for _ in range(rounds):
                for name, port in (("ours", ours), ("nutcracker", theirs)):
                    for pipeline in PIPELINES:
                        for test, rate in benchmark(port, requests, pipeline).items():
                            results[name].setdefault((pipeline, test), []).append(rate)
    rates = {
        f"redis {test} ops/s, -P {pipeline}": (
            results["ours"][pipeline, test],
            results["nutcracker"][pipeline, test],
        )
        for pipeline in PIPELINES
        for test in ("SET", "GET")
    }
    print_table(nutcracker_rows(rates, record))


def nutcracker_rows(
    rates: dict[str, tuple[list[float], list[float]]], record: Record
) -> list[tuple[str, str, str, str]]:
    """The table's rows from each figure's rates round by round (label -> ours, nutcracker's):
    each proxy's median over the rounds, and as the ratio the median (and range) of the
    per-round paired ratios, which are recorded too."""
    rows = [("figure", "ours", "nutcracker", "ratio ours/nutcracker")]
    for label, (ours_rates, anchor_rates) in rates.items():
        ratio = paired(ours_rates, anchor_rates)
        ours, anchor = statistics.median(ours_rates), statistics.median(anchor_rates)
        record.ratio(label, ratio.median, ours=ours, anchor=anchor, rounds=list(ratio.rounds))
        rows.append((label, f"{ours:.0f}", f"{anchor:.0f}", ratio.text()))
    return rows


if __name__ == "__main__":
    main()
