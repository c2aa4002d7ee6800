"""Accept failures for lack of descriptors or memory: pause accepting, count, log sparingly.

A listening socket stays readable while its queue holds connections, so retrying accept(2) at
once after EMFILE spins a core and logs in a loop until clients leave. Instead accepting pauses
for a growing time (up to 1 s) and resumes by itself; the queued clients wait in the kernel."""

from __future__ import annotations

import errno
import logging
import time

from sidecars.runtime import Backoff
from sidecars.runtime.metrics import Counter

# errno -> metric label; any other accept error pauses too, as "other"
REASONS = {
    errno.EMFILE: "emfile",
    errno.ENFILE: "enfile",
    errno.ENOBUFS: "enobufs",
    errno.ENOMEM: "enomem",
}
SHORTAGE = frozenset(REASONS)  # errors that are this process's, not a peer's
# Failures of the one connection being accepted (reset while queued): simply take the next one.
PASSING = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR))
PAUSE_FIRST, PAUSE_MAX = 0.01, 1.0  # seconds
LOG_EVERY = 10.0  # seconds: at most one line per listener this often, with a count


class AcceptErrors:
    """One listener's accept failures: how long to pause, the counter, the sparse log."""

    def __init__(self, listener: str, counter: Counter, log: logging.Logger) -> None:
        self.listener, self.counter, self.log = listener, counter, log
        self.backoff = Backoff(PAUSE_FIRST, PAUSE_MAX)
        self.unlogged = 0
        self.logged_at = -LOG_EVERY

    def failed(self, exc: OSError) -> float:
        """Count and maybe log a failure; the seconds to pause accepting for."""
        reason = REASONS.get(exc.errno or 0, "other")
        self.counter.labels(self.listener, reason).inc()
        self.unlogged += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY:
            self.log.warning(
                "accept failed on listener %s: %s (%d times since the last report); "
                "accepting pauses, clients wait in the queue",
                self.listener,
                exc.strerror or exc,
                self.unlogged,
                extra={"listener": self.listener, "reason": reason},
            )
            self.logged_at, self.unlogged = now, 0
        # the full jitter of Backoff keeps the mean pause at half the step, never below 1 ms
        return max(0.001, self.backoff.next_delay())

    def recovered(self) -> None:
        self.backoff.reset()
