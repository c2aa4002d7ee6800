"""Receive a response body from the connection straight into a few reused buffers."""

from __future__ import annotations

import asyncio
import collections

from sidecars.warloader.copier import HashingSink, Progress

BUFFER = 2 << 20
_BUFFERS = 3
_Inflight = tuple[list[asyncio.Future[None]], bytearray | None]


class BodyReceiver(asyncio.BufferedProtocol):
    """Takes over a connection after the response headers: the event loop receives into our
    buffers (recv_into, no bytes object per read), a full buffer goes to the consumer, and
    reading pauses while every buffer is taken. Never reads past `expected` bytes."""

    def __init__(
        self, transport: asyncio.Transport, expected: int, idle: float | None, progress: Progress
    ) -> None:
        self.transport = transport
        self.progress = progress
        self.remaining = expected
        self.idle = idle
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.free = [bytearray(BUFFER) for _ in range(_BUFFERS - 1)]
        self.buf: bytearray | None = bytearray(BUFFER)
        self.fill = 0
        self.ready: collections.deque[tuple[bytearray, int]] = collections.deque()
        self.ended = False  # every byte arrived, or the connection is gone
        self.lost = False
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.owner: asyncio.BaseProtocol | None = None

    # --- event loop callbacks --------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.buf is None:  # every buffer taken, yet the loop reads once more
            self.buf, self.fill = bytearray(BUFFER), 0
        end = min(len(self.buf), self.fill + self.remaining)
        if end == self.fill:  # bytes beyond the announced length: read and dropped
            return memoryview(bytearray(1 << 16))
        return memoryview(self.buf)[self.fill : end]

    def buffer_updated(self, nbytes: int) -> None:
        if self.remaining == 0 or self.buf is None:
            return
        self.fill += nbytes
        self.remaining -= nbytes
        self.progress.done += nbytes
        self.last = self.loop.time()
        if self.remaining == 0:
            self.hand_off()
            self._end()
        elif self.fill == len(self.buf):
            self.hand_off()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.hand_off()
        self._end()
        if self.owner is not None:  # the client owning the connection cleans up after it
            self.owner.connection_lost(exc)

    def hand_off(self) -> None:
        """Queue the buffer being filled for the consumer (if it holds anything)."""
        if self.buf is None or self.fill == 0:
            return
        self.ready.append((self.buf, self.fill))
        self.buf, self.fill = (self.free.pop() if self.free else None), 0
        if self.buf is None:
            self._pause()
        self._wake()

    def _end(self) -> None:
        self.ended = True
        self._pause()
        self._wake()

    def _pause(self) -> None:
        if not self.paused and not self.lost:
            self.paused = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # --- consumer side ---------------------------------------------------------------------

    def give_back(self, buf: bytearray) -> None:
        """A handed-off buffer was written and hashed: fill it again."""
        if self.buf is None:
            self.buf, self.fill = buf, 0
        else:
            self.free.append(buf)
        if self.paused and not self.ended:
            self.paused = False
            self.last = self.loop.time()  # the pause was ours, not the server's
            self.transport.resume_reading()

    async def wait(self) -> None:
        """Until a buffer is ready or the body ended; TimeoutError after `idle` seconds
        without a byte (what arrived before is handed off first)."""
        while not self.ready and not self.ended:
            left = None if self.idle is None else self.last + self.idle - self.loop.time()
            if left is not None and left <= 0:
                self.hand_off()
                raise TimeoutError
            self.waiter = self.loop.create_future()
            try:
                await asyncio.wait([self.waiter], timeout=left)
            finally:
                self.waiter = None


async def receive(
    transport: asyncio.Transport,
    owner: asyncio.BaseProtocol,
    expected: int,
    sink: HashingSink,
    idle: float | None,
    first: list[bytes],
) -> None:
    """Write `first` (body bytes received already), then receive the next `expected` body
    bytes on `transport` into `sink`: one thread writes a buffer while another hashes it and
    the loop fills the next. Returns short if the connection ends first; raises TimeoutError
    after `idle` seconds without a byte. What arrived is written either way. Afterwards
    `owner` has the transport back (to close it: the connection is not reusable). The
    transport changes hands before this coroutine first yields: no byte goes elsewhere."""
    if expected <= 0 or transport.is_closing():
        if first:
            await settle(dispatch(sink, first))
        return
    rx = BodyReceiver(transport, expected, idle, sink.progress)
    rx.owner = owner
    transport.set_protocol(rx)
    transport.resume_reading()
    inflight: _Inflight | None = (dispatch(sink, first), None) if first else None
    try:
        while True:
            if not rx.ready:
                if rx.ended:
                    break
                try:
                    await rx.wait()
                except TimeoutError:
                    await _drain(rx, sink, inflight)
                    inflight = None
                    raise
                continue
            buf, n = rx.ready.popleft()
            if inflight is not None:
                await settle(inflight[0])
                if inflight[1] is not None:
                    rx.give_back(inflight[1])
            inflight = (dispatch(sink, [memoryview(buf)[:n]]), buf)
        if inflight is not None:
            await settle(inflight[0])
            inflight = None
    except BaseException:
        if inflight is not None:
            await settle(inflight[0], quietly=True)
        raise
    finally:
        rx.owner = None
        if not rx.lost:
            transport.set_protocol(owner)


async def _drain(rx: BodyReceiver, sink: HashingSink, inflight: _Inflight | None) -> None:
    if inflight is not None:
        await settle(inflight[0])
    while rx.ready:
        buf, n = rx.ready.popleft()
        await settle(dispatch(sink, [memoryview(buf)[:n]]))


def dispatch(
    sink: HashingSink, batch: list[bytes] | list[memoryview]
) -> list[asyncio.Future[None]]:
    """Write `batch` in one thread and hash it in another."""
    return [
        asyncio.ensure_future(asyncio.to_thread(sink.write, batch)),
        asyncio.ensure_future(asyncio.to_thread(sink.digest, batch)),
    ]


async def settle(pending: list[asyncio.Future[None]], quietly: bool = False) -> None:
    """Wait until both threads are done with the batch in flight (cancelling the wait does not
    stop them); then re-raise a failure of theirs unless `quietly`."""
    if not pending:
        return
    try:
        await asyncio.wait(pending)
    except asyncio.CancelledError:
        await asyncio.wait(pending)  # they may still be using the file
        raise
    for p in pending:
        if quietly:
            p.exception()
        else:
            p.result()
