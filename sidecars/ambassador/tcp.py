"""tcp mode: each client connection is relayed to one member, bytes both ways, half-close kept."""

from __future__ import annotations

import _socket
import asyncio
import errno
import logging
import os
import select
import socket
import sys
import time
from typing import Final

from sidecars.ambassador import splice
from sidecars.ambassador.accepting import PASSING, AcceptErrors
from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.deadlines import Deadlines
from sidecars.ambassador.hub import Handler, Hub
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import Member
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.tlsrelay import TlsRelay
from sidecars.ambassador.waiting import Waiting
from sidecars.runtime import listening, resolver

# Final: mypyc makes these constants of the compiled module instead of a lookup in the module's
# dict at each use (dozens per connection on the relay path).
HIGH_WATER: Final = 256 * 1024  # bytes held toward a slow side before the other side is not read
SPLICE_AFTER: Final = 512 * 1024  # a connection that relayed this much moves to splice(2)
CHUNK: Final = 64 * 1024  # largest single read
ACCEPT_BATCH: Final = 64  # connections accepted per wake-up at most

_ERR: Final = select.EPOLLERR | select.EPOLLHUP
_IN: Final = select.EPOLLIN
_OUT: Final = select.EPOLLOUT
_RDHUP: Final = select.EPOLLRDHUP
_NB: Final = int(socket.MSG_DONTWAIT)  # every call is non-blocking: no fcntl per accepted socket
_STREAM: Final = int(socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
_PLAIN: Final = int(socket.SOCK_STREAM)  # plain ints: no enum member to convert per call
_TCP: Final = socket.IPPROTO_TCP
_NODELAY: Final = socket.TCP_NODELAY
_SHUT_WR: Final = int(socket.SHUT_WR)
_CONNECTING: Final = (0, errno.EINPROGRESS)  # connect_ex results of a connect under way
# Relayed sockets are plain _socket.socket objects: socket.socket's Python-level wrappers (its
# __init__, the enum conversions of accept()) cost more per connection than the system calls.
Sock = _socket.socket
_SOCKET: Final = _socket.socket  # (a constant: `Sock(...)` is a lookup in the module's names)
# Compiled, `sock.recv_into(...)` looks the name up in the socket's type at every call: the hot
# calls take the methods' descriptors, looked up once (the same functions, the socket passed).
_RECV_INTO: Final = Sock.recv_into
_SEND: Final = Sock.send
_CLOSE: Final = Sock.close
_ACCEPT: Final = Sock._accept  # type: ignore[attr-defined]
_SHUTDOWN: Final = Sock.shutdown
_SETSOCKOPT: Final = Sock.setsockopt
_CONNECT_EX: Final = Sock.connect_ex
_FILENO: Final = Sock.fileno
_GETSOCKOPT: Final = Sock.getsockopt
# Linux: the tcp_info of a listening socket counts in `tcpi_unacked` (bytes 24-27) the
# connections ready for accept(), so a batch stops there, without the failed accept (EAGAIN)
# and the exception it raises (several times the cost of the accept itself).
_TCP_INFO: Final = int(getattr(socket, "TCP_INFO", 0)) if sys.platform == "linux" else 0
_NO_SPLICE: Final = not splice.AVAILABLE
_CLOCK: Final = time.perf_counter  # a constant: no lookup in the module's names per call
# One read buffer for every relay: a read is written or copied before the next one (a fresh
# 64 KiB bytes object per read, shrunk afterwards, costs more than the copy of what is held).
_SCRATCH: Final = bytearray(CHUNK)
_VIEW: Final = memoryview(_SCRATCH)
# The views of its first n bytes for small reads, made once each (a slice per read costs more
# than the read's own bookkeeping): at most SMALL of them, about 200 bytes each.
SMALL: Final = 4096
_SMALL_VIEWS: Final[list[memoryview | None]] = [None] * (SMALL + 1)


class _Way:
    """One direction of a relay: bytes read from `src`, written to `dst`."""

    __slots__ = ("src", "dst", "buf", "readable", "rdhup", "eof", "shut", "ready")

    def __init__(self, src: Sock | None, dst: Sock | None) -> None:
        self.src, self.dst = src, dst
        self.buf = bytearray()  # read but not yet written
        self.readable = False  # an edge came and `src` was not read empty since
        self.rdhup = False  # `src`'s peer has sent its FIN
        self.eof = False  # everything `src` will send has been read
        self.shut = False  # the end of stream was passed on to `dst`
        self.ready = dst is not None  # `dst` is connected


class Relay(Handler):
    """A client connection and its member connection, relayed without transports: both
    sockets are driven by edge-triggered events of the listener's hub."""

    __slots__ = (
        "listener", "client", "cfd", "ufd", "up", "member", "connected", "peer", "tried", "attempt",
        "task", "started", "dialed", "nbytes", "idle_marks", "last_nbytes", "c2u", "u2c",
        "closed", "splicer", "no_splice", "seen", "queued",
    )  # fmt: skip

    def __init__(self, listener: TcpListener, client: Sock, cfd: int, peer: object) -> None:
        self.listener, self.client, self.peer = listener, client, peer
        self.cfd = cfd  # the descriptors, kept: fileno() is a method call
        self.ufd = -1
        self.up: Sock | None = None
        self.member: Member | None = None
        self.connected = self.closed = self.queued = False  # queued: in listener.waiting
        # the members that failed it: a retry is rare, no list (nor tuple) made per connection
        self.tried: tuple[Member, ...] = ()
        self.attempt = 0
        self.task: asyncio.Task[None] | None = None
        self.started = 0.0  # the loop's clock (the connect deadline)
        self.dialed = 0.0  # perf_counter() (latency: the loop's clock may have 1 ms steps)
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.c2u, self.u2c = _Way(client, None), _Way(None, client)
        self.splicer: splice.Splicer | None = None
        self.no_splice = _NO_SPLICE
        self.seen = listener.hub.now  # the last event on either socket

    # --- choosing and connecting a member

    def _key(self) -> bytes:
        return str(self.peer[0]).encode() if isinstance(self.peer, tuple) else b""

    def connect_next(self) -> None:
        """Connect to the next member to try; at the per-member limit wait for a member to
        free up (listener.waiting); cut the client when none is left."""
        listener, cluster = self.listener, self.listener.cluster
        if not self.attempt:
            cluster.budget.record_request()
        while self.attempt <= listener.retries and not self.closed:
            if self.attempt and not cluster.budget.try_spend():
                break
            hashed = cluster.balancer.policy == "hash"
            member = cluster.pick(self._key() if hashed else b"", self.tried)
            if member is None:
                if cluster.member_limit and cluster.full:
                    cluster.waits += 1
                    deadline = listener.loop.time() + listener.connect_timeout
                    listener.waiting.add(self, deadline)
                    self.queued = True
                    return
                break
            if self.attempt:
                cluster.retries += 1
            if self._start(member):
                return
        if not self.closed:
            listener.metrics.rejected.labels(listener.name, "no_member").inc()
            self._close(ConnectionRefusedError())

    def resume(self) -> bool:
        """Waiting for a member under its limit: True once it has one or waits no more."""
        if self.closed:
            return True
        listener = self.listener
        cluster = listener.cluster
        hashed = cluster.balancer.policy == "hash"
        member = cluster.pick(self._key() if hashed else b"", self.tried)
        if member is None and cluster.member_limit and cluster.full:
            return False
        self.queued = False
        listener.hub.now = listener.loop.time()  # (the waiting poll: not in a dispatch)
        if member is None:
            listener.metrics.rejected.labels(listener.name, "no_member").inc()
            self._close(ConnectionRefusedError())
        elif not self._start(member):
            self.connect_next()
        return True

    def expire(self) -> None:
        """No member freed a slot within the connect timeout."""
        self.queued = False
        if not self.closed:
            self.listener.cluster.at_limit += 1
            self.listener.metrics.rejected.labels(self.listener.name, "no_member").inc()
            self._close(ConnectionRefusedError())

    def _start(self, member: Member) -> bool:
        """Start connecting to `member`; False (the failure counted) when it failed at once."""
        listener = self.listener
        self.attempt += 1
        member.requests += 1
        member.active += 1  # from the connect on: a connecting one counts toward its limit
        # the hub's clock of this dispatch (paths from outside a dispatch refresh it first)
        self.member, self.started = member, listener.hub.now
        self.dialed = _CLOCK()
        listener.dialing.add(self, self.started + listener.connect_timeout)
        address = listener.address(member)
        if address is None:  # a name: resolved by the loop, as a task
            self.task = listener.loop.create_task(self._resolve_then_dial(member))
            return True
        return self._dial(address[0], address[1])

    async def _resolve_then_dial(self, member: Member) -> None:
        try:
            infos = await resolver.getaddrinfo(member.host, member.port, type=socket.SOCK_STREAM)
        except OSError:
            infos = []
        self.task = None
        if self.closed:
            return
        self.listener.hub.now = self.listener.loop.time()  # (a task: not in a dispatch)
        if not infos:
            self._failed_connect("connect")
        elif not self._dial(infos[0][0], infos[0][4]):
            self.connect_next()

    def _dial(self, family: int, sockaddr: tuple[object, ...]) -> bool:
        """Start a non-blocking connect; False (the failure counted) when it failed at once."""
        try:
            up = _SOCKET(family, _STREAM)
        except OSError as exc:  # out of descriptors here: not the member's fault
            self.listener.metrics.rejected.labels(self.listener.name, "no_descriptors").inc()
            if self.member is not None:
                self.member.active -= 1
            self.member = None
            self._close(exc)
            return True
        _SETSOCKOPT(up, _TCP, _NODELAY, 1)
        err = _CONNECT_EX(up, sockaddr)
        if err not in _CONNECTING:
            _CLOSE(up)
            self._count_failure("connect")
            return False
        self.up = self.c2u.dst = self.u2c.src = up
        self.ufd = ufd = _FILENO(up)
        self.listener.hub.add(ufd, self)
        return True

    def connect_timed_out(self) -> None:
        listener = self.listener
        listener.hub.now = listener.loop.time()  # (the sweep: not in a dispatch)
        self._failed_connect("timeout")

    def _failed_connect(self, kind: str) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._drop_up()
        self._count_failure(kind)
        self.connect_next()

    def _drop_up(self) -> None:
        self.listener.dialing.discard(self)
        if self.up is not None:
            self.listener.hub.forget(self.ufd)
            self.up.close()
            self.up = self.c2u.dst = self.u2c.src = None

    def _count_failure(self, kind: str) -> None:
        member, listener = self.member, self.listener
        self.member = None
        if member is not None:
            member.active -= 1
            self.tried += (member,)  # not picked again for this connection
        if member is not None and listener.cluster.failed(member, kind):
            listener.log.warning(
                "member %s ejected after failures",
                member.key,
                extra={"listener": listener.name, "member": member.key},
            )

    # --- relaying

    def on_event(self, fd: int, events: int) -> None:
        if fd == self.cfd:
            self.on_client(events)
        else:
            self.on_up(events)

    def on_client(self, events: int) -> None:
        self.seen = self.listener.hub.now
        if events & _RDHUP:
            self.c2u.rdhup = True
        if events & (_IN | _ERR):
            self.c2u.readable = True
        if not self.connected:
            # Not read before the member is connected (then straight into its socket). A client
            # that failed (reset) meanwhile ends the relay at once: bytes it sent first would
            # hide the error from a read, and its member connect or wait would last until the
            # connect timeout.
            if events & _ERR:
                self._close(ConnectionResetError())
            return
        if events & _OUT and self.u2c.buf:
            self._pump(self.u2c)
        c2u = self.c2u
        if c2u.readable and not self.closed:
            if self.splicer is None:
                self._pump(c2u)

    def on_up(self, events: int) -> None:
        self.seen = self.listener.hub.now
        if not self.connected:
            if events & _ERR:
                self._failed_connect("connect")
                return
            if not events & _OUT:
                return
            listener, member = self.listener, self.member
            assert member is not None
            listener.dialing.discard(self)
            listener.latency.observe(_CLOCK() - self.dialed)
            member.record_success()
            self.connected = self.c2u.ready = True
        if events & _RDHUP:
            self.u2c.rdhup = True
        if events & (_IN | _ERR):
            self.u2c.readable = True
        if events & _OUT and (self.c2u.buf or self.c2u.eof or self.c2u.readable):
            self._pump(self.c2u)
        if self.u2c.readable and not self.closed and self.splicer is None:
            self._pump(self.u2c)

    def _pump(self, way: _Way) -> None:
        """Write what is held, then read and write until `src` is empty or too much is held."""
        buf = way.buf
        if buf and way.ready and not self._send(way, buf):
            return
        while way.readable and len(buf) < HIGH_WATER:
            want = HIGH_WATER - len(buf)  # never more than HIGH_WATER held
            if want > CHUNK:  # (not min(): a builtin call costs more than the compare)
                want = CHUNK
            try:
                n = _RECV_INTO(way.src, _SCRATCH, want, _NB)  # type: ignore[arg-type]
            except BlockingIOError:
                way.readable = False
                break
            except OSError as exc:
                self._fail(exc, way.src is self.up)
                return
            if not n:
                way.readable, way.eof = False, True
                break
            # held (copied) or written before the next read reuses the buffer
            if n <= SMALL:
                data = _SMALL_VIEWS[n]
                if data is None:
                    data = _SMALL_VIEWS[n] = _VIEW[:n]
            else:
                data = _VIEW[:n]
            self.nbytes += n
            if buf or not way.ready:
                buf += data
            elif not self._send(way, data):
                return
            elif not buf and self.nbytes >= SPLICE_AFTER and self._to_splice():
                return  # written whole: the moment nothing may be held
            if n < want:
                # A short read emptied the socket: the next bytes come with a new edge. After
                # the peer's FIN (seen in the same or an earlier event) nothing more will come.
                way.readable, way.eof = False, way.rdhup
                break
        if way.eof and not buf and way.ready and not way.shut:
            self._pass_eof(way)
        elif self.nbytes >= SPLICE_AFTER:
            self._to_splice()

    def _send(self, way: _Way, data: bytearray | memoryview) -> bool:
        """Write `data` to `dst`, holding what does not fit; False when the relay ended."""
        try:
            n = _SEND(way.dst, data, _NB)  # type: ignore[arg-type]
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self._fail(exc, way.dst is self.up)
            return False
        if data is way.buf:
            del way.buf[:n]
        elif n < len(data):
            way.buf += data[n:]  # a view: copied once, into the buffer
        return True

    def _pass_eof(self, way: _Way) -> None:
        """Pass a half-close on; once both sides have finished, close the pair."""
        way.shut = True
        other = self.u2c if way is self.c2u else self.c2u
        if other.shut:
            self._close(None)
            return
        try:
            _SHUTDOWN(way.dst, _SHUT_WR)  # type: ignore[arg-type]
        except OSError as exc:
            self._fail(exc, way.dst is self.up)

    def _to_splice(self) -> bool:
        """Move a bulk connection to splice(2) once nothing is held either way (so bytes
        cannot overtake each other) and neither side has half-closed; True when moved."""
        c2u, u2c, up = self.c2u, self.u2c, self.up
        if (
            self.splicer is not None
            or self.no_splice
            or up is None
            or not self.connected
            or self.closed
            or c2u.buf
            or u2c.buf
            or c2u.eof
            or u2c.eof
        ):
            return False
        hub, client = self.listener.hub, self.client
        hub.remove(client.fileno())
        hub.remove(up.fileno())
        try:
            client.setblocking(False)  # splice(2) must not block on the socket either
            self.splicer = splice.Splicer(
                self.listener.loop, client.fileno(), up.fileno(), self._moved, self._spliced
            )
        except OSError:  # no descriptors left for pipes: this connection stays as it is
            self.no_splice = True
            hub.add(client.fileno(), self)  # adding reports what is ready now
            hub.add(up.fileno(), self)
            return False
        self.listener.metrics.spliced.labels(self.listener.name).inc()
        self.splicer.start()
        return True

    def _moved(self, n: int) -> None:
        self.nbytes += n

    def _spliced(self, exc: OSError | None, upstream: bool) -> None:
        if exc is not None and upstream and self.member is not None:
            self.member.errors["reset"] += 1
        self._close(exc)

    def _fail(self, exc: OSError, upstream: bool) -> None:
        if upstream and self.member is not None:
            self.member.errors["reset"] += 1
        self._close(exc)

    def _close(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.splicer is not None:
            self.splicer.close()
        if not self.connected:
            self.listener.dialing.discard(self)
            if self.queued:
                self.queued = False
                self.listener.waiting.discard(self)
        if self.task is not None:
            self.task.cancel()
        hub, client, up = self.listener.hub, self.client, self.up
        hub.forget(self.cfd)
        _CLOSE(client)
        if up is not None:
            hub.forget(self.ufd)
            _CLOSE(up)
        if self.member is not None:  # counted from its connect on
            self.member.active -= 1
        self.listener.release(self)

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self._close(ConnectionAbortedError())

    def busy(self) -> bool:
        return True

    def watch_idle(self) -> bool:
        return True

    def idle_since(self) -> float | None:
        # connecting, bytes held toward a slow side, or spliced (the pipes may hold bytes): busy
        if not self.connected or self.c2u.buf or self.u2c.buf or self.splicer is not None:
            return None
        return self.seen


class _Acceptor(Handler):
    """The listening sockets of a tcp listener, in its hub. An accept that fails for lack of
    descriptors or memory takes the socket out of the hub for a while (see accepting.py)."""

    def __init__(self, listener: TcpListener, socks: list[socket.socket]) -> None:
        self.listener, self.socks = listener, socks
        self.by_fd = {sock.fileno(): (sock, int(sock.family)) for sock in socks}
        self.errors = AcceptErrors(listener.name, listener.metrics.accept_errors, listener.log)
        self.paused: dict[int, asyncio.TimerHandle] = {}
        self.recovering = False
        for sock in socks:
            self._watch(sock)

    def _watch(self, sock: socket.socket) -> None:
        self.listener.hub.add(sock.fileno(), self, select.EPOLLIN)

    def on_event(self, fd: int, events: int) -> None:
        found = self.by_fd.get(fd)
        if found is not None:
            lsock, family = found
            self._accept(lsock, family)

    def _accept(self, lsock: socket.socket, family: int) -> None:
        listener = self.listener
        batch = ACCEPT_BATCH
        if _TCP_INFO:
            try:
                info: bytes = _GETSOCKOPT(lsock, _TCP, _TCP_INFO, 28)
            except OSError:
                info = b""
            if len(info) == 28:
                queued = info[24] | info[25] << 8 | info[26] << 16
                # none counted: accept until EAGAIN as without the count (never a spin on
                # an event the count does not explain)
                if 0 < queued < batch:
                    batch = queued
        for _ in range(batch):
            try:
                accepted: tuple[int, object] = _ACCEPT(lsock)  # typed: unpacked without iterating
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in PASSING:
                    continue
                self._pause(lsock, exc)
                return
            fd, peer = accepted
            if self.recovering:
                self.recovering = False
                self.errors.recovered()
            if listener.tls is not None or listener.term is not None:
                self._accept_tls(fd, family, peer)
                continue
            try:  # a blocking socket: every call on it passes MSG_DONTWAIT
                client = _SOCKET(family, _PLAIN, 0, fd)
            except OSError:
                os.close(fd)
                continue
            relay = Relay(listener, client, fd, peer)
            if not listener.admit(relay):
                relay.closed = True
                client.close()
                continue
            listener.hub.add(fd, relay)
            relay.connect_next()

    def _accept_tls(self, fd: int, family: int, peer: object) -> None:
        listener = self.listener
        try:
            client = socket.socket(family, socket.SOCK_STREAM, 0, fd)
        except OSError:
            os.close(fd)
            return
        hashed = listener.cluster.balancer.policy == "hash" and isinstance(peer, tuple)
        key = str(peer[0]).encode() if hashed else b""  # type: ignore[index]
        relay = TlsRelay(listener, client, key, listener.tls, listener.term)
        if not listener.admit(relay):
            client.close()
            return
        relay.start()

    def _pause(self, lsock: socket.socket, exc: OSError) -> None:
        fd = lsock.fileno()
        self.listener.hub.remove(fd)
        delay = self.errors.failed(exc)
        self.paused[fd] = self.listener.loop.call_later(delay, self._resume, lsock)

    def _resume(self, lsock: socket.socket) -> None:
        self.paused.pop(lsock.fileno(), None)
        self.recovering = True
        if lsock in self.socks:
            self._watch(lsock)  # level-triggered: a waiting client is reported at once

    def close(self) -> None:
        for timer in self.paused.values():
            timer.cancel()
        self.paused.clear()
        for sock in self.socks:
            self.listener.hub.forget(sock.fileno())
            sock.close()
        self.socks = []
        self.by_fd.clear()


class TcpListener(Listener):
    """A tcp mode listener."""

    loop: asyncio.AbstractEventLoop
    hub: Hub

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        super().__init__(name, settings, cluster, metrics, log)
        self._hot(settings)

    def _hot(self, settings: Config) -> None:
        """The settings every connection reads, kept as this compiled class's own attributes:
        each read of the frozen settings object is a Python attribute lookup."""
        self.retries = settings.retries
        self.connect_timeout = settings.connect_timeout

    def reconfigure(self, settings: Config) -> None:
        super().reconfigure(settings)
        self._hot(settings)

    async def _serve(self) -> _Acceptor:
        host, port = self.settings.listen
        self.loop = loop = asyncio.get_running_loop()
        # TCP_NODELAY: accepted sockets inherit it, set once here rather than per connection
        socks = await listening.bound(host, port, 1024, nodelay=True)
        self.hub = Hub(loop)
        self.dialing: Deadlines[Relay] = Deadlines(
            lambda: self.settings.connect_timeout, Relay.connect_timed_out
        )
        self.dialing.start(f"connect timeouts of listener {self.name}")
        self.waiting = Waiting()  # connections waiting for a member under its limit
        # by member (hashed by identity: no tuple made, hashed and compared per connection)
        self.addresses: dict[Member, tuple[int, tuple[object, ...]] | None] = {}
        return _Acceptor(self, socks)

    def address(self, member: Member) -> tuple[int, tuple[object, ...]] | None:
        """(family, socket address) of an IP literal member, None for a name."""
        addresses = self.addresses
        if member in addresses:
            return addresses[member]
        if len(addresses) > 4096:  # members come and go with DNS: stay bounded
            addresses.clear()
        found = addresses[member] = _literal(member.host, member.port)
        return found

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "hub"):
            self.hub.close()
            await self.dialing.close()
            await self.waiting.close()


def _literal(host: str, port: int) -> tuple[int, tuple[object, ...]] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family, (host, port)
    return None
