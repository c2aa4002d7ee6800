"""redis mode: the app talks to one Redis; each command goes to the shard owning its key
(twemproxy's ketama with md5 and hash tags). Replies go back in request order however the
shards interleave; multi-key commands are split per shard and merged. A shard that fails is
ejected by the cluster's passive ejection and its keys get an error reply (or, with
redis_rehash, go to the remaining shards) until it is back."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any, cast

from sidecars.ambassador import resp
from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.ketama import Continuum, hash_tagged, key_hash, server_name
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import Member
from sidecars.ambassador.metrics import Metrics
from sidecars.runtime.tasks import spawn

MAX_QUEUED = 1024  # commands awaiting replies per client before its reading pauses
TIMEOUT_SCAN = 0.1  # seconds between checks for shards that stopped answering

# Commands whose first argument is the one key (twemproxy's single-key set, RESP2).
_KEYED = frozenset(
    b"""GET SET SETNX SETEX PSETEX APPEND INCR DECR INCRBY DECRBY INCRBYFLOAT GETSET GETDEL GETEX
    STRLEN GETRANGE SETRANGE GETBIT SETBIT BITCOUNT BITPOS BITFIELD EXPIRE PEXPIRE EXPIREAT
    PEXPIREAT EXPIRETIME PEXPIRETIME TTL PTTL PERSIST TYPE DUMP RESTORE HSET HGET HMSET HMGET
    HDEL HEXISTS HGETALL HKEYS HVALS HLEN HINCRBY HINCRBYFLOAT HSETNX HSTRLEN HSCAN HRANDFIELD
    LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM LINSERT LPOS SADD
    SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SSCAN ZADD ZREM ZSCORE ZMSCORE
    ZINCRBY ZCARD ZCOUNT ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZRANK ZREVRANK
    ZREMRANGEBYRANK ZREMRANGEBYSCORE ZLEXCOUNT ZRANGEBYLEX ZREVRANGEBYLEX ZREMRANGEBYLEX ZSCAN
    ZPOPMIN ZPOPMAX ZRANDMEMBER PFADD GEOADD GEODIST GEOHASH GEOPOS GEOSEARCH XADD XLEN XRANGE
    XREVRANGE XDEL XTRIM""".split()
)
# Multi-key commands split per shard: how their parts are merged.
_SPLIT = {b"MGET": "array", b"DEL": "sum", b"UNLINK": "sum", b"EXISTS": "sum", b"TOUCH": "sum"}
# Refused with the reason: they span shards, hold a connection's state, or block it.
_REFUSED = {
    **dict.fromkeys(
        b"KEYS SCAN RANDOMKEY DBSIZE FLUSHALL FLUSHDB INFO CONFIG SAVE BGSAVE SHUTDOWN".split(),
        "spans every shard",
    ),
    **dict.fromkeys(
        b"MULTI EXEC DISCARD WATCH UNWATCH EVAL EVALSHA EVAL_RO EVALSHA_RO FCALL".split(),
        "needs one server for several keys",
    ),
    **dict.fromkeys(
        b"SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE PUBLISH MONITOR".split(),
        "is not sharded by key",
    ),
    **dict.fromkeys(
        b"BLPOP BRPOP BLMOVE BRPOPLPUSH BZPOPMIN BZPOPMAX BLMPOP BZMPOP WAIT".split(),
        "blocks a shared shard connection",
    ),
    **dict.fromkeys(
        b"RENAME RENAMENX SMOVE SUNION SINTER SDIFF SUNIONSTORE SINTERSTORE SDIFFSTORE".split()
        + b"ZUNIONSTORE ZINTERSTORE ZDIFFSTORE RPOPLPUSH LMOVE PFMERGE PFCOUNT MSETNX".split()
        + b"COPY OBJECT SORT BITOP".split(),
        "may need keys on several shards",
    ),
}


def wrong_arity(name: bytes) -> bytes:
    return resp.error(f"ERR wrong number of arguments for '{name.decode('latin-1').lower()}'")


class Slot:
    """One reply owed to a client, in its place in the client's queue."""

    __slots__ = ("client", "reply", "sent")

    def __init__(self, client: RedisClient | None, reply: bytes | None = None) -> None:
        self.client, self.reply, self.sent = client, reply, 0.0

    def fill(self, raw: bytes) -> RedisClient | None:
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

    def fill(self, raw: bytes) -> RedisClient | None:
        gather = self.gather
        gather.parts[self.index] = raw
        gather.waiting -= 1
        if gather.waiting:
            return None
        return gather.slot.fill(gather.merge(gather.parts))


