"""redis mode: the app talks to one Redis; each command goes to the shard owning its key
(twemproxy's ketama with md5 and hash tags). Replies go back in request order however the
shards interleave; multi-key commands are split per shard and merged. A shard that fails is
ejected by the cluster's passive ejection and its keys get an error reply (or, with
redis_rehash, go to the remaining shards) until it is back. A client that says HELLO 3 speaks
RESP3: its commands go on shard connections of their own that said HELLO 3 too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from sidecars.ambassador import resp, resp3
from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.members import Member
from sidecars.ambassador.metrics import Metrics
from sidecars.ambassador.redisconn import Connection
from sidecars.ambassador.sharding import Gather, Part, Shard, ShardedClient, ShardedListener, Slot

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
_KEYED_CASED = _KEYED | frozenset(name.lower() for name in _KEYED)  # as clients send them


def _get_or_set(name: bytes) -> bool:
    """The two commands sent most, compared before the set lookup (which hashes a new bytes)."""
    return name == b"GET" or name == b"SET" or name == b"get" or name == b"set"


# Multi-key commands split per shard: how their parts are merged.
_SPLIT = {b"MGET": "array", b"DEL": "sum", b"UNLINK": "sum", b"EXISTS": "sum", b"TOUCH": "sum"}
# Refused with the reason: they span shards, hold a connection's state, or block it.
_REFUSED = {
    **dict.fromkeys(
        b"KEYS SCAN RANDOMKEY DBSIZE FLUSHALL FLUSHDB INFO CONFIG SAVE BGSAVE SHUTDOWN".split()
        + [b"SCRIPT", b"FUNCTION"],
        "spans every shard",
    ),
    **dict.fromkeys(
        b"MULTI EXEC DISCARD WATCH UNWATCH".split(),
        "needs one server for several keys",
    ),
    **dict.fromkeys(
        b"SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE MONITOR".split(),
        "sends push messages that no shared shard connection can route",
    ),
    b"PUBLISH": "is not sharded by key",
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


# Scripts and functions: routed by the keys they declare (numkeys), all on one shard.
_SCRIPTS = frozenset(b"EVAL EVALSHA EVAL_RO EVALSHA_RO FCALL FCALL_RO".split())
# Sent to every shard, so that scripts and functions run wherever their keys are: how the
# answers are merged ("same": one answer when all agree; "all": SCRIPT EXISTS's flags).
_EVERY = {
    (b"SCRIPT", b"LOAD"): "same",
    (b"SCRIPT", b"EXISTS"): "all",
    (b"SCRIPT", b"FLUSH"): "same",
    (b"FUNCTION", b"LOAD"): "same",
    (b"FUNCTION", b"DELETE"): "same",
    (b"FUNCTION", b"FLUSH"): "same",
}
HELLO3 = resp.command(b"HELLO", b"3")


def _first_error(parts: list[bytes]) -> bytes | None:
    for part in parts:
        if part[:1] in b"-!":  # an error, a RESP3 bulk error
            return part
    return None


def _merge_sum(parts: list[bytes]) -> bytes:
    failed = _first_error(parts)
    if failed is not None:
        return failed
    return b":%d\r\n" % sum(int(part[1:-2]) for part in parts)


def _merge_same(name: str) -> Callable[[list[bytes]], bytes]:
    def merge(parts: list[bytes]) -> bytes:
        failed = _first_error(parts)
        if failed is not None:
            return failed
        if any(part != parts[0] for part in parts):
            return resp.error(f"ERR ambassador: the shards answered {name} differently")
        return parts[0]

    return merge


def _merge_all(elements: Callable[[bytes], list[bytes]]) -> Callable[[list[bytes]], bytes]:
    """SCRIPT EXISTS: a script exists where every shard has it."""

    def merge(parts: list[bytes]) -> bytes:
        failed = _first_error(parts)
        if failed is not None:
            return failed
        flags = [elements(part) for part in parts]
        if any(len(each) != len(flags[0]) for each in flags):
            return resp.error("ERR ambassador: the shards answered SCRIPT EXISTS differently")
        return b"*%d\r\n" % len(flags[0]) + b"".join(map(min, zip(*flags, strict=True)))

    return merge


def _merge_ok(parts: list[bytes]) -> bytes:
    failed = _first_error(parts)
    return failed if failed is not None else b"+OK\r\n"


def _merge_array(
    positions: list[list[int]], total: int, elements: Callable[[bytes], list[bytes]]
) -> Callable[[list[bytes]], bytes]:
    def merge(parts: list[bytes]) -> bytes:
        failed = _first_error(parts)
        if failed is not None:
            return failed
        out = [b""] * total
        for part, places in zip(parts, positions, strict=True):
            for place, element in zip(places, elements(part), strict=False):
                out[place] = element
        return b"*%d\r\n" % total + b"".join(out)

    return merge


class RedisClient(ShardedClient):
    """One app connection speaking RESP2, or RESP3 after HELLO 3."""

    def __init__(self, listener: RedisListener) -> None:
        super().__init__(listener)
        self.redis = listener  # `listener` as its own class (a compiled attribute keeps its type)
        self.reader = resp.CommandReader(listener.limits)
        listener.clients_made += 1
        self.conn = Connection(listener.clients_made)
        self.table: dict[str, Shard] | None = None  # RESP3: the listener's RESP3 shards

    def read(self, data: bytes) -> None:
        commands = self.reader.feed(data)
        problem = self.reader.error
        fast = self.table is None
        for args, raw in commands:
            name = args[0]
            if fast and len(args) > 1 and raw and (_get_or_set(name) or name in _KEYED_CASED):
                self.forward(args[1], raw)
                continue
            self.dispatch(args, raw)
            if self.closing:
                break
            fast = self.table is None  # HELLO may have changed it
        if problem and not self.closing:
            self.reject(resp.error(f"ERR Protocol error: {problem}"))

    def dispatch(self, args: list[bytes], raw: bytes) -> None:
        name = args[0].upper()
        if name in _KEYED:
            if len(args) < 2:
                self.queue.append(Slot(self, wrong_arity(name)))
                return
            target = self.listener.route(args[1], self.table)
        elif name in _SCRIPTS:
            target = self._script_shard(name, args)
        else:
            if name in _SPLIT or name == b"MSET":
                self._split(name, args)
            elif len(args) > 1 and (name, args[1].upper()) in _EVERY:
                self._everywhere(name, args)
            else:
                self.queue.append(Slot(self, self._local(name, args)))
            return
        if isinstance(target, bytes):
            self.queue.append(Slot(self, target))
            return
        slot = Slot(self)
        self.queue.append(slot)
        self.send(target, raw or resp.command(*args), slot)

    def _script_shard(self, name: bytes, args: list[bytes]) -> Shard | bytes:
        """The one shard holding every key a script or function declares, or the error."""
        if len(args) < 3:
            return wrong_arity(name)
        raw = args[2]
        digits = raw[1:] if raw[:1] == b"-" else raw
        if not digits.isdigit() or len(digits) > 18:
            return resp.error("ERR value is not an integer or out of range")
        numkeys = int(raw)
        if numkeys < 0:
            return resp.error("ERR Number of keys can't be negative")
        if numkeys > len(args) - 3:
            return resp.error("ERR Number of keys can't be greater than number of args")
        shown = name.decode()
        if not numkeys:
            return resp.error(
                f"ERR ambassador: {shown} without keys (numkeys 0) has no shard to run on and is "
                "refused in redis mode; declare the keys it uses"
            )
        keys = args[3 : 3 + numkeys]
        first = self.listener.route(keys[0], self.table)
        if isinstance(first, bytes):
            return first
        for key in keys[1:]:
            target = self.listener.route(key, self.table)
            if isinstance(target, bytes):
                return target
            if target is not first:
                return resp.error(
                    f"ERR ambassador: {shown} keys '{keys[0][:64].decode('latin-1')}' and "
                    f"'{key[:64].decode('latin-1')}' are on different shards "
                    f"({first.member.key}, {target.member.key}); {self._tag_advice()}"
                )
        return first

    def _tag_advice(self) -> str:
        tag = self.listener.settings.redis_hash_tag
        if not tag:
            return "set AMBASSADOR_REDIS_HASH_TAG and give its keys one hash tag"
        return f"give its keys one hash tag ({tag[0]}same{tag[1]} in each) to keep them together"

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
        if name == b"HELLO":
            reply = self.conn.hello(args)
            self.table = self.redis.shards3 if self.conn.proto == 3 else None
            return reply
        if name == b"AUTH":
            return self.conn.auth(args)
        if name == b"CLIENT":
            return self.conn.client(args)
        shown = name.decode("latin-1")[:64]
        why = _REFUSED.get(name)
        if why is not None:
            return resp.error(f"ERR ambassador: {shown} {why} and is refused in redis mode")
        return resp.error(f"ERR ambassador: unknown or unsupported command '{shown}'")

    def _everywhere(self, name: bytes, args: list[bytes]) -> None:
        shards = self.listener.every_shard(self.table)
        if isinstance(shards, bytes):
            self.queue.append(Slot(self, shards))
            return
        shown = f"{name.decode()} {args[1].upper().decode()}"
        if _EVERY[name, args[1].upper()] == "all":
            merge = _merge_all(resp.elements if self.table is None else resp3.elements)
        else:
            merge = _merge_same(shown)
        slot = Slot(self)
        self.queue.append(slot)
        gather = Gather(slot, len(shards), merge)
        data = resp.command(*args)
        for index, shard in enumerate(shards):
            self.send(shard, data, Part(gather, index))

    def _split(self, name: bytes, args: list[bytes]) -> None:
        step = 2 if name == b"MSET" else 1
        if len(args) < 2 or (len(args) - 1) % step:
            self.queue.append(Slot(self, wrong_arity(name)))
            return
        listener = self.listener
        groups: dict[int, tuple[Shard, list[bytes], list[int]]] = {}
        for place, at in enumerate(range(1, len(args), step)):
            target = listener.route(args[at], self.table)
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
            elements = resp.elements if self.table is None else resp3.elements
            merge = _merge_array(positions, len(args) - 1, elements)
        else:
            merge = _merge_sum if kind == "sum" else _merge_ok
        gather = Gather(slot, len(groups), merge)
        for index, (shard, part_args, _) in enumerate(groups.values()):
            self.send(shard, resp.command(*part_args), Part(gather, index))


class Resp3Shard(Shard):
    """A shard connection for RESP3 clients: it says HELLO 3 before any command goes on it
    (the commands wait), so RESP2 and RESP3 replies never share a connection. A push message
    from the shard (nothing here asks for one) is dropped with a warning: on a connection
    shared by many clients nothing says whose it is."""

    def __init__(self, listener: RedisListener, member: Member, table: dict[str, Shard]) -> None:
        super().__init__(listener, member, table)
        self.replies = resp3.ReplyReader(listener.limits)
        self.reader = self.replies
        self.greeting: asyncio.Transport | None = None  # until HELLO 3 is answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        made = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport
        if self.dead:
            made.abort()
            return
        self.greeting = made
        made.write(HELLO3)

    def data_received(self, data: bytes) -> None:
        if self.greeting is None:
            super().data_received(data)
            if self.replies.pushes:
                self._drop_pushes()
            return
        try:
            replies = self.replies.feed(data)
        except ValueError as exc:
            self.fail("protocol", f"bad reply to HELLO 3: {exc}")
            return
        if not replies:
            return
        answer = replies[0]
        if len(replies) > 1 or self.replies.pushes or answer[:1] != b"%":
            # a server that cannot speak RESP3 is not failing: it is not counted to eject it
            line = answer.split(b"\r\n", 1)[0][:100].decode("ascii", "replace")
            self.fail("" if answer[:1] in b"-!" else "protocol", f"HELLO 3 answered: {line}")
            return
        self.transport, self.greeting = self.greeting, None
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def _drop_pushes(self) -> None:
        listener = self.listener
        listener.log.warning(
            "shard %s sent %d push messages; nothing routes them on a shared connection: dropped",
            self.member.key,
            self.replies.pushes,
            extra={"listener": listener.name, "member": self.member.key},
        )
        self.replies.pushes = 0

    def fail(self, kind: str, why: str) -> None:
        greeting, self.greeting = self.greeting, None
        if greeting is not None and not self.dead:
            greeting.abort()
        super().fail(kind, why)


class RedisListener(ShardedListener):
    """Shards Redis commands over the cluster's members."""

    client = RedisClient

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        self.limits = resp.Limits(settings.redis_max_bulk, settings.redis_max_array)
        super().__init__(name, settings, cluster, metrics, log)
        self.shards3: dict[str, Shard] = {}  # the connections of RESP3 clients
        self.tables.append(self.shards3)
        self.clients_made = 0

    def connect(self, member: Member, table: dict[str, Shard]) -> Shard:
        if table is self.shards3:
            return Resp3Shard(self, member, table)
        return super().connect(member, table)

    def reply_reader(self) -> resp.ReplyReader:
        return resp.ReplyReader(self.limits)

    def error(self, message: str) -> bytes:
        return resp.error(f"ERR {message}")

    def reconfigure(self, settings: Config) -> None:
        super().reconfigure(settings)
        self.limits = resp.Limits(settings.redis_max_bulk, settings.redis_max_array)
