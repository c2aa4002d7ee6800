"""Member discovery: static lists, DNS re-resolved keeping the last good answer, watched files."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.spec import MAX_MEMBERS, Address, Source, read_member_file

Resolver = Callable[[str, int, str], Awaitable[list[str]]]
Counter = Callable[[str, str], None]  # (kind, outcome) -> count one discovery event

_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


async def system_resolve(name: str, port: int, family: str) -> list[str]:
    """Every address the system resolver returns for `name` (sorted, deduplicated)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        name, port, family=_FAMILIES[family], type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return sorted({str(info[4][0]) for info in infos})


def source_label(source: Source) -> str:
    if source.kind == "file":
        return f"file://{source.path}"
    assert source.address is not None
    return ("dns://" if source.kind == "dns" else "") + source.address.key


class Discovery:
    """Feeds a cluster from its sources until cancelled."""

    def __init__(
        self,
        cluster: Cluster,
        sources: Sequence[Source],
        *,
        dns_interval: float,
        dns_family: str,
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
        self.truncated: set[str] = set()  # DNS sources answering more than MAX_MEMBERS

    async def prime(self) -> None:
        """One pass over every source, so a listener starts with members when it can."""
        for source in self.sources:
            if source.kind == "static":
                assert source.address is not None
                self.cluster.set_source(source_label(source), [source.address])
            elif source.kind == "dns":
                await self._resolve_once(source, None)
            else:
                self._read_file(source, None)

    async def run(self) -> None:
        """Keep the dynamic sources fresh (after `prime`)."""
        async with asyncio.TaskGroup() as tg:
            for source in self.sources:
                if source.kind == "dns":
                    tg.create_task(self._dns_loop(source))
                elif source.kind == "file":
                    tg.create_task(self._file_loop(source))

    async def _dns_loop(self, source: Source) -> None:
        ok: bool | None = True
        while True:
            await asyncio.sleep(self.dns_interval)
            ok = await self._resolve_once(source, ok)

    async def _resolve_once(self, source: Source, was_ok: bool | None) -> bool:
        assert source.address is not None
        addr, label = source.address, source_label(source)
        try:
            async with asyncio.timeout(self.timeout):
                ips = await self.resolve(addr.host, addr.port, self.dns_family)
            if not ips:
                raise OSError("no addresses")
        except (OSError, TimeoutError) as exc:
            self.count("dns", "error")
            if was_ok is not False:
                kept = len(self.cluster._by_source.get(label, []))
                self.log.warning(
                    "cannot resolve %s: %s; keeping the last good answer (%d members)",
                    label,
                    exc or "timeout",
                    kept,
                    extra={"listener": self.cluster.name, "source": label},
                )
            return False
        self.count("dns", "success")
        if len(ips) <= MAX_MEMBERS:
            self.truncated.discard(label)
        else:
            if label not in self.truncated:  # once, not at every re-resolution
                self.truncated.add(label)
                self.log.warning(
                    "%s resolves to %d addresses: only the first %d are members",
                    label,
                    len(ips),
                    MAX_MEMBERS,
                    extra={"listener": self.cluster.name, "source": label},
                )
            ips = ips[:MAX_MEMBERS]
        if self.cluster.set_source(label, [Address(ip, addr.port, addr.weight) for ip in ips]):
            self.log.info(
                "%s now resolves to %s",
                label,
                ", ".join(ips),
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
