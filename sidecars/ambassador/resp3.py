"""RESP3 replies from a shard, bounded as RESP2's are (resp.py): every type Redis 6 and 7 send
(null, boolean, double, big number, bulk error, verbatim string, map, set, attribute, push),
each length and element count checked against the limits before anything is buffered for it,
nesting no deeper than resp.MAX_DEPTH. Push messages are not replies to a command: they are
counted and left out. Streamed strings and aggregates (`$?`, `*?`) are refused: Redis never
sends them."""

from __future__ import annotations

from sidecars import __version__
from sidecars.ambassador import resp
from sidecars.ambassador.resp import MAX_DEPTH, Limits, ProtocolError, _length

_RESP2 = frozenset(b"+-:$*")  # read as RESP2 reads them (their elements as RESP3)
_AGGREGATE = {0x7E: 1, 0x3E: 1, 0x25: 2, 0x7C: 2}  # ~ > % |: elements per entry
_PUSH = 0x3E  # '>'


class ReplyReader(resp.ReplyReader):
    """Splits a shard's RESP3 stream into the raw bytes of each reply (an attribute comes
    with the reply it annotates); push messages are counted in `pushes` and dropped."""

    __slots__ = ("pushes",)

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self.pushes = 0

    def feed(self, data: bytes) -> list[bytes]:
        replies = super().feed(data)
        kept = [reply for reply in replies if reply[0] != _PUSH]
        self.pushes += len(replies) - len(kept)
        return kept

    def _skip(self, pos: int, depth: int) -> int:
        """The end of the value at `pos`, -1 when it is not all here yet."""
        buf = self.buf
        kind = buf[pos]
        if kind in _RESP2:
            return super()._skip(pos, depth)
        limit = self.limits.max_inline
        end = buf.find(b"\r\n", pos, pos + limit + 2)
        if end < 0:
            if len(buf) - pos > limit + 1:
                raise ProtocolError("reply line too long")
            return -1
        if kind == 0x2C or kind == 0x28:  # ',' double, '(' big number: a line
            return end + 2
        if kind == 0x21 or kind == 0x3D:  # '!' bulk error, '=' verbatim string
            return self._bulk(kind, pos, end)
        if kind == 0x5F:  # '_' null
            if end != pos + 1:
                raise ProtocolError("null reply with a value")
            return end + 2
        if kind == 0x23:  # '#' boolean
            if end != pos + 2 or buf[pos + 1] not in b"tf":
                raise ProtocolError(f"invalid boolean {bytes(buf[pos : min(end, pos + 20)])!r}")
            return end + 2
        per = _AGGREGATE.get(kind)
        if per is None:
            raise ProtocolError(f"unknown reply type {bytes(buf[pos : pos + 1])!r}")
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"reply nested deeper than {MAX_DEPTH}")
        if kind == _PUSH and depth:
            raise ProtocolError("push message inside a reply")
        n = _length(buf, pos + 1, end, "aggregate", self.limits.max_array // per)
        if n < 0:
            raise ProtocolError(f"invalid aggregate length {n}")
        # an attribute annotates the value after it: that value is part of the same reply
        return self._elements(end + 2, n * per + (kind == 0x7C), depth + 1)

    def _bulk(self, kind: int, pos: int, end: int) -> int:
        buf = self.buf
        size = _length(buf, pos + 1, end, "bulk", self.limits.max_bulk)
        if size < 0:
            raise ProtocolError(f"invalid bulk length {size}")
        stop = end + 2 + size + 2
        if len(buf) < stop:
            return -1
        if buf[stop - 2 : stop] != b"\r\n":
            raise ProtocolError("bulk reply not followed by CRLF")
        if kind == 0x3D and (size < 4 or buf[end + 5] != 0x3A):  # '=' needs 'txt:' first
            raise ProtocolError("verbatim string without its 3-letter format")
        return stop


def elements(raw: bytes) -> list[bytes]:
    """The raw elements of a complete array reply (one level), RESP3 types included."""
    return resp.elements(raw, ReplyReader)


def _bulk_string(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def hello_reply(proto: int, client_id: int) -> bytes:
    """What the ambassador answers HELLO with: Redis's fields, as a map in RESP3 and as a flat
    array in RESP2, saying it is the ambassador in proxy mode."""
    fields = [
        (b"server", _bulk_string(b"ambassador")),
        (b"version", _bulk_string(__version__.encode())),
        (b"proto", b":%d\r\n" % proto),
        (b"id", b":%d\r\n" % client_id),
        (b"mode", _bulk_string(b"proxy")),
        (b"role", _bulk_string(b"master")),
        (b"modules", b"*0\r\n"),
    ]
    head = b"%%%d\r\n" % len(fields) if proto == 3 else b"*%d\r\n" % (2 * len(fields))
    return head + b"".join(_bulk_string(name) + value for name, value in fields)
