"""A real DNS server for the tests: Debian's dnsmasq on a free loopback port, answering only
the records a test gives it (a conf file of `srv-host=` and `host-record=` lines)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest

from support.process import free_port, stop_process

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


class Dnsmasq:
    """dnsmasq answering for the `test` domain only (other names there: NXDOMAIN). `restart`
    serves new records on the same port, which is how a record change is made."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dnsmasq-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, lines: Sequence[str], probe: str) -> Dnsmasq:
        """Serve `lines` (dnsmasq options without `--`); ready once `probe` (an SRV name)
        gets an answer."""
        self.proc = self._spawn(lines)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await self._answers(probe):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"dnsmasq exited {self.proc.returncode}: {err.strip()}")
            if loop.time() > deadline:
                raise AssertionError(f"dnsmasq on {self.server}: no answer within 10s")
            await asyncio.sleep(0.05)
        return self

    def _spawn(self, lines: Sequence[str]) -> subprocess.Popen[bytes]:
        if not Path(DNSMASQ).exists():
            pytest.skip("dnsmasq is not installed (scripts/setup installs dnsmasq-base)")
        self.dir.mkdir(exist_ok=True)
        conf = self.dir / "records.conf"
        conf.write_text("".join(f"{line}\n" for line in lines))
        return subprocess.Popen(
            [
                DNSMASQ,
                "--keep-in-foreground",
                "--conf-file=" + str(conf),
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--pid-file=",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                f"--port={self.port}",
                "--local=/test/",
                "--cache-size=0",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def restart(self, lines: Sequence[str], probe: str) -> None:
        self.stop()
        await self.start(lines, probe)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    async def _answers(self, name: str) -> bool:
        query = dns.message.make_query(name, "SRV")
        try:
            reply = await dns.asyncquery.tcp(query, "127.0.0.1", timeout=0.5, port=self.port)
        except (OSError, dns.exception.DNSException):
            return False
        return reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
