"""tcp mode: each client connection is relayed to one member, bytes both ways, half-close kept."""

from __future__ import annotations

import asyncio
from typing import cast

from sidecars.ambassador import splice
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import Member

HIGH_WATER = 256 * 1024  # bytes buffered toward a slow side before the other side is paused
LOW_WATER = 64 * 1024
SPLICE_AFTER = 512 * 1024  # a connection that relayed this much moves to splice(2)


class _Upstream(asyncio.Protocol):
    """The member side of a relay: forwards to the client transport."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        relay.nbytes += len(data)
        relay.client.write(data)
        if relay.nbytes >= SPLICE_AFTER:
            relay.to_splice()

    def eof_received(self) -> bool:
        return self.relay.eof(from_client=False)

    def pause_writing(self) -> None:
        self.relay.client.pause_reading()

    def resume_writing(self) -> None:
        self.relay.client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(exc, from_client=False)


class Relay(asyncio.Protocol):
    """The client side of a relay; it connects to a member, retrying others on failure."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.client: asyncio.Transport = None  # type: ignore[assignment]
        self.up: asyncio.Transport | None = None
        self.member: Member | None = None
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.eofs = 0
        self.early: list[bytes] = []
        self.held = 0
        self.paused = False
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self.splicer: splice.Splicer | None = None
        self.timed_out = False
        self.no_splice = not splice.AVAILABLE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self.client = cast(asyncio.Transport, transport)
        if not self.listener.admit(self):
            self.client.abort()
            self.closed = True
            return
        self.client.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.task = self.listener.loop.create_task(self._connect())

    def _connect_timed_out(self) -> None:
        if self.task is not None and not self.task.done():
            self.timed_out = True
            self.task.cancel()

    def _key(self) -> bytes:
        if self.listener.cluster.balancer.policy != "hash":
            return b""
        peer = self.client.get_extra_info("peername")
        return str(peer[0]).encode() if peer else b""

    async def _connect(self) -> None:
        listener, cluster = self.listener, self.listener.cluster
        settings = listener.settings
        key = self._key()
        tried: list[Member] = []
        loop = listener.loop
        cluster.budget.record_request()
        for attempt in range(settings.retries + 1):
            if attempt and not cluster.budget.try_spend():
                break
            member = cluster.pick(key, tried)
            if member is None:
                break
            if attempt:
                cluster.retries += 1
            tried.append(member)
            member.requests += 1
            started = loop.time()
            # a timer handle rather than asyncio.timeout(): this runs once per connection
            timer = loop.call_later(settings.connect_timeout, self._connect_timed_out)
            failure = ""
            try:
                up, _ = await loop.create_connection(
                    lambda: _Upstream(self), member.host, member.port
                )
            except asyncio.CancelledError:
                if not self.timed_out or self.task is None:
                    raise
                self.timed_out = False
                self.task.uncancel()
                failure = "timeout"
            except OSError:
                failure = "connect"
            finally:
                timer.cancel()
            if failure:
                if cluster.failed(member, failure):
                    listener.log.warning(
                        "member %s ejected after failures",
                        member.key,
                        extra={"listener": listener.name, "member": member.key},
                    )
                continue
            listener.latency.observe(loop.time() - started)
            member.record_success()
            if self.closed:  # the client left while we were connecting
                up.close()
                return
            member.active += 1
            self.member, self.up = member, up
            up.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
            if self.early:
                up.write(b"".join(self.early))
                self.early.clear()
                if self.paused:
                    self.paused = False
                    self.client.resume_reading()
            if self.eofs:  # the client half-closed before we were connected
                self.eofs = 0
                self.eof(from_client=True)
            return
        listener.metrics.rejected.labels(listener.name, "no_member").inc()
        self.client.abort()

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        if self.up is None:
            # Not connected yet: hold what the client sends (reading stops once a relay
            # buffer's worth is held) until the member is connected.
            self.early.append(data)
            self.held += len(data)
            if self.held >= HIGH_WATER and not self.paused:
                self.paused = True
                self.client.pause_reading()
            return
        self.up.write(data)
        if self.nbytes >= SPLICE_AFTER:
            self.to_splice()

    def to_splice(self) -> None:
        """Move a bulk connection to splice(2) once nothing is buffered in either transport
        (so bytes cannot overtake each other) and neither side has half-closed."""
        up, client = self.up, self.client
        if (
            self.splicer is not None
            or self.no_splice
            or not splice.AVAILABLE
            or up is None
            or self.eofs
            or self.closed
            or up.get_write_buffer_size()
            or client.get_write_buffer_size()
        ):
            return
        client.pause_reading()
        up.pause_reading()
        try:
            self.splicer = splice.Splicer(
                self.listener.loop,
                client.get_extra_info("socket").fileno(),
                up.get_extra_info("socket").fileno(),
                self._moved,
                self._spliced,
            )
        except OSError:  # no descriptors left for pipes: this connection stays as it is
            self.no_splice = True
            client.resume_reading()
            up.resume_reading()
            return
        self.listener.metrics.spliced.labels(self.listener.name).inc()
        self.splicer.start()

    def _moved(self, n: int) -> None:
        self.nbytes += n

    def _spliced(self, exc: OSError | None, upstream: bool) -> None:
        if exc is not None and upstream and self.member is not None:
            self.member.errors["reset"] += 1
        self._close(exc)

    def eof_received(self) -> bool:
        return self.eof(from_client=True)

    def eof(self, from_client: bool) -> bool:
        """Pass a half-close on; once both sides have finished, close the pair."""
        other = self.up if from_client else self.client
        self.eofs += 1
        if other is None:
            return True  # not connected yet: passed on once the member answers
        if self.eofs >= 2 or not other.can_write_eof():
            self._close(None)
            return False
        other.write_eof()
        return True  # keep our writing side open: the other side may still answer

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost(exc, from_client=True)

    def lost(self, exc: Exception | None, from_client: bool) -> None:
        if not from_client and exc is not None and self.member is not None:
            self.member.errors["reset"] += 1
        self._close(exc)

    def _close(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.splicer is not None:
            self.splicer.close()
        for transport in (self.client, self.up):
            if transport is not None:
                # close() flushes what is buffered; after an error there is nobody to flush to
                transport.abort() if exc is not None else transport.close()
        if self.member is not None:
            self.member.active -= 1
        self.listener.release(self)

    def abort(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._close(ConnectionAbortedError())

    def busy(self) -> bool:
        return True

    def watch_idle(self) -> bool:
        return True


class TcpListener(Listener):
    """A tcp mode listener."""

    loop: asyncio.AbstractEventLoop

    async def _serve(self) -> asyncio.Server:
        host, port = self.settings.listen
        self.loop = loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: Relay(self), host, port, reuse_address=True, backlog=1024
        )