def _first_error(parts: list[bytes]) -> bytes | None:
    for part in parts:
        if part[:1] == b"-":
            return part
    return None


def _merge_sum(parts: list[bytes]) -> bytes:
    failed = _first_error(parts)
    if failed is not None:
        return failed
    return b":%d\r\n" % sum(int(part[1:-2]) for part in parts)


def _merge_ok(parts: list[bytes]) -> bytes:
    failed = _first_error(parts)
    return failed if failed is not None else b"+OK\r\n"


def _merge_array(positions: list[list[int]], total: int) -> Callable[[list[bytes]], bytes]:
    def merge(parts: list[bytes]) -> bytes:
        failed = _first_error(parts)
        if failed is not None:
            return failed
        out = [b""] * total
        for part, places in zip(parts, positions, strict=True):
            for place, element in zip(places, resp.elements(part), strict=False):
                out[place] = element
        return b"*%d\r\n" % total + b"".join(out)

    return merge


class Shard(asyncio.Protocol):
    """The listener's one connection to a member: commands of every client pipelined on it,
    each reply handed to the oldest slot waiting."""

    def __init__(self, listener: RedisListener, member: Member) -> None:
        self.listener, self.member = listener, member
        self.transport: asyncio.Transport | None = None
        self.pending: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.reader = resp.ReplyReader(listener.limits)
        self.progress = 0.0  # loop time of the last reply or of sending to an idle shard
        self.dead = False
        self.task = listener.loop.create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.listener.settings.connect_timeout):
                await loop.create_connection(lambda: self, self.member.host, self.member.port)
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
        if not self.pending:
            self.progress = self.listener.loop.time()
        self.pending.append(slot)
        slot.sent = perf_counter()
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
        except resp.ProtocolError as exc:
            self.fail("protocol", f"bad reply: {exc}")
            return
        if not replies:
            return
        listener = self.listener
        pending, touched = self.pending, listener.answered
        now = perf_counter()
        latency = listener.latency
        member = self.member
        extra = len(replies) - len(pending)
        if extra > 0:
            replies = replies[:-extra]
        for raw in replies:
            slot = pending.popleft()
            latency.observe(now - slot.sent)
            client = slot.fill(raw)
            if client is not None:
                touched.add(client)
        member.active -= len(replies)
        member.failures_in_row = 0
        self.progress = listener.loop.time()
        if touched and not listener.answering:
            listener.answering = True  # after every shard read of this loop turn: fewer writes
            listener.loop.call_soon(listener.flush_clients)
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
        if listener.shards.get(member.key) is self:
            del listener.shards[member.key]
        if self.transport is not None:
            self.transport.abort()
        self.task.cancel()
        member.active -= len(self.pending)
        reply = resp.error(f"ERR ambassador: shard {member.key}: {why}")
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


