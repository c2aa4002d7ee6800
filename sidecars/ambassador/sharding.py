"""What the key-sharding modes (redis, memcached) share: one pipelined connection per shard
carrying every client's commands, replies handed back to each client in its request order,
split commands gathered, twemproxy's ketama placement, and the passive ejection of a shard
that fails. A mode brings its wire format: the client's command reader, the shard's reply
reader and the form of an error reply."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol, cast

from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.ketama import Continuum, KeyHash, hash_tagged, server_name
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import Member
from sidecars.ambassador.metrics import Metrics
from sidecars.runtime import listening, resolver
from sidecars.runtime.tasks import spawn

MAX_QUEUED = 1024  # commands awaiting replies per client before its reading pauses
TIMEOUT_SCAN = 0.1  # seconds between checks for shards that stopped answering


class ReplyReader(Protocol):
    def feed(self, data: bytes) -> list[bytes]:
        """The raw bytes of every complete reply now buffered; ValueError on a broken one."""
        ...


class Slot:
    """One reply owed to a client, in its place in the client's queue (no client: a reply
    nobody waits for, as to memcached's noreply)."""

    __slots__ = ("client", "reply", "sent")

    def __init__(self, client: ShardedClient | None, reply: bytes | None = None) -> None:
        self.client, self.reply, self.sent = client, reply, 0.0

    def fill(self, raw: bytes) -> ShardedClient | None:
        self.reply = raw
        return self.client


class Gather:
    """The reply of a split command: its parts merged once all have come."""

    __slots__ = ("slot", "parts", "waiting", "merge")

    def __init__(self, slot: Slot, n: int, merge: Callable[[list[bytes]], bytes]) -> None:
        self.slot, self.parts, self.waiting, self.merge = slot, [b""] * n, n, merge


class Part(Slot):
    """One shard's share of a split command."""

    __slots__ = ("gather", "index")

    def __init__(self, gather: Gather, index: int) -> None:
        super().__init__(gather.slot.client)
        self.gather, self.index = gather, index

    def fill(self, raw: bytes) -> ShardedClient | None:
        gather = self.gather
        gather.parts[self.index] = raw
        gather.waiting -= 1
        if gather.waiting:
            return None
        return gather.slot.fill(gather.merge(gather.parts))


