"""Keeping a burst of failed connections from holding memory after it.

Two things kept a flood of failing TLS handshakes resident long after its connections were gone
(each handshake holds the loop's 256 KiB TLS read buffer and OpenSSL's state):
- an exception caught from an awaited task carries a traceback through the frames it passed,
  and the task that raised it is still a local of one of those frames: a reference cycle that
  only the cyclic collector frees, and a full collection runs rarely. `forget` cuts it;
- freed, the buffers leave glibc's heap fragmented: free but resident, and each later burst
  lands in new holes, so RSS crept up burst after burst. `AfterBursts` gives the free pages
  back (malloc_trim) once a burst is over."""

from __future__ import annotations

import asyncio
import logging
from typing import Any


def forget(exc: BaseException) -> None:
    """Drop the tracebacks of `exc` and of the exceptions chained to it (caught and counted:
    nothing reads them again), so what their frames held is freed by reference counting."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += (e.__cause__, e.__context__)


_trim: Any = None  # glibc's malloc_trim, loaded at the first trim (ctypes costs 0.4 MiB)


def trim() -> bool:
    """malloc_trim(0): free heap pages back to the system. False where libc is not glibc."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim is False:
        return False
    _trim(0)
    return True


class AfterBursts:
    """Trims after a burst: once `burst` connections have ended since the last trim, a second
    later, and then every second until those in progress have fallen to a quarter of their
    peak (the loop frees a closed transport's buffers on a later turn). Steady traffic keeps
    its memory in use and costs one trim per `burst` connections at most."""

    def __init__(self, log: logging.Logger, burst: int = 256) -> None:
        self.log, self.burst = log, burst
        self.busy = self.peak = self.ended = 0
        self.pending = False

    def started(self) -> None:
        self.busy += 1
        if self.busy > self.peak:
            self.peak = self.busy

    def done(self) -> None:
        self.busy -= 1
        self.ended += 1
        if self.ended >= self.burst and not self.pending:
            self.pending = True
            asyncio.get_running_loop().call_later(1.0, self._after)

    def _after(self) -> None:
        if self.busy > self.peak // 4:
            asyncio.get_running_loop().call_later(1.0, self._after)
            return
        self.pending, self.ended, self.peak = False, 0, self.busy
        if trim():
            self.log.debug("gave freed memory back after a burst of connections")