class RedisClient(asyncio.Protocol):
    """One app connection: commands read, routed, and their replies written in order."""

    def __init__(self, listener: RedisListener) -> None:
        self.listener = listener
        self.reader = resp.CommandReader(listener.limits)
        self.queue: deque[Slot] = deque()
        self.transport: asyncio.Transport | None = None
        self.nbytes = self.idle_marks = self.last_nbytes = 0
        self.seen = 0.0
        self.closing = self.closed = self.paused = self.blocked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.seen = self.listener.loop.time()
        if not self.listener.admit(self):
            self.closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.nbytes += len(data)
        self.seen = self.listener.loop.time()
        commands = self.reader.feed(data)
        problem = self.reader.error
        listener = self.listener
        for args, raw in commands:
            self.dispatch(args, raw)
            if self.closing:
                break
        if problem and not self.closing:
            self.queue.append(Slot(self, resp.error(f"ERR Protocol error: {problem}")))
            self.closing = True
            listener.metrics.rejected.labels(listener.name, "protocol").inc()
        if listener.dirty and not listener.flushing:
            listener.flushing = True  # after every client read of this loop turn: fewer writes
            listener.loop.call_soon(listener.flush_shards)
        self.flush()
        if len(self.queue) >= MAX_QUEUED and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def dispatch(self, args: list[bytes], raw: bytes) -> None:
        name = args[0].upper()
        listener = self.listener
        if name in _KEYED:
            if len(args) < 2:
                self.queue.append(Slot(self, wrong_arity(name)))
                return
            target = listener.route(args[1])
            if isinstance(target, bytes):
                self.queue.append(Slot(self, target))
                return
            slot = Slot(self)
            self.queue.append(slot)
            target.queue(raw or resp.command(*args), slot)
            listener.dirty.add(target)
            return
        merge = _SPLIT.get(name)
        if merge is not None or name == b"MSET":
            self._split(name, args)
            return
        self.queue.append(Slot(self, self._local(name, args)))

    def _local(self, name: bytes, args: list[bytes]) -> bytes:
        if name == b"PING":
            if len(args) > 2:
                return wrong_arity(name)
            return b"+PONG\r\n" if len(args) == 1 else b"$%d\r\n%s\r\n" % (len(args[1]), args[1])
        if name == b"ECHO":
            if len(args) != 2:
                return wrong_arity(name)
            return b"$%d\r\n%s\r\n" % (len(args[1]), args[1])
        if name == b"QUIT":
            self.closing = True
            return b"+OK\r\n"
        if name == b"SELECT":
            if len(args) != 2:
                return wrong_arity(name)
            if args[1] == b"0":
                return b"+OK\r\n"
            return resp.error("ERR ambassador: SELECT of a database other than 0 is refused")
        if name == b"HELLO":  # clients fall back to RESP2 on NOPROTO
            return b"-NOPROTO ambassador: redis mode speaks RESP2 only\r\n"
        shown = name.decode("latin-1")[:64]
        why = _REFUSED.get(name)
        if why is not None:
            return resp.error(f"ERR ambassador: {shown} {why} and is refused in redis mode")
        return resp.error(f"ERR ambassador: unknown or unsupported command '{shown}'")

    def _split(self, name: bytes, args: list[bytes]) -> None:
        step = 2 if name == b"MSET" else 1
        if len(args) < 2 or (len(args) - 1) % step:
            self.queue.append(Slot(self, wrong_arity(name)))
            return
        listener = self.listener
        groups: dict[int, tuple[Shard, list[bytes], list[int]]] = {}
        for place, at in enumerate(range(1, len(args), step)):
            target = listener.route(args[at])
            if isinstance(target, bytes):
                self.queue.append(Slot(self, target))
                return
            group = groups.get(id(target))
            if group is None:
                group = groups[id(target)] = (target, [name], [])
            group[1].extend(args[at : at + step])
            group[2].append(place)
        slot = Slot(self)
        self.queue.append(slot)
        kind = _SPLIT.get(name, "ok")
        positions = [places for _, _, places in groups.values()]
        if kind == "array":
            merge = _merge_array(positions, len(args) - 1)
        else:
            merge = _merge_sum if kind == "sum" else _merge_ok
        gather = Gather(slot, len(groups), merge)
        for index, (shard, part_args, _) in enumerate(groups.values()):
            shard.queue(resp.command(*part_args), Part(gather, index))
            listener.dirty.add(shard)

    def flush(self) -> None:
        """Write every reply at the head of the queue that has come."""
        queue, transport = self.queue, self.transport
        if self.closed or transport is None:
            return
        out = []
        while queue and queue[0].reply is not None:
            out.append(queue.popleft().reply)
        if out:
            transport.write(b"".join(out))  # type: ignore[arg-type]
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


