"""Receive a plain-TCP body straight into the file with splice(2), hashing what landed."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import select
import threading
import time

from sidecars.warloader.copier import Aborted, HashingSink, ReadBack

PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_POLL_SLICE = 0.25  # how often a wait for bytes looks whether the load was aborted
# the connection is gone: return short, like a closed connection (a retry resumes)
_GONE = (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH)


def splice_socket(transport: asyncio.Transport) -> int | None:
    """The descriptor of a plain TCP connection whose bytes we may move ourselves; None for
    TLS (the kernel holds ciphertext) or where splice(2) is missing."""
    if not hasattr(os, "splice") or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


def splice_body(
    sock: int, expected: int, sink: HashingSink, idle: float | None, stop: threading.Event
) -> None:
    """Move the next `expected` body bytes from `sock` into the sink's file in the kernel
    (socket -> pipe -> file: they never enter user space on the way in) while a helper thread
    hashes what has landed, read back from the page cache, into the sink's running digest.
    Returns short if the connection ends first; raises TimeoutError after `idle` seconds
    without a byte, and Aborted when the load (or, by `stop`, this attempt) is called off,
    within a poll slice however the server drips. What arrived is in the file and
    counted in `sink.size` either way. Runs in a worker thread; the event loop must not read
    the socket meanwhile (its transport paused)."""
    reader = ReadBack(sink.fd, sink.hasher, sink.size)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default (64 KiB) works, in more steps
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLRDHUP)
        remaining, last = expected, time.monotonic()
        while remaining > 0:
            if stop.is_set():
                raise Aborted(sink.progress.label)
            try:
                n = os.splice(sock, w, min(PIPE_SIZE, remaining), flags=_NONBLOCK)
            except BlockingIOError:
                left = None if idle is None else last + idle - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError from None
                wait = _POLL_SLICE if left is None else min(left, _POLL_SLICE)
                poller.poll(wait * 1000)
                sink.progress.add(0)  # raises Aborted once the load is called off
                continue
            except OSError as exc:
                if exc.errno in _GONE:
                    return
                raise
            if n == 0:  # the server closed the connection
                return
            moved = 0
            while moved < n:
                moved += os.splice(r, sink.fd, n - moved)
            remaining -= n
            last = time.monotonic()
            sink.size += n
            sink.writeback.wrote(n)
            reader.advance(n)
            sink.progress.add(n)
    finally:
        os.close(r)
        os.close(w)
        try:
            reader.finish()
        finally:
            reader.stop()


_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2) | getattr(os, "SPLICE_F_MOVE", 1)
