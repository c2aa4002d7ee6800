"""memcached's text protocol, bounded: commands from clients (a line, and a data block for the
storage commands and `ms`) and the span of each reply from a shard. A key, a line and a data
block are checked against their limits before anything is buffered for them. Meta commands in
quiet mode (flag `q`) are sent followed by `mn`: the shard's answers up to its `MN` are the
reply, empty when the shard kept quiet."""

from __future__ import annotations

import binascii
import re
from collections import deque
from typing import Final

from sidecars.ambassador.framing import Framing

MAX_KEY: Final = 250  # memcached's own limit
MAX_LINE: Final = 64 << 10  # a command line (a get of many keys) or a reply line
MAX_VALUES: Final = 1 << 16  # VALUE entries in one get reply from a shard
FAST_CARRY: Final = 64 << 10  # a longer partial command stays with the general reader

STORAGE = frozenset(b"set add replace append prepend cas".split())
RETRIEVAL = frozenset((b"get", b"gets"))
_PLAIN_STORAGE = frozenset(b"set add replace append prepend".split())  # five words, no cas
# the other keyed commands: the arguments after the key (without noreply)
_KEYED = {b"delete": 0, b"incr": 1, b"decr": 1, b"touch": 1}
META = frozenset(b"mg ms md ma mn me".split())
NOOP = b"mn\r\n"
_CONTROL = re.compile(rb"[\x00-\x20\x7f]")


class ProtocolError(ValueError):
    """The peer broke the protocol or a limit; the message names what."""


class Command:
    """A client's command: its words (noreply taken off), its data block with the CRLF after
    it (storage commands), and whether it asked for no reply; for a meta command, the key it
    is placed by (base64 decoded) and whether it is quiet. `raw`: the bytes as they came when
    they are the wire form already (the shapes the fast reader takes), else empty. A class of
    its own, not a NamedTuple: compiled, making one is a native call, not 2,700 instructions
    of the tuple's Python constructor."""

    __slots__ = ("words", "data", "noreply", "key", "quiet", "raw")

    def __init__(
        self,
        words: list[bytes],
        data: bytes,
        noreply: bool,
        key: bytes = b"",
        quiet: bool = False,
        raw: bytes = b"",
    ) -> None:
        self.words, self.data, self.noreply = words, data, noreply
        self.key, self.quiet, self.raw = key, quiet, raw

    def wire(self) -> bytes:
        return self.raw or b" ".join(self.words) + b"\r\n" + self.data

    def _fields(self) -> tuple[list[bytes], bytes, bool, bytes, bool]:
        return self.words, self.data, self.noreply, self.key, self.quiet

    def __eq__(self, other: object) -> bool:
        """The same command, however it was read (`raw` says how, not what)."""
        return isinstance(other, Command) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return f"Command{self._fields()!r}"


def _check_key(key: bytes) -> None:
    if len(key) > MAX_KEY:
        raise ProtocolError(f"key longer than {MAX_KEY} bytes")
    if _CONTROL.search(key):
        raise ProtocolError("control character in a key")


def _base64_key(key: bytes) -> bytes:
    try:
        decoded = binascii.a2b_base64(key, strict_mode=True)
    except binascii.Error:
        raise ProtocolError("key is not base64") from None
    if not decoded or len(decoded) > MAX_KEY:
        raise ProtocolError(f"decoded key empty or longer than {MAX_KEY} bytes")
    return decoded


def _number(raw: bytes, what: str, limit: int, signed: bool = False) -> int:
    digits = raw[1:] if signed and raw[:1] == b"-" else raw
    if not digits.isdigit() or len(digits) > 20 or int(digits) > limit:
        raise ProtocolError(f"invalid {what} {raw[:24]!r}")
    return int(raw)


def _plain_key(key: bytes) -> bool:
    """A key as _check_key takes it (1 to 250 bytes, no control character), tested byte by
    byte: compiled, no regex search."""
    if not 0 < len(key) <= MAX_KEY:
        return False
    for byte in key:
        if byte <= 0x20 or byte == 0x7F:
            return False
    return True


def _digits(raw: bytes, most: int) -> int:
    """The value of 1 to `most` ASCII digits, else -1."""
    if not 0 < len(raw) <= most:
        return -1
    value = 0
    for byte in raw:
        if not 0x30 <= byte <= 0x39:
            return -1
        value = value * 10 + byte - 0x30
    return value


def _words(line: bytes) -> list[bytes]:
    return [word for word in line.split(b" ") if word]


