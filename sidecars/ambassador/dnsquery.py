"""DNS queries made by the ambassador itself (SRV records, and A/AAAA when a nameserver is set):
dnspython's asyncio resolver, bounded in time by its lifetime and in count by the caller.
dnspython is imported by the first resolver made: a listener that never queries DNS itself
(static members, names left to the system resolver) does not carry its 3.5 MiB of memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecars.runtime.settings import host_port

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.exception

_TYPES = {"any": ("A", "AAAA"), "ipv4": ("A",), "ipv6": ("AAAA",)}


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # without the trailing dot; "" when the record says "no service here"


def make_resolver(server: str, timeout: float) -> dns.asyncresolver.Resolver:
    """The system's resolver configuration, or only `server` (ip:port) when one is given."""
    import dns.asyncresolver

    if not server:
        resolver = dns.asyncresolver.Resolver()
    else:
        host, port = host_port()(server)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    resolver.cache = None
    return resolver


async def srv_records(resolver: dns.asyncresolver.Resolver, name: str) -> list[SrvRecord]:
    """The SRV records of `name`; OSError naming the failure (NXDOMAIN, no answer, timeout)."""
    import dns.exception
    import dns.rdatatype

    try:
        answer = await resolver.resolve(name, "SRV", search=True)
    except dns.exception.DNSException as exc:
        raise OSError(_why(exc)) from None
    return [
        SrvRecord(rr.priority, rr.weight, rr.port, rr.target.to_text(omit_final_dot=True))
        for rr in answer
        if rr.rdtype == dns.rdatatype.SRV
    ]


async def addresses(resolver: dns.asyncresolver.Resolver, name: str, family: str) -> list[str]:
    """The A and/or AAAA addresses of `name` (sorted, deduplicated); OSError when none."""
    import dns.exception
    import dns.resolver

    found: set[str] = set()
    why = "no addresses"
    for rdtype in _TYPES[family]:
        try:
            answer = await resolver.resolve(name, rdtype, search=True)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN) as exc:
            why = _why(exc)
            continue
        except dns.exception.DNSException as exc:
            raise OSError(_why(exc)) from None
        found.update(rr.to_text() for rr in answer)
    if not found:
        raise OSError(why)
    return sorted(found)


def _why(exc: dns.exception.DNSException) -> str:
    import dns.exception
    import dns.resolver

    if isinstance(exc, dns.resolver.NXDOMAIN):
        return "no such name (NXDOMAIN)"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "no records of that type"
    if isinstance(exc, dns.exception.Timeout):
        return "timeout"
    return str(exc).split("\n", 1)[0][:200] or type(exc).__name__
