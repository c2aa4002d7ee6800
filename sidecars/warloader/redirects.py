"""Where a redirect may lead: never from a server elsewhere to this pod's own loopback or to a
link-local address (a cloud's metadata service at 169.254.169.254 hands out credentials)."""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from sidecars.runtime import resolver
from sidecars.warloader.errors import SourceError
from sidecars.warloader.sources import display

if TYPE_CHECKING:
    import aiohttp

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def kind(ip: _Address) -> str:
    """'loopback', 'link-local', 'unspecified' or '' (anything else)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    return ""


async def kinds(host: str) -> set[str]:
    """The kinds of every address `host` (a name or an IP literal) stands for."""
    try:
        return {kind(ipaddress.ip_address(host.strip("[]")))}
    except ValueError:
        pass
    try:
        infos = await resolver.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return set()  # the connection will fail and say so
    return {kind(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos}


async def check(origin: str, target: str) -> None:
    """Refuse a redirect from a source on `origin` (host) to `target` (URL) that reaches a
    loopback, link-local or unspecified address the source itself is not on."""
    from yarl import URL

    host = URL(target).host or ""
    mine = await kinds(origin)
    for k in await kinds(host) - mine - {""}:
        raise SourceError(
            f"redirected to {display(target)[:200]}, a {k} address: refused (the source "
            f"is not on one)"
        )


def guard() -> aiohttp.TraceConfig:
    """A trace config that checks every redirect before aiohttp follows it; pass the source
    URL as `trace_request_ctx`."""
    import aiohttp
    from yarl import URL

    async def on_redirect(_: Any, ctx: Any, params: aiohttp.TraceRequestRedirectParams) -> None:
        headers = params.response.headers
        location = headers.get("Location") or headers.get("URI")
        if not location:
            return
        try:
            target = params.url.join(URL(location))
        except ValueError:
            return  # aiohttp refuses it itself
        if target.scheme in ("http", "https"):
            await check(URL(ctx.trace_request_ctx).host or "", str(target))

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_redirect)
    return trace
