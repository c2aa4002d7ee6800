"""Listening sockets bound here rather than by the event loop, whose create_server resolves the
host in a thread pool that then lives as long as the process (see resolver.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from sidecars.runtime import resolver
from sidecars.runtime.checks import host_bytes

_STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK


async def bound(host: str, port: int, backlog: int, nodelay: bool = False) -> list[socket.socket]:
    """A listening socket for each address of `host` (SO_REUSEADDR; an IPv6 one takes only
    IPv6, beside the IPv4 one). `nodelay`: TCP_NODELAY, which accepted sockets inherit."""
    infos = await resolver.getaddrinfo(
        host_bytes(host), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    socks: list[socket.socket] = []
    try:
        for family, _, _, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, _STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(addr)
            sock.listen(backlog)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class Servers:
    """The loop's servers of one address (one per socket), closed together."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self.servers = servers

    def close(self) -> None:
        for server in self.servers:
            server.close()


async def serve(
    factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, backlog: int
) -> Servers:
    """loop.create_server on sockets bound by `bound`."""
    loop = asyncio.get_running_loop()
    socks = await bound(host, port, backlog)
    servers: list[asyncio.Server] = []
    try:
        for sock in socks:
            servers.append(await loop.create_server(factory, sock=sock, backlog=backlog))
    except BaseException:
        for server in servers:
            server.close()
        for sock in socks[len(servers) :]:
            sock.close()
        raise
    return Servers(servers)
