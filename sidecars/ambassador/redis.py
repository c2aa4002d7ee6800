"""redis mode: the app talks to one Redis; each command goes to the shard owning its key
(twemproxy's ketama with md5 and hash tags). Replies go back in request order however the
shards interleave; multi-key commands are split per shard and merged. A shard that fails is
ejected by the cluster's passive ejection and its keys get an error reply (or, with
redis_rehash, go to the remaining shards) until it is back."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sidecars.ambassador import resp
from sidecars.ambassador.cluster import Cluster
from sidecars.ambassador.config import Config
from sidecars.ambassador.metrics import Metrics
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


class RedisClient(ShardedClient):
    """One app connection speaking RESP2."""

    def __init__(self, listener: RedisListener) -> None:
        super().__init__(listener)
        self.reader = resp.CommandReader(listener.limits)

    def read(self, data: bytes) -> None:
        commands = self.reader.feed(data)
        problem = self.reader.error
        for args, raw in commands:
            self.dispatch(args, raw)
            if self.closing:
                break
        if problem and not self.closing:
            self.reject(resp.error(f"ERR Protocol error: {problem}"))

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
            self.send(target, raw or resp.command(*args), slot)
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
            self.send(shard, resp.command(*part_args), Part(gather, index))


class RedisListener(ShardedListener):
    """Shards Redis commands over the cluster's members."""

    client = RedisClient

    def __init__(
        self, name: str, settings: Config, cluster: Cluster, metrics: Metrics, log: logging.Logger
    ) -> None:
        self.limits = resp.Limits(settings.redis_max_bulk, settings.redis_max_array)
        super().__init__(name, settings, cluster, metrics, log)

    def reply_reader(self) -> resp.ReplyReader:
        return resp.ReplyReader(self.limits)

    def error(self, message: str) -> bytes:
        return resp.error(f"ERR {message}")

    def reconfigure(self, settings: Config) -> None:
        super().reconfigure(settings)
        self.limits = resp.Limits(settings.redis_max_bulk, settings.redis_max_array)
