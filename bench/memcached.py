"""Benchmark: the ambassador's memcached mode side by side with twemproxy (nutcracker) on loopback.

Three memcached shards; through the ambassador and through nutcracker with the same shards, md5
ketama and `{}` hash tags, this file's load client (`--load`: asyncio, 50 connections, each with
one batch in flight) sends set and get of random keys of 100,000 with 32-byte values, half each,
one command per batch (-P 1) and 16 (-P 16: 8 set, 8 get), the same load for both proxies.
Debian has no memcached load generator that pipelines (memtier is not packaged) and memaslap's
keys carry control characters, which a memcached proxy must refuse. The client is one Python
process: at -P 1 it may hold back the faster proxy, so that ratio may flatter us. `--rounds` (5)
rounds, each running both proxies in turn: the figures are each proxy's medians over the
rounds, a ratio the median (and range) of the rounds' paired ratios (bench/_rounds.py). The
proxy under test is pinned to CPU 0, the load client to CPU 1. Needs: memcached, nutcracker,
taskset (Debian packages; scripts/setup installs them). Run it under the shared bench lock:

    flock /tmp/bench.lock .venv/bin/python bench/memcached.py [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from bench._table import print_table  # noqa: E402
from bench.ambassador import LOAD_CPU, ambassador, wait_port  # noqa: E402
from bench.redis import ROUNDS_HELP, nutcracker, nutcracker_rows  # noqa: E402
from support.process import background, free_port  # noqa: E402

SHARDS = 3
CONNS = 50
PIPELINES = (1, 16)
KEYS = 100_000
VALUE = b"v" * 32


@contextlib.contextmanager
def shards(n: int) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(n)]
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    root = ["-u", "root"] if os.geteuid() == 0 else []  # memcached refuses root unless told
    with contextlib.ExitStack() as stack:
        for port in ports:
            cmd = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", *root]
            stack.enter_context(background(cmd))
        for port in ports:
            wait_port(port)
        yield ports


def pipelined(port: int, seconds: int, pipeline: int) -> float:
    """Commands per second of this file's load client (`--load`) through 127.0.0.1:port."""
    cmd = ["taskset", "-c", LOAD_CPU, sys.executable, __file__, "--load", str(port)]
    cmd += ["--seconds", str(seconds), "--pipeline", str(pipeline)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return float(out.stdout.split()[-1])


class Pipeliner(asyncio.Protocol):
    """One connection: a batch of commands written, all its replies read, the next."""

    def __init__(self, batches: list[bytes], state: dict[str, float], pipeline: int) -> None:
        self.batches, self.state, self.pipeline = batches, state, pipeline
        self.at = random.randrange(len(batches))
        self.got = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.state["stop"]:
            self.transport.close()
            return
        self.got.clear()
        self.transport.write(self.batches[self.at])
        self.at = (self.at + 1) % len(self.batches)

    def data_received(self, data: bytes) -> None:
        got = self.got
        got += data
        if got.count(b"STORED\r\n") + got.count(b"END\r\n") < self.pipeline:
            if b"ERROR" in got:
                raise RuntimeError(f"an error reply: {bytes(got[-200:])!r}")
            return
        state = self.state
        state["done"] += self.pipeline
        if state["limit"] and state["done"] >= state["limit"]:
            state["stop"] = 1.0
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def load(port: int, seconds: int, pipeline: int, count: int = 0) -> float:
    """Commands per second after a second's warm-up; with `count`, no warm-up: the number of
    commands answered once that many were (each connection ends its batch in flight)."""
    rng = random.Random(7)
    commands = []  # 8 sets, the 8 gets of their keys, again
    for _ in range(256):
        keys = [b"key:%d" % rng.randrange(KEYS) for _ in range(8)]
        commands += [b"set %s 0 0 %d\r\n%s\r\n" % (k, len(VALUE), VALUE) for k in keys]
        commands += [b"get %s\r\n" % k for k in keys]
    batches = [b"".join(commands[i : i + pipeline]) for i in range(0, len(commands), pipeline)]
    state = {"done": 0.0, "stop": 0.0, "limit": float(count)}
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(CONNS):
        _, proto = await loop.create_connection(
            lambda: Pipeliner(batches, state, pipeline), "127.0.0.1", port
        )
        conns.append(proto)
    if count:
        async with asyncio.timeout(seconds):
            await asyncio.gather(*(c.lost for c in conns))
        return state["done"]
    await asyncio.sleep(1.0)  # warm-up: every shard connection made, keys set
    start, began = loop.time(), state["done"]
    await asyncio.sleep(seconds)
    rate = (state["done"] - began) / (loop.time() - start)
    state["stop"] = 1.0
    async with asyncio.timeout(10):
        await asyncio.gather(*(c.lost for c in conns))
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per run")
    parser.add_argument("--rounds", type=int, default=5, help=ROUNDS_HELP)
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--commands", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.load:
        rate = asyncio.run(load(args.load, args.seconds, args.pipeline, args.commands))
        print(f"{rate:.0f}")
        return
    with recording("memcached") as record:
        run(args.seconds, args.rounds, record)


def run(seconds: int, rounds: int, record: Record) -> None:
    results: dict[str, dict[int, list[float]]] = {"ours": {}, "nutcracker": {}}
    with shards(SHARDS) as ports, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        ours, theirs = free_port(), free_port()
        with ambassador("memcached", ours, ports), nutcracker(tmp, theirs, ports, redis=False):
            for _ in range(rounds):
                for name, port in (("ours", ours), ("nutcracker", theirs)):
                    for pipeline in PIPELINES:
                        rate = pipelined(port, seconds, pipeline)
                        results[name].setdefault(pipeline, []).append(rate)
    rates = {
        f"memcached set+get ops/s, -P {pipeline}": (
            results["ours"][pipeline],
            results["nutcracker"][pipeline],
        )
        for pipeline in PIPELINES
    }
    print_table(nutcracker_rows(rates, record))


if __name__ == "__main__":
    main()