class Shard(asyncio.Protocol):
    """The listener's one connection to a member: commands of every client pipelined on it,
    each reply handed to the oldest slot waiting."""

    def __init__(
        self, listener: ShardedListener, member: Member, table: dict[str, Shard] | None = None
    ) -> None:
        self.listener, self.member = listener, member
        self.table = listener.shards if table is None else table  # where the listener keeps it
        self.transport: asyncio.Transport | None = None
        self.pending: deque[Slot] = deque()
        # deque methods taken once: compiled, a call of each looked up by name costs 150 more
        self.owe, self.next_owed = self.pending.append, self.pending.popleft
        self.out: list[bytes] = []
        self.reader = listener.reply_reader()
        self.progress = 0.0  # loop time of the last reply or of sending to an idle shard
        self.dead = False
        self.task = listener.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self.listener.settings.connect_timeout):
                await resolver.connect(lambda: self, self.member.host, self.member.port)
        except TimeoutError:
            self.fail("timeout", "connect timed out")
        except OSError as exc:
            self.fail("connect", exc.strerror or "connect failed")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport
        if self.dead:
            transport.abort()
            return
        self.transport = transport
        if self.out:
            transport.write(b"".join(self.out))
            self.out.clear()

    def queue(self, data: bytes, slot: Slot) -> None:
        """Send `data` with the end of this loop turn, its reply for `slot` (the turn's clocks:
        a read began it)."""
        listener = self.listener
        if not self.pending:
            self.progress = listener.now
        self.owe(slot)
        slot.sent = listener.stamp
        self.out.append(data)
        self.member.requests += 1
        self.member.active += 1

    def flush(self) -> None:
        if self.dead:
            self.out.clear()
        elif self.transport is not None and self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def data_received(self, data: bytes) -> None:
        try:
            replies = self.reader.feed(data)
        except ValueError as exc:
            self.fail("protocol", f"bad reply: {exc}")
            return
        if not replies:
            return
        listener = self.listener
        listener.turn()
        pending, next_owed, touched = self.pending, self.next_owed, listener.answered
        now = listener.stamp
        latency = listener.latency
        member = self.member
        extra = len(replies) - len(pending)
        if extra > 0:
            replies = replies[:-extra]
        last: ShardedClient | None = None
        sent, times = 0.0, 0  # a run of replies to commands sent in one turn: observed at once
        for raw in replies:  # methods called on their objects: compiled, direct calls
            slot = next_owed()
            if slot.sent != sent:
                if times:
                    latency.observe(now - sent, times)
                sent, times = slot.sent, 0
            times += 1
            if type(slot) is Slot:
                slot.reply = raw
                client = slot.client
            else:
                client = slot.fill(raw)
            if client is not last and client is not None:
                touched.add(client)
                last = client
        if times:
            latency.observe(now - sent, times)
        member.active -= len(replies)
        member.failures_in_row = 0
        self.progress = listener.now
        if extra > 0:
            self.fail("protocol", "a reply to no command")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.dead:  # a shard closing an idle connection is not a failure
            self.fail("reset" if self.pending else "", "connection lost")

    def fail(self, kind: str, why: str) -> None:
        """Drop this connection: every command waiting on it gets an error reply."""
        if self.dead:
            return
        self.dead = True
        listener, member = self.listener, self.member
        if self.table.get(member.key) is self:
            del self.table[member.key]
        if self.transport is not None:
            self.transport.abort()
        self.task.cancel()
        member.active -= len(self.pending)
        reply = listener.error(f"ambassador: shard {member.key}: {why}")
        touched = set()
        while self.pending:
            client = self.pending.popleft().fill(reply)
            if client is not None:
                touched.add(client)
        for client in touched:
            client.flush()
        if kind and listener.cluster.failed(member, kind):
            listener.log.warning(
                "shard %s ejected after failures",
                member.key,
                extra={"listener": listener.name, "member": member.key},
            )

    def close(self) -> None:
        self.fail("", "closed")


def _unconnected(data: bytes) -> None:
    """A client's write before its transport comes: never called (flush checks first)."""


