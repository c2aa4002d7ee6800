"""One epoll set of a listener's own, watched by the event loop: sockets without transports."""

from __future__ import annotations

import asyncio
import contextlib
import select

# Relayed sockets are registered once, edge-triggered, for reads, writes and the peer's FIN, and
# leave the set when they are closed: no interest changes and no removal calls per connection.
EDGE = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
BATCH = 256  # events taken per wake-up; more stay ready for the next one


class Handler:
    """What the hub hands a socket's events to. A class rather than a callback: compiled, the
    call is a native method call, with no bound method made per socket and no arguments boxed
    per event."""

    __slots__ = ()

    def on_event(self, fd: int, events: int) -> None:
        raise NotImplementedError


class Hub:
    """Dispatches the events of its sockets to their handlers (with the descriptor and mask)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        # bound once: no method lookup per socket or wake-up
        self._register, self._poll = self.epoll.register, self.epoll.poll
        # by descriptor, a list rather than a dict: an index costs a fraction of a hashed
        # lookup, insertion or deletion (three per socket); descriptors are the lowest free
        # numbers, so it is as long as the most descriptors open at once
        self.handlers: list[Handler | None] = []
        self.dead: set[int] = set()  # closed during this dispatch: their fds may be reused
        self.now = loop.time()  # loop time of the current dispatch: one clock read per batch
        loop.add_reader(self.epoll.fileno(), self._ready)

    def add(self, fd: int, handler: Handler, events: int = EDGE) -> None:
        handlers = self.handlers
        size = len(handlers)
        if fd >= size:
            handlers.extend([None] * (max(fd + 1, 2 * size) - size))
        handlers[fd] = handler
        self._register(fd, events)

    def forget(self, fd: int) -> None:
        """Before closing `fd`: the close itself takes it out of the set."""
        handlers = self.handlers
        if fd < len(handlers) and handlers[fd] is not None:
            handlers[fd] = None
            self.dead.add(fd)

    def remove(self, fd: int) -> None:
        """Take a socket that stays open out of the set."""
        self.forget(fd)
        with contextlib.suppress(OSError):
            self.epoll.unregister(fd)

    def _ready(self) -> None:
        dead, handlers = self.dead, self.handlers
        dead.clear()
        self.now = self.loop.time()
        for fd, events in self._poll(0, BATCH):
            if dead and fd in dead:  # an event of a socket closed earlier in this batch
                continue
            handler = handlers[fd] if fd < len(handlers) else None
            if handler is None:
                continue
            try:
                handler.on_event(fd, events)
            except Exception as exc:  # one broken connection must not starve the others
                self.loop.call_exception_handler(
                    {"message": "ambassador: socket handler failed", "exception": exc}
                )

    def close(self) -> None:
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()
        self.handlers.clear()
