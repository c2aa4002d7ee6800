"""Member discovery: static lists, DNS names and SRV records re-resolved keeping the last good
answer, watched files."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

from sidecars.ambassador import dnsquery
from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.spec import MAX_MEMBERS, Address, Source, read_member_file
from sidecars.runtime import resolver

Resolver = Callable[[str, int, str], Awaitable[list[str]]]
Counter = Callable[[str, str], None]  # (kind, outcome) -> count one discovery event

_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
SRV_LOOKUPS = 32  # targets of SRV records resolved at once


async def system_resolve(name: str, port: int, family: str) -> list[str]:
    """Every address the system resolver returns for `name` (sorted, deduplicated)."""
    infos = await resolver.getaddrinfo(
        name, port, family=_FAMILIES[family], type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return sorted({str(info[4][0]) for info in infos})


def source_label(source: Source) -> str:
    if source.kind == "file":
        return f"file://{source.path}"
    if source.kind == "srv":
        return f"srv://{source.name}"
    assert source.address is not None
    return ("dns://" if source.kind == "dns" else "") + source.address.key


def srv_weight(weight: int) -> int:
    """An SRV weight (0 to 65535) as a member weight (1 to 1000): 0 counts as 1."""
    return min(max(weight, 1), 1000)


class Discovery:
    """Feeds a cluster from its sources until cancelled."""

    def __init__(
        self,
        cluster: Cluster,
        sources: Sequence[Source],
        *,
        dns_interval: float,
        dns_family: str,
        dns_server: str = "",
        file_interval: float,
        timeout: float,
        log: logging.Logger,
        count: Counter,
        resolve: Resolver = system_resolve,
    ) -> None:
        self.cluster, self.sources = cluster, list(sources)
        self.dns_interval, self.dns_family = dns_interval, dns_family
        self.file_interval, self.timeout = file_interval, timeout
        self.log, self.count, self.resolve = log, count, resolve
        self.dns_server = dns_server
        self._dns = dnsquery.make_resolver(dns_server, timeout) if self._queries() else None
        self.truncated: set[str] = set()  # DNS sources answering more than MAX_MEMBERS

    async def prime(self) -> None:
        """One pass over every source, so a listener starts with members when it can."""
        for source in self.sources:
            if source.kind == "static":
                assert source.address is not None
                self.cluster.set_source(source_label(source), [source.address])
            elif source.kind in ("dns", "srv"):
                await self._resolve_once(source, None)
            else:
                self._read_file(source, None)
        self.cluster.primed = True

    async def run(self) -> None:
        """Keep the dynamic sources fresh (after `prime`)."""
        async with asyncio.TaskGroup() as tg:
            for source in self.sources:
                if source.kind in ("dns", "srv"):
                    tg.create_task(self._dns_loop(source))
                elif source.kind == "file":
                    tg.create_task(self._file_loop(source))

    async def _dns_loop(self, source: Source) -> None:
        ok: bool | None = True
        while True:
            await asyncio.sleep(self.dns_interval)
            ok = await self._resolve_once(source, ok)

    def _queries(self) -> bool:
        """Whether a source needs dnspython's resolver (SRV, or any name with dns_server set)."""
        kinds = {source.kind for source in self.sources}
        return "srv" in kinds or (bool(self.dns_server) and "dns" in kinds)

    async def _addresses(self, host: str, port: int) -> list[str]:
        if self.dns_server and self._dns is not None:
            return await dnsquery.addresses(self._dns, host, self.dns_family)
        return await self.resolve(host, port, self.dns_family)

    async def _lookup(self, source: Source) -> list[Address]:
        if source.kind == "srv":
            return await self._srv_members(source.name)
        assert source.address is not None
        addr = source.address
        return [
            Address(ip, addr.port, addr.weight)
            for ip in await self._addresses(addr.host, addr.port)
        ]

    async def _srv_members(self, name: str) -> list[Address]:
        """Members from the lowest priority group of SRV records having a target that resolves;
        at most MAX_MEMBERS records are read and MAX_MEMBERS + 1 addresses kept."""
        assert self._dns is not None
        records = (await dnsquery.srv_records(self._dns, name))[:MAX_MEMBERS]
        if not records:
            raise OSError("no SRV records")
        gate = asyncio.Semaphore(SRV_LOOKUPS)

        async def lookup(target: str) -> list[str]:
            async with gate:
                try:
                    return await self._addresses(target, 0)
                except OSError:
                    return []  # a target that does not resolve adds no member

        for priority in sorted({r.priority for r in records}):
            group = [r for r in records if r.priority == priority and r.target not in ("", ".")]
            targets = sorted({r.target for r in group})
            found = dict(zip(targets, await asyncio.gather(*map(lookup, targets)), strict=True))
            out: list[Address] = []
            for record in group:
                for ip in found[record.target][: MAX_MEMBERS + 1 - len(out)]:
                    out.append(Address(ip, record.port, srv_weight(record.weight)))
            if out:
                return out
        raise OSError("no target of the SRV records resolves")

    async def _resolve_once(self, source: Source, was_ok: bool | None) -> bool:
        label = source_label(source)
        try:
            async with asyncio.timeout(self.timeout):
                members = await self._lookup(source)
            if not members:
                raise OSError("no addresses")
        except (OSError, TimeoutError) as exc:
            self.count(source.kind, "error")
            if was_ok is not False:
                kept = len(self.cluster._by_source.get(label, []))
                self.log.warning(
                    "cannot resolve %s: %s; keeping the last good answer (%d members)",
                    label,
                    str(exc) or "timeout",
                    kept,
                    extra={"listener": self.cluster.name, "source": label},
                )
            return False
        self.count(source.kind, "success")
        if len(members) <= MAX_MEMBERS:
            self.truncated.discard(label)
        else:
            if label not in self.truncated:  # once, not at every re-resolution
                self.truncated.add(label)
                self.log.warning(
                    "%s resolves to %s addresses: only the first %d are members",
                    label,
                    len(members) if source.kind == "dns" else f"more than {MAX_MEMBERS}",
                    MAX_MEMBERS,
                    extra={"listener": self.cluster.name, "source": label},
                )
            members = members[:MAX_MEMBERS]
        if self.cluster.set_source(label, members):
            self.log.info(
                "%s now resolves to %s",
                label,
                ", ".join(_shown(source, a) for a in members),
                extra={"listener": self.cluster.name},
            )
        return True

    async def _file_loop(self, source: Source) -> None:
        stamp = _stat(source.path)
        while True:
            await asyncio.sleep(self.file_interval)
            now = _stat(source.path)
            if now != stamp:
                stamp = now
                self._read_file(source, stamp)

    def _read_file(self, source: Source, stamp: object) -> None:
        label = source_label(source)
        try:
            addresses = read_member_file(source.path)
        except ValueError as exc:
            self.count("file", "error")
            self.log.error(
                "member file %s refused, keeping the previous members: %s",
                source.path,
                exc,
                extra={"listener": self.cluster.name},
            )
            return
        self.count("file", "success")
        if self.cluster.set_source(label, addresses):
            self.log.info(
                "member file %s loaded: %d members",
                source.path,
                len(addresses),
                extra={"listener": self.cluster.name},
            )


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a ConfigMap swaps its `..data` link
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _shown(source: Source, addr: Address) -> str:
    if source.kind == "dns":
        return addr.host
    return f"{addr.key}*{addr.weight}"