class ShardedClient(asyncio.Protocol):
    """One app connection: commands read and routed by `read`, replies written in order."""

    def __init__(self, listener: ShardedListener) -> None:
        self.listener = listener
        self.queue: deque[Slot] = deque()
        self.owe, self.next_owed = self.queue.append, self.queue.popleft  # as Shard's
        self.transport: asyncio.Transport | None = None
        self.write: Callable[[bytes], object] = _unconnected  # the transport's, looked up once
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.seen = 0.0
        self.closing = self.closed = self.paused = self.blocked = False

    def read(self, data: bytes) -> None:
        """Route every command complete in the stream now; a broken stream queues its error
        reply and sets `closing`. The listener's `now` and `stamp` hold this turn's clocks."""
        raise NotImplementedError

    def reject(self, reply: bytes) -> None:
        """Answer `reply` after the replies owed, then close: the stream cannot be read on."""
        listener = self.listener
        self.queue.append(Slot(self, reply))
        self.closing = True
        listener.metrics.rejected.labels(listener.name, "protocol").inc()

    def forward(self, key: bytes, data: bytes) -> None:
        """The common command: `data` to the shard of `key`, its reply owed in turn."""
        listener = self.listener
        target = listener.route(key, None, listener.now)
        if isinstance(target, bytes):  # narrows: compiled, a direct call to Shard.queue below
            self.queue.append(Slot(self, target))
            return
        slot = Slot(self)
        self.owe(slot)
        target.queue(data, slot)
        listener.dirty.add(target)

    def send(self, shard: Shard, data: bytes, slot: Slot) -> None:
        shard.queue(data, slot)
        self.listener.dirty.add(shard)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.write = self.transport.write
        self.seen = self.listener.loop.time()
        if not self.listener.admit(self):
            self.closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.nbytes += len(data)
        listener = self.listener
        listener.turn()
        self.seen = listener.now
        self.read(data)
        queue = self.queue
        if self.closing or (queue and queue[0].reply is not None):  # answered here, or quit
            self.flush()
        if len(self.queue) >= MAX_QUEUED and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def flush(self) -> None:
        """Write every reply at the head of the queue that has come."""
        queue, transport = self.queue, self.transport
        if self.closed or transport is None:
            return
        # (no `queue[0].reply is None` test: mypy would take the value as known after it, and
        # mypyc would check that type on the next head read past a popleft)
        first = queue[0].reply if queue else None
        if first is not None:
            self.next_owed()
            reply = queue[0].reply if queue else None
            if reply is None:  # the common case: one reply, no list
                self.write(first)
            else:
                out = [first]
                while reply is not None:
                    out.append(reply)
                    self.next_owed()
                    reply = queue[0].reply if queue else None
                self.write(b"".join(out))
        if self.closing and not queue:
            self.closed = True
            transport.close()
            self.listener.release(self)
        elif self.paused and not self.blocked and len(queue) < MAX_QUEUED // 2:
            self.paused = False
            transport.resume_reading()

    def pause_writing(self) -> None:
        self.blocked = True
        if not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.blocked = False
        self.flush()

    def eof_received(self) -> bool:
        self.closing = True
        self.flush()
        return True  # the replies still owed are written before closing

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.queue.clear()
        self.listener.release(self)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.listener.release(self)

    def busy(self) -> bool:
        return bool(self.queue)

    def watch_idle(self) -> bool:
        return True

    def idle_since(self) -> float | None:
        return None if self.queue else self.seen


