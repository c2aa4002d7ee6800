"""Active health checks: a TCP connect, or an HTTP GET of a path expecting a 2xx answer."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.members import Member
from sidecars.ambassador.tls import Origination, detail_of, reason_of
from sidecars.ambassador.tls import failed as tls_failed
from sidecars.runtime import resolver
from sidecars.runtime.http.client import Client, ClientError
from sidecars.runtime.tasks import beat


async def probe(member: Member, check: str, limit: float, tls: Origination | None = None) -> bool:
    """One check of one member; any error or timeout is a failed check. With TLS the check
    includes the handshake: a member whose certificate is refused is not healthy."""
    if check == "tcp" and tls is not None:
        try:
            transport, _ = await tls.connect(asyncio.Protocol, member, limit)
        except (OSError, TimeoutError):
            return False
        transport.abort()  # no close_notify exchange to wait for
        return True
    if check == "tcp":
        try:
            async with asyncio.timeout(limit):
                transport, _ = await resolver.connect(asyncio.Protocol, member.host, member.port)
        except (OSError, TimeoutError):
            return False
        transport.close()
        return True
    client = Client(
        member.host,
        member.port,
        keep=0,
        authority=member.key,
        ssl_context=tls.current() if tls is not None else None,
        server_hostname=tls.server_name(member) if tls is not None else None,
    )
    wire = (
        f"GET {check[len('http:') :]} HTTP/1.1\r\nHost: {member.key}\r\n"
        "User-Agent: ambassador-health\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    try:
        async with asyncio.timeout(limit):
            answer = await client.request(b"GET", wire, retry_stale=False)
            await answer.aclose()  # strict and bounded: a garbled answer is a failed check
            member.tls_error = ""  # (with TLS) the handshake passed
            return 200 <= answer.status < 300
    except (ClientError, TimeoutError) as exc:
        if tls is not None and isinstance(exc.__cause__, OSError):
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                tls_failed(member, reason_of(cause), detail_of(cause))
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
        tls: Origination | None = None,
    ) -> None:
        self.cluster, self.check = cluster, check
        self.interval, self.timeout = interval, timeout
        self.rise, self.fall, self.log = rise, fall, log
        self.tls = tls

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
                ok = await probe(member, self.check, self.timeout, self.tls)
            beat()  # a long round of many members is progress, not a stall
            return ok

        results = await asyncio.gather(*(check(m) for m in members))
        for member, ok in zip(members, results, strict=True):
            changed = member.record_check(ok, self.rise, self.fall)
            if changed:
                self.cluster.warm(member, time.monotonic())
            if changed is not None:
                self.log.warning(
                    "member %s is %s",
                    member.key,
                    "up" if changed else "down (failed checks)",
                    extra={"listener": self.cluster.name, "member": member.key},
                )
