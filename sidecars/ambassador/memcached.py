"""memcached mode: the app talks to one memcached (text protocol); each command goes to the
shard owning its key, placed as twemproxy places it. A get of keys on several shards is split
and merged in the order asked; meta commands go to their key's shard (`mn` is answered here,
after the answers before it); the rest is redis mode's machinery (sharding.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sidecars.ambassador import mctext
from sidecars.ambassador.sharding import Gather, Part, Shard, ShardedClient, ShardedListener, Slot

_REFUSED = {
    **dict.fromkeys(
        b"stats flush_all slabs lru_crawler lru watch shutdown cache_memlimit verbosity".split(),
        "spans every shard",
    ),
    **dict.fromkeys(b"gat gats misc debugtime".split(), "is not supported"),
}


def _server_error(message: str) -> bytes:
    text = message.replace("\r", " ").replace("\n", " ")
    return b"SERVER_ERROR " + text.encode("utf-8", "replace") + b"\r\n"


def _merge_get(
    keys: list[list[bytes]], positions: list[list[int]], total: int
) -> Callable[[list[bytes]], bytes]:
    """Each shard's VALUE entries put back in the place of their key in the request."""

    def merge(parts: list[bytes]) -> bytes:
        for part in parts:
            if not part.endswith(b"END\r\n"):
                return part  # an error line from a shard stands for the whole get
        out: list[bytes] = [b""] * total
        extra: list[bytes] = []
        for part, asked, places in zip(parts, keys, positions, strict=True):
            at = 0
            for key, entry in mctext.entries(part):
                while at < len(asked) and asked[at] != key:
                    at += 1
                if at < len(asked):
                    out[places[at]] = entry
                    at += 1
                else:
                    extra.append(entry)
        return b"".join(out) + b"".join(extra) + b"END\r\n"

    return merge


class MemcachedClient(ShardedClient):
    """One app connection speaking memcached's text protocol."""

    def __init__(self, listener: MemcachedListener) -> None:
        super().__init__(listener)
        self.reader = mctext.CommandReader(listener.settings.memcached_max_value)

    def read(self, data: bytes) -> None:
        commands = self.reader.feed(data)
        problem = self.reader.error
        for command in commands:
            if command.raw:  # the fast reader's shapes: a get of one key, a storage command
                self.forward(command.words[1], command.raw)
                continue
            words = command.words
            name = words[0] if words else b""
            if (name == b"get" and len(words) == 2) or (
                name in mctext.STORAGE and not command.noreply
            ):
                self.forward(words[1], command.wire())
                continue
            self.dispatch(command)
            if self.closing:
                return
        if problem:
            self.reject(b"CLIENT_ERROR " + problem.encode() + b"\r\n")

    def dispatch(self, command: mctext.Command) -> None:
        words = command.words
        name = words[0] if words else b""
        if name in mctext.RETRIEVAL:
            self._get(name, words[1:])
            return
        if name in mctext.STORAGE or name in (b"delete", b"incr", b"decr", b"touch"):
            target = self.listener.route(words[1])
            if isinstance(target, bytes):
                if not command.noreply:
                    self.queue.append(Slot(self, target))
                return
            slot = Slot(None if command.noreply else self)
            if not command.noreply:
                self.queue.append(slot)
            self.send(target, command.wire(), slot)  # noreply: the shard's answer is dropped
            return
        if name in mctext.META:
            self._meta(command)
        elif name == b"version":
            self.queue.append(Slot(self, b"VERSION ambassador\r\n"))
        elif name == b"quit":
            self.closing = True
        elif name in _REFUSED:
            shown = name.decode()
            why = _REFUSED[name]
            self.queue.append(
                Slot(self, _server_error(f"ambassador: {shown} {why} in memcached mode"))
            )
        else:
            self.queue.append(Slot(self, b"ERROR\r\n"))

    def _meta(self, command: mctext.Command) -> None:
        if command.words[0] == b"mn":
            self.queue.append(Slot(self, b"MN\r\n"))
            return
        target = self.listener.route(command.key)
        if isinstance(target, bytes):
            self.queue.append(Slot(self, target))
            return
        slot = Slot(self)
        self.queue.append(slot)
        if not command.quiet:
            self.send(target, command.wire(), slot)
            return
        # a quiet command's answer may be none: the mn after it marks where it ends
        cast(mctext.ReplyReader, target.reader).expect_quiet(len(target.pending))
        self.send(target, command.wire() + mctext.NOOP, slot)

    def _get(self, name: bytes, keys: list[bytes]) -> None:
        listener = self.listener
        groups: dict[int, tuple[Shard, list[bytes], list[int]]] = {}
        for place, key in enumerate(keys):
            target = listener.route(key)
            if isinstance(target, bytes):
                self.queue.append(Slot(self, target))
                return
            group = groups.get(id(target))
            if group is None:
                group = groups[id(target)] = (target, [], [])
            group[1].append(key)
            group[2].append(place)
        slot = Slot(self)
        self.queue.append(slot)
        if len(groups) == 1:
            shard, asked, _ = next(iter(groups.values()))
            self.send(shard, b" ".join([name, *asked]) + b"\r\n", slot)
            return
        merge = _merge_get(
            [asked for _, asked, _ in groups.values()],
            [places for _, _, places in groups.values()],
            len(keys),
        )
        gather = Gather(slot, len(groups), merge)
        for index, (shard, asked, _) in enumerate(groups.values()):
            self.send(shard, b" ".join([name, *asked]) + b"\r\n", Part(gather, index))


class MemcachedListener(ShardedListener):
    """Shards memcached commands over the cluster's members."""

    client = MemcachedClient

    def reply_reader(self) -> mctext.ReplyReader:
        return mctext.ReplyReader(self.settings.memcached_max_value)

    def error(self, message: str) -> bytes:
        return _server_error(message)