class CommandReader(Framing[Command]):
    """Splits a client's byte stream into commands."""

    __slots__ = ("max_value",)

    def __init__(self, max_value: int) -> None:
        super().__init__()
        self.max_value = max_value

    def feed(self, data: bytes) -> list[Command]:
        """Every complete command now buffered. The common shapes (a get of one key, set, add,
        replace, append and prepend without noreply, single spaces, CRLF) are read here in
        one pass over immutable bytes; the first command of any other shape, and any command
        not all here yet, goes to the general reader (`_next`), which names what is wrong."""
        buf = self.buf
        if buf:
            if len(buf) > FAST_CARRY:  # a big command arriving piecemeal: no copy per read
                return super().feed(data)
            buf += data
            data = bytes(buf)
            buf.clear()
        size, max_value = len(data), self.max_value
        out: list[Command] = []
        pos = 0
        while pos < size:
            limit = min(size, pos + MAX_LINE)
            end = pos
            while end < limit and data[end] != 10:  # byte by byte: compiled, no find() call
                end += 1
            if end >= limit or end == pos or data[end - 1] != 13:
                break
            words = data[pos : end - 1].split(b" ")
            name = words[0]
            if len(words) == 2 and name == b"get":
                if not _plain_key(words[1]):
                    break
                out.append(Command(words, b"", False, b"", False, data[pos : end + 1]))
                pos = end + 1
                continue
            if len(words) != 5 or name not in _PLAIN_STORAGE or not _plain_key(words[1]):
                break
            if not 0 <= _digits(words[2], 10) <= 0xFFFFFFFF:
                break
            if not 0 <= _digits(words[3], 19) <= 1 << 62:
                break
            length = _digits(words[4], 20)
            if not 0 <= length <= max_value:
                break
            stop = end + 3 + length
            if stop > size or data[stop - 2] != 13 or data[stop - 1] != 10:
                break
            out.append(Command(words, data[end + 1 : stop], False, b"", False, data[pos:stop]))
            pos = stop
        if pos < size:
            return out + super().feed(data[pos:])
        return out

    def _next(self, pos: int) -> tuple[Command | None, int] | None:
        buf = self.buf
        end = buf.find(b"\n", pos, pos + MAX_LINE + 1)
        if end < 0:
            if len(buf) - pos > MAX_LINE:
                raise ProtocolError(f"command line longer than {MAX_LINE} bytes")
            return None
        words = _words(bytes(buf[pos:end]).rstrip(b"\r"))
        name = words[0] if words else b""
        if name in RETRIEVAL:
            if len(words) < 2:
                raise ProtocolError(f"{name.decode()} without a key")
            for key in words[1:]:
                _check_key(key)
            return Command(words, b"", False), end + 1
        if name in STORAGE:
            return self._storage(words, end + 1)
        arity = _KEYED.get(name)
        if arity is None:
            if name in META:
                return self._meta(words, end + 1)
            return Command(words, b"", False), end + 1  # answered by the listener
        noreply = len(words) == arity + 3 and words[-1] == b"noreply"
        if noreply:
            words.pop()
        if len(words) != arity + 2:
            raise ProtocolError(f"bad command line format of {name.decode()}")
        _check_key(words[1])
        if name == b"touch":
            _number(words[2], "exptime", 1 << 62, signed=True)
        elif arity:
            _number(words[2], "delta", (1 << 64) - 1)
        return Command(words, b"", noreply), end + 1

    def _storage(self, words: list[bytes], start: int) -> tuple[Command, int] | None:
        name = words[0]
        arity = 6 if name == b"cas" else 5
        noreply = len(words) == arity + 1 and words[-1] == b"noreply"
        if noreply:
            words.pop()
        if len(words) != arity:
            raise ProtocolError(f"bad command line format of {name.decode()}")
        _check_key(words[1])
        _number(words[2], "flags", (1 << 32) - 1)
        _number(words[3], "exptime", 1 << 62, signed=True)
        size = self._size(words[4])
        if name == b"cas":
            _number(words[5], "cas unique", (1 << 64) - 1)
        stop = start + size + 2
        data = self._block(start, stop)
        return None if data is None else (Command(words, data, noreply), stop)

    def _size(self, raw: bytes) -> int:
        size = _number(raw, "data block size", 1 << 62)
        if size > self.max_value:
            raise ProtocolError(f"data block of {size} bytes is over the limit of {self.max_value}")
        return size

    def _block(self, start: int, stop: int) -> bytes | None:
        """The data block and its CRLF in buf[start:stop], None until all here."""
        if len(self.buf) < stop:
            return None
        if self.buf[stop - 2 : stop] != b"\r\n":
            raise ProtocolError("bad data chunk")
        return bytes(self.buf[start:stop])

    def _meta(self, words: list[bytes], start: int) -> tuple[Command, int] | None:
        """mg, md, ma, me <key> <flags>*; ms <key> <datalen> <flags>* and its data block; mn.
        Flags are left for the shard to judge but for b (base64 key) and q (quiet)."""
        name = words[0]
        if name == b"mn":
            return Command(words[:1], b"", False), start
        if len(words) < 2:
            raise ProtocolError(f"{name.decode()} without a key")
        flags = words[3:] if name == b"ms" else words[2:]
        key = _base64_key(words[1]) if b"b" in flags else words[1]
        _check_key(key)
        quiet = b"q" in flags
        if name != b"ms":
            return Command(words, b"", False, key, quiet), start
        if len(words) < 3:
            raise ProtocolError("bad command line format of ms")
        stop = start + self._size(words[2]) + 2
        data = self._block(start, stop)
        return None if data is None else (Command(words, data, False, key, quiet), stop)


