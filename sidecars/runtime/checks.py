"""Start-time checks of settings against this machine: a value that parses but can never work
(a listen address not on this machine or on a port we may not bind, a file that is not there)
is a configuration error. Each returns what is wrong, or None."""

from __future__ import annotations

import errno
import os
import socket
import stat


def host_bytes(host: str) -> str | bytes:
    """An ASCII host as the bytes the resolver takes: what the idna codec would give it, without
    loading that codec (and unicodedata, 0.15 MiB of memory) for a name that does not need it."""
    return host.encode() if host.isascii() else host


def local_address(value: tuple[str, int]) -> str | None:
    """An address to listen on must be one of this machine's, on a port we may bind: the host
    resolves, and a bind does not fail with EADDRNOTAVAIL or EACCES (a privileged port without
    CAP_NET_BIND_SERVICE). A port in use is not refused: it may come free."""
    host, port = value
    try:
        infos = socket.getaddrinfo(
            host_bytes(host), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            return None  # the resolver is down for now: the bind fails (exit 1) and is retried
        return f"expected a host name or address of this machine ({exc.strerror})"
    missing = None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EACCES:
                    return f"expected a port this process may listen on ({exc.strerror})"
                if exc.errno != errno.EADDRNOTAVAIL:
                    return None  # in use, or not a question of the setting
                missing = exc.strerror
                continue
        return None  # like asyncio's servers: one family that binds is enough
    return f"expected an address of this machine ({missing})"


def readable_file(path: str) -> str | None:
    """An optional file setting, when set, must be a regular file we can read (never blocks:
    a FIFO is refused, not opened for a read that waits for a writer)."""
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return f"expected a readable file ({exc.strerror})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "expected a readable file (not a regular file)"
    finally:
        os.close(fd)
    return None
