"""Bulk tcp relaying with splice(2): bytes go socket → pipe → socket inside the kernel."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from collections.abc import Callable

AVAILABLE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
PIPE_SIZE = 256 * 1024  # per direction; pipes exist only on connections that move bulk data
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


class _Way:
    """One direction: read from `src` into a pipe, write from the pipe to `dst`."""

    def __init__(self, owner: Splicer, src: int, dst: int, dst_sock: socket.socket) -> None:
        self.owner, self.src, self.dst, self.dst_sock = owner, src, dst, dst_sock
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # over the user's pipe budget: the default size still works
        try:
            self.size = fcntl.fcntl(self.w, fcntl.F_GETPIPE_SZ)
        except OSError:
            os.close(self.r)
            os.close(self.w)
            raise
        self.held = 0  # bytes in the pipe
        self.eof = self.done = self.waiting = False

    def start(self) -> None:
        self.owner.loop.add_reader(self.src, self.readable)

    def readable(self) -> None:
        try:
            n = os.splice(self.src, self.w, self.size - self.held, flags=_FLAGS)
        except BlockingIOError:
            return
        except OSError as exc:
            self.owner.failed(exc, self.src)
            return
        if n:
            self.held += n
            self.owner.moved(n)
        else:
            self.eof = True
            self.owner.loop.remove_reader(self.src)
        self.flush()

    def flush(self) -> None:
        loop = self.owner.loop
        while self.held:
            try:
                self.held -= os.splice(self.r, self.dst, self.held, flags=_FLAGS)
            except BlockingIOError:
                if not self.waiting:  # the receiver is slow: stop reading until it catches up
                    self.waiting = True
                    loop.remove_reader(self.src)
                    loop.add_writer(self.dst, self.flush)
                return
            except OSError as exc:
                self.owner.failed(exc, self.dst)
                return
        if self.waiting:
            self.waiting = False
            loop.remove_writer(self.dst)
            if not self.eof:
                loop.add_reader(self.src, self.readable)
        if self.eof and not self.done:
            self.done = True
            try:
                self.dst_sock.shutdown(socket.SHUT_WR)  # pass the half-close on
            except OSError:
                pass
            self.owner.half_closed()

    def close(self) -> None:
        loop = self.owner.loop
        loop.remove_reader(self.src)
        loop.remove_writer(self.dst)
        os.close(self.r)
        os.close(self.w)


class Splicer:
    """Both directions of a relay between two connected sockets (given by fd; they are
    duplicated, so the caller keeps and later closes its own). `on_end(exc, upstream)` is called
    once, when both directions have finished (exc None) or when one failed (upstream: the
    member's socket did)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_fd: int,
        up_fd: int,
        moved: Callable[[int], None],
        on_end: Callable[[OSError | None, bool], None],
    ) -> None:
        self.loop, self.moved, self.on_end = loop, moved, on_end
        self.socks: list[socket.socket] = []
        self.ways: list[_Way] = []
        self.ended = False
        try:  # out of descriptors: whatever was made is closed and the caller keeps relaying
            for fd in (client_fd, up_fd):
                self.socks.append(socket.socket(fileno=os.dup(fd)))
            c, u = self.client_fd, self.up_fd = self.socks[0].fileno(), self.socks[1].fileno()
            self.ways.append(_Way(self, c, u, self.socks[1]))
            self.ways.append(_Way(self, u, c, self.socks[0]))
        except OSError:
            self.close()
            raise

    def start(self) -> None:
        for way in self.ways:
            way.start()

    def half_closed(self) -> None:
        if all(w.done for w in self.ways):
            self._end(None, False)

    def failed(self, exc: OSError, fd: int) -> None:
        self._end(exc, fd == self.up_fd)

    def _end(self, exc: OSError | None, upstream: bool) -> None:
        if not self.ended:
            self.close()
            self.on_end(exc, upstream)

    def close(self) -> None:
        """Stop relaying and close the pipes and the duplicated sockets."""
        for way in self.ways:
            way.close()
        self.ways = []
        for s in self.socks:
            s.close()
        self.ended = True