class ReplyReader:
    """Splits a shard's byte stream into the raw bytes of each complete reply: one line, a
    meta VA line with its data block, or VALUE entries with their data blocks up to the line
    that is not one (END). The reply of a quiet meta command is what comes before the `MN`
    sent after it (nothing, or one reply)."""

    __slots__ = ("buf", "max_value", "at", "values", "emitted", "quiet", "held")

    def __init__(self, max_value: int) -> None:
        self.buf = bytearray()
        self.max_value = max_value
        self.at = 0  # where the scan of the reply at the head of buf goes on
        self.values = 0  # VALUE entries of that reply so far
        self.emitted = 0  # replies returned so far
        self.quiet: deque[int] = deque()  # the places of quiet commands' replies, in order
        self.held = b""  # the answer of the quiet command at the head, before its MN

    def feed(self, data: bytes) -> list[bytes]:
        """Every complete reply now buffered. With nothing carried over and no quiet command
        waiting, one-line replies and gets of one value are read here in one pass over the
        bytes; the first reply of any other shape, or not all here, goes to `_buffered`."""
        if self.buf or self.quiet:
            return self._buffered(data)
        size, max_value = len(data), self.max_value
        out: list[bytes] = []
        pos = 0
        while pos < size:
            limit = min(size, pos + MAX_LINE + 2)
            end = pos
            while end + 1 < limit and (data[end] != 13 or data[end + 1] != 10):  # compiled:
                end += 1  # byte by byte, no find() call
            if end + 1 >= limit:
                break
            if data[pos] == 0x56:  # 'V': VALUE, or VA for the general reader
                if data[pos : pos + 6] != b"VALUE ":
                    break
                words = data[pos:end].split(b" ")  # an empty word (two spaces): not here
                plain = len(words) in (4, 5) and b"" not in words
                length = _digits(words[3], 20) if plain else -1
                if not 0 <= length <= max_value:
                    break
                stop = end + 4 + length
                if stop > size or data[stop - 2] != 13 or data[stop - 1] != 10:
                    break
                if data[stop : stop + 5] != b"END\r\n":
                    break
                end = stop + 3
            out.append(data[pos : end + 2])
            pos = end + 2
        self.emitted += len(out)
        if pos < size:
            out += self._buffered(data[pos:])
        return out

    def _buffered(self, data: bytes) -> list[bytes]:
        buf, quiet = self.buf, self.quiet
        buf += data
        out: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\r\n", self.at, self.at + MAX_LINE + 2)
            if end < 0:
                if len(buf) - self.at > MAX_LINE + 1:
                    raise ProtocolError("reply line too long")
                break
            if buf.startswith(b"VALUE ", self.at):
                words = _words(bytes(buf[self.at : end]))
                if len(words) not in (4, 5):
                    raise ProtocolError("bad VALUE line")
                size = _number(words[3], "value size", self.max_value)
                stop = end + 2 + size + 2
                if len(buf) < stop:
                    break
                if buf[stop - 2 : stop] != b"\r\n":
                    raise ProtocolError("value not followed by CRLF")
                self.values += 1
                if self.values > MAX_VALUES:
                    raise ProtocolError(f"more than {MAX_VALUES} values in a reply")
                self.at = stop
                continue
            if buf.startswith(b"VA ", self.at):
                words = _words(bytes(buf[self.at : end]))
                if len(words) < 2:
                    raise ProtocolError("bad VA line")
                size = _number(words[1], "value size", self.max_value)
                if len(buf) < end + 2 + size + 2:
                    break
                end += 2 + size
                if buf[end : end + 2] != b"\r\n":
                    raise ProtocolError("value not followed by CRLF")
            reply = bytes(buf[start : end + 2])
            start = self.at = end + 2
            self.values = 0
            if quiet and self.emitted + len(out) == quiet[0]:
                if reply == b"MN\r\n":
                    out.append(self.held)
                    self.held = b""
                    quiet.popleft()
                elif self.held:
                    raise ProtocolError("more than one answer to a quiet meta command")
                else:
                    self.held = reply
                continue
            out.append(reply)
        if start:
            del buf[:start]
            self.at -= start
        self.emitted += len(out)
        return out

    def expect_quiet(self, owed: int) -> None:
        """The next command sent is quiet and followed by `mn`; `owed` replies come first."""
        self.quiet.append(self.emitted + owed)


def entries(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, raw VALUE entry) of a complete get reply ending in END."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while raw.startswith(b"VALUE ", pos):
        end = raw.index(b"\r\n", pos)
        words = _words(raw[pos:end])
        stop = end + 2 + int(words[3]) + 2
        out.append((words[1], raw[pos:stop]))
        pos = stop
    return out