class ShardedListener(Listener):
    """Shards keys over the cluster's members; one pipelined connection per member."""

    client: type[ShardedClient] = ShardedClient

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        super().__init__(name, settings, cluster, metrics, log)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.shards: dict[str, Shard] = {}
        self.tables = [self.shards]  # a mode may keep more (redis: RESP3 connections apart)
        self.dirty: set[Shard] = set()  # shards with commands to send this loop turn
        self.answered: set[ShardedClient] = set()  # clients with replies come this loop turn
        self.turning = False  # a read came in this loop turn: its end is scheduled
        self.now = 0.0  # the loop's time of this turn
        self.stamp = 0.0  # perf_counter at this turn's first read: sent and answered times
        self._rings: dict[tuple[Any, ...], tuple[Continuum, list[Member]]] = {}
        self._order: list[Member] | None = None  # the member list the full ring is of
        self._full = Continuum([])
        self._placed: list[Shard | None] = []  # by index in `_order`: the connection last used
        self._tag = settings.redis_hash_tag.encode()
        self._hash = KeyHash()
        self._timeouts: asyncio.Task[None] | None = None
        cluster.on_change = self._members_changed

    def reply_reader(self) -> ReplyReader:
        raise NotImplementedError

    def error(self, message: str) -> bytes:
        """The mode's error reply carrying `message`."""
        raise NotImplementedError

    def reconfigure(self, settings: Config) -> None:
        super().reconfigure(settings)
        self._rings.clear()
        self._order = None
        self._tag = settings.redis_hash_tag.encode()

    def turn(self) -> None:
        """Called by every read. The first of a loop turn reads the clocks, which every read of
        the turn then shares (two clock reads a turn, not a command), and schedules the end
        of the turn: what the turn's reads queued is written then, one write per connection."""
        if not self.turning:
            self.turning = True
            self.now = self.loop.time()
            self.stamp = perf_counter()
            self.loop.call_soon(self.end_turn)

    def end_turn(self) -> None:
        self.turning = False
        if self.dirty:
            for shard in self.dirty:
                shard.flush()
            self.dirty.clear()
        if self.answered:
            answered, self.answered = self.answered, set()
            for client in answered:
                client.flush()

    def _members_changed(self, cluster: Cluster) -> None:
        self._rings.clear()
        self._order = None
        for table in self.tables:
            for key in [k for k in table if k not in cluster.members]:
                table[key].close()

    async def _serve(self) -> listening.Servers:
        host, port = self.settings.listen
        self.loop = asyncio.get_running_loop()
        return await listening.serve(lambda: self.client(self), host, port, backlog=1024)

    async def start(self) -> None:
        await super().start()
        self._timeouts = spawn(f"reply timeouts of listener {self.name}", self._watch_timeouts())

    async def close(self) -> None:
        if self._timeouts is not None:
            self._timeouts.cancel()
            await asyncio.gather(self._timeouts, return_exceptions=True)
        for table in self.tables:
            for shard in list(table.values()):
                shard.close()
        await super().close()

    async def _watch_timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_SCAN)
            now, limit = self.loop.time(), self.settings.request_timeout
            for table in self.tables:
                for shard in list(table.values()):
                    if shard.pending and now - shard.progress > limit:
                        shard.fail("timeout", f"no reply within {limit:g}s")

    def _ring(self, members: list[Member]) -> tuple[Continuum, list[Member]]:
        key = tuple(id(m) for m in members)
        found = self._rings.get(key)
        if found is None:
            if len(self._rings) > 64:
                self._rings.clear()
            servers = [(server_name(m.host, m.port), m.weight) for m in members]
            found = self._rings[key] = (Continuum(servers), members)
        return found

    def connect(self, member: Member, table: dict[str, Shard]) -> Shard:
        """A new connection to `member`, kept in `table`."""
        return Shard(self, member, table)

    def route(
        self, key: bytes, table: dict[str, Shard] | None = None, now: float = 0.0
    ) -> Shard | bytes:
        """The shard for a key (its connection kept in `table`, by default `shards`), or the
        error reply when it cannot be served now (`now`: the loop's time, read when 0)."""
        tag = self._tag
        if tag and tag[0] in key:
            key = hash_tagged(key, tag)
        hashed = self._hash.of(key)
        members = self.cluster.order
        if members is not self._order:  # a new list whenever membership or a weight changes
            self._full = Continuum([(server_name(m.host, m.port), m.weight) for m in members])
            self._order = members
            self._placed = [None] * len(members)
        index = self._full.owner(hashed)
        if index < 0:
            return self.error("ambassador: no shards")
        member = members[index]
        if not now:
            now = self.loop.time()
        if member.healthy and member.ejected_until <= now:
            if table is None:  # the common case: the connection found last time, still up
                shard = self._placed[index]
                if shard is not None and not shard.dead:
                    return shard
        elif not self.settings.redis_rehash:
            state = "down" if not member.healthy else "ejected"
            return self.error(f"ambassador: shard {member.key} is {state}")
        else:
            live = [m for m in self.cluster.order if m.available(now)]
            if not live:
                return self.error("ambassador: every shard is down")
            ring, live = self._ring(live)
            member = live[ring.owner(hashed)]
        shards = self.shards if table is None else table
        shard = shards.get(member.key)
        if shard is None:
            shard = shards[member.key] = self.connect(member, shards)
        if shards is self.shards and member is members[index]:
            self._placed[index] = shard
        return shard

    def every_shard(self, table: dict[str, Shard] | None = None) -> list[Shard] | bytes:
        """Every shard, for a command each must run (loading a script), or the error reply
        when one is out (with rehash, the live ones: one that comes back lacks what was
        sent meanwhile, as it lacks the keys)."""
        now, shards = self.loop.time(), self.shards if table is None else table
        out = []
        for member in self.cluster.order:
            if not member.available(now):
                if self.settings.redis_rehash:
                    continue
                state = "down" if not member.healthy else "ejected"
                return self.error(f"ambassador: shard {member.key} is {state}")
            shard = shards.get(member.key)
            if shard is None:
                shard = shards[member.key] = self.connect(member, shards)
            out.append(shard)
        return out or self.error("ambassador: every shard is down")