class RedisListener(Listener):
    """Shards keys over the cluster's members; one pipelined connection per member."""

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        super().__init__(name, settings, cluster, metrics, log)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.shards: dict[str, Shard] = {}
        self.dirty: set[Shard] = set()
        self.flushing = False
        self.answered: set[RedisClient] = set()  # clients with replies come this loop turn
        self.answering = False
        self.limits = resp.Limits(settings.redis_max_bulk, settings.redis_max_array)
        self._rings: dict[tuple[Any, ...], tuple[Continuum, list[Member]]] = {}
        self._order: list[Member] | None = None  # the member list the full ring is of
        self._full = Continuum([])
        self._timeouts: asyncio.Task[None] | None = None
        cluster.on_change = self._members_changed

    def reconfigure(self, settings: Config) -> None:
        super().reconfigure(settings)
        self.limits = resp.Limits(settings.redis_max_bulk, settings.redis_max_array)
        self._rings.clear()
        self._order = None

    def flush_shards(self) -> None:
        self.flushing = False
        for shard in self.dirty:
            shard.flush()
        self.dirty.clear()

    def flush_clients(self) -> None:
        self.answering = False
        answered, self.answered = self.answered, set()
        for client in answered:
            client.flush()

    def _members_changed(self, cluster: Cluster) -> None:
        self._rings.clear()
        self._order = None
        for key in [k for k in self.shards if k not in cluster.members]:
            self.shards[key].close()

    async def _serve(self) -> asyncio.Server:
        host, port = self.settings.listen
        self.loop = asyncio.get_running_loop()
        return await self.loop.create_server(
            lambda: RedisClient(self), host, port, backlog=1024, reuse_address=True
        )

    async def start(self) -> None:
        await super().start()
        self._timeouts = spawn(f"reply timeouts of listener {self.name}", self._watch_timeouts())

    async def close(self) -> None:
        if self._timeouts is not None:
            self._timeouts.cancel()
            await asyncio.gather(self._timeouts, return_exceptions=True)
        for shard in list(self.shards.values()):
            shard.close()
        await super().close()

    async def _watch_timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_SCAN)
            now, limit = self.loop.time(), self.settings.request_timeout
            for shard in list(self.shards.values()):
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

    def route(self, key: bytes) -> Shard | bytes:
        """The shard for a key, or the error reply when it cannot be served now."""
        tag = self.settings.redis_hash_tag
        hashed = key_hash(hash_tagged(key, tag.encode()) if tag else key)
        members = self.cluster.order
        if members is not self._order:  # a new list whenever membership or a weight changes
            self._full = Continuum([(server_name(m.host, m.port), m.weight) for m in members])
            self._order = members
        index = self._full.owner(hashed)
        if index < 0:
            return resp.error("ERR ambassador: no shards")
        member = members[index]
        if not (member.healthy and member.ejected_until <= self.loop.time()):
            if not self.settings.redis_rehash:
                state = "down" if not member.healthy else "ejected"
                return resp.error(f"ERR ambassador: shard {member.key} is {state}")
            now = self.loop.time()
            live = [m for m in self.cluster.order if m.available(now)]
            if not live:
                return resp.error("ERR ambassador: every shard is down")
            ring, members = self._ring(live)
            member = members[ring.owner(hashed)]
        shard = self.shards.get(member.key)
        if shard is None:
            shard = self.shards[member.key] = Shard(self, member)
        return shard
