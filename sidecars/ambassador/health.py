"""Active health checks: a TCP connect, or an HTTP GET of a path expecting a 2xx answer."""

from __future__ import annotations

import asyncio
import logging

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.members import Member
from sidecars.runtime.http.client import Client, ClientError
from sidecars.runtime.tasks import beat


async def probe(member: Member, check: str, limit: float) -> bool:
    """One check of one member; any error or timeout is a failed check."""
    if check == "tcp":
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(limit):
                _, writer = await asyncio.open_connection(member.host, member.port)
            return True
        except (OSError, TimeoutError):
            return False
        finally:
            if writer is not None:
                writer.close()
    client = Client(member.host, member.port, keep=0, authority=member.key)
    wire = (
        f"GET {check[len('http:') :]} HTTP/1.1\r\nHost: {member.key}\r\n"
        "User-Agent: ambassador-health\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    try:
        async with asyncio.timeout(limit):
            answer = await client.request(b"GET", wire, retry_stale=False)
            await answer.aclose()  # strict and bounded: a garbled answer is a failed check
            return 200 <= answer.status < 300
    except (ClientError, TimeoutError):
        return False
    finally:
        await client.close()


CHECKS_AT_ONCE = 128  # a cluster of thousands (a DNS name) must not take as many descriptors


class HealthChecker:
    """Checks every member of a cluster each interval, up to CHECKS_AT_ONCE at a time."""

    def __init__(
        self,
        cluster: Cluster,
        check: str,
        *,
        interval: float,
        timeout: float,
        rise: int,
        fall: int,
        log: logging.Logger,
    ) -> None:
        self.cluster, self.check = cluster, check
        self.interval, self.timeout = interval, timeout
        self.rise, self.fall, self.log = rise, fall, log

    async def run(self) -> None:
        if self.check == "none":
            return
        while True:
            await self.round()
            beat()
            await asyncio.sleep(self.interval)

    async def round(self) -> None:
        members = list(self.cluster.members.values())
        at_once = asyncio.Semaphore(CHECKS_AT_ONCE)

        async def check(member: Member) -> bool:
            async with at_once:
                ok = await probe(member, self.check, self.timeout)
            beat()  # a long round of many members is progress, not a stall
            return ok

        results = await asyncio.gather(*(check(m) for m in members))
        for member, ok in zip(members, results, strict=True):
            changed = member.record_check(ok, self.rise, self.fall)
            if changed is not None:
                self.log.warning(
                    "member %s is %s",
                    member.key,
                    "up" if changed else "down (failed checks)",
                    extra={"listener": self.cluster.name, "member": member.key},
                )
