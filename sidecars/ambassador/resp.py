"""RESP2, bounded: commands from clients (arrays of bulk strings or inline lines) and the span
of each reply from a shard. Every length is checked before anything is buffered for it, so a
hostile peer costs at most the limits, never unbounded memory."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.ambassador.framing import Framing

MAX_DEPTH = 16  # nesting of arrays in a shard's reply
FAST_CARRY = 64 << 10  # a longer partial command stays with the general reader


class ProtocolError(ValueError):
    """The peer broke RESP or a limit; the message names what."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Largest bulk string, array and inline command accepted."""

    max_bulk: int = 64 << 20
    max_array: int = 65536
    max_inline: int = 64 << 10


def _length(buf: bytearray, start: int, end: int, what: str, limit: int) -> int:
    """The decimal length in buf[start:end]; -1 is allowed (a null)."""
    raw = bytes(buf[start:end])
    if not raw or len(raw) > 12 or not (raw.isdigit() or (raw[0:1] == b"-" and raw[1:].isdigit())):
        raise ProtocolError(f"invalid {what} length {raw[:20]!r}")
    n = int(raw)
    if n < -1:
        raise ProtocolError(f"invalid {what} length {n}")
    if n > limit:
        raise ProtocolError(f"{what} length {n} is over the limit of {limit}")
    return n


def _header(data: bytes, at: int, most: int) -> tuple[int, int]:
    """The 1 to `most` decimal digits at `at` that end their line, and where the next line
    starts; (-1, 0) for anything else or a line not all here. Byte by byte: compiled, a
    compare and a digit step each, where find() and int() cost a call each with its arguments
    parsed (12.7k instructions a command before)."""
    size, end, value = len(data), at, 0
    while end < size and 0x30 <= data[end] <= 0x39 and end - at < most:
        value = value * 10 + data[end] - 0x30
        end += 1
    if end == at or end + 1 >= size or data[end] != 13 or data[end + 1] != 10:
        return -1, 0
    return value, end + 2


Command = tuple[list[bytes], bytes]  # arguments, its RESP bytes (empty for an inline command)


class CommandReader(Framing[Command]):
    """Splits a client's byte stream into commands (lists of arguments)."""

    __slots__ = ("limits",)

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    def feed(self, data: bytes) -> list[Command]:
        """Every complete command now buffered. The common shape (arrays of bulk strings with
        plain lengths under the limits) is read here in one pass over immutable bytes; the
        first command of any other shape, and any command not all here yet, goes to the
        general reader (`_next`), which names what is wrong."""
        buf = self.buf
        if buf:
            if len(buf) > FAST_CARRY:  # a big command arriving piecemeal: no copy of it per read
                return super().feed(data)
            buf += data
            data = bytes(buf)
            buf.clear()
        limits = self.limits
        max_array, max_bulk = limits.max_array, limits.max_bulk
        size = len(data)
        out: list[Command] = []
        pos = 0
        while pos < size:
            if data[pos] != 0x2A:  # '*'
                break
            count, at = _header(data, pos + 1, 15)
            if not 0 < count <= max_array:
                break
            args: list[bytes] = []
            for _ in range(count):
                if at >= size or data[at] != 0x24:  # '$'
                    break
                length, start = _header(data, at + 1, 11)
                if length < 0:
                    break
                at = start + length
                if length > max_bulk or at + 1 >= size or data[at] != 13 or data[at + 1] != 10:
                    break
                args.append(data[start:at])
                at += 2
            else:
                out.append((args, data[pos:at]))
                pos = at
                continue
            break
        if pos < size:
            return out + super().feed(data[pos:])
        return out

    def _next(self, pos: int) -> tuple[Command | None, int] | None:
        array = self.buf[pos] == 0x2A  # '*'
        got = self._array(pos) if array else self._inline(pos)
        if got is None:
            return None
        args, end = got
        if not args:
            return None, end
        return (args, bytes(self.buf[pos:end]) if array else b""), end

    def _line_end(self, pos: int, limit: int, what: str) -> int:
        end = self.buf.find(b"\r\n", pos, pos + limit + 2)
        if end < 0 and len(self.buf) - pos > limit + 1:
            raise ProtocolError(f"{what} longer than {limit} bytes")
        return end

    def _inline(self, pos: int) -> tuple[list[bytes], int] | None:
        limit = self.limits.max_inline
        end = self.buf.find(b"\n", pos, pos + limit + 1)
        if end < 0:
            if len(self.buf) - pos > limit:
                raise ProtocolError(f"inline command longer than {limit} bytes")
            return None
        line = bytes(self.buf[pos:end]).rstrip(b"\r")
        if b'"' in line or b"'" in line:
            raise ProtocolError("quoted inline commands are not supported")
        args = line.split()
        if len(args) > self.limits.max_array:
            raise ProtocolError(f"inline command of more than {self.limits.max_array} arguments")
        return args, end + 1

    def _array(self, pos: int) -> tuple[list[bytes], int] | None:
        # the hot path: a digits-only length is taken as is; anything else goes to _length,
        # which names what is wrong
        buf, limits = self.buf, self.limits
        size = len(buf)
        end = self._line_end(pos, 16, "array header")
        if end < 0:
            return None
        n = _length(buf, pos + 1, end, "array", limits.max_array)
        pos = end + 2
        find, max_bulk = buf.find, limits.max_bulk
        args: list[bytes] = []
        for _ in range(n):
            if pos >= size:
                return None
            if buf[pos] != 0x24:  # '$'
                raise ProtocolError(f"expected '$', got {bytes(buf[pos : pos + 1])!r}")
            end = find(b"\r\n", pos, pos + 18)
            if end < 0:
                if size - pos > 17:
                    raise ProtocolError("bulk header longer than 16 bytes")
                return None
            raw = buf[pos + 1 : end]
            if end - pos > 12 or not raw.isdigit():
                if _length(buf, pos + 1, end, "bulk", max_bulk) < 0:
                    raise ProtocolError("null bulk string in a command")
            length = int(raw)
            if length > max_bulk:
                raise ProtocolError(f"bulk length {length} is over the limit of {max_bulk}")
            start = end + 2
            stop = start + length
            if size < stop + 2:
                return None
            if buf[stop] != 13 or buf[stop + 1] != 10:
                raise ProtocolError("bulk string not followed by CRLF")
            args.append(bytes(buf[start:stop]))
            pos = stop + 2
        return args, pos


class ReplyReader:
    """Splits a shard's byte stream into the raw bytes of each complete reply."""

    __slots__ = ("buf", "limits")

    def __init__(self, limits: Limits) -> None:
        self.buf = bytearray()
        self.limits = limits

    def feed(self, data: bytes) -> list[bytes]:
        """Every complete reply now buffered. Simple replies and bulk strings are read here in
        one pass over immutable bytes; the first of any other shape (arrays), and a reply not
        all here yet, go to the general reader (`_skip`)."""
        buf = self.buf
        if buf:
            if len(buf) > FAST_CARRY:
                return self._buffered(data)
            buf += data
            data = bytes(buf)
            buf.clear()
        size, limits = len(data), self.limits
        max_bulk, max_line = limits.max_bulk, limits.max_inline + 2
        out: list[bytes] = []
        pos = 0
        while pos < size:  # byte by byte, as CommandReader.feed
            kind = data[pos]
            if kind == 0x24:  # '$'
                length, start = _header(data, pos + 1, 11)
                if length < 0:  # a null ($-1), or for the general reader
                    if pos + 4 >= size or data[pos + 1] != 0x2D or data[pos + 2] != 0x31:
                        break
                    if data[pos + 3] != 13 or data[pos + 4] != 10:
                        break
                    stop = pos + 5
                else:
                    stop = start + length + 2
                    if length > max_bulk or stop > size:
                        break
                    if data[stop - 2] != 13 or data[stop - 1] != 10:
                        break
            elif kind == 0x2B or kind == 0x3A or kind == 0x2D:  # '+', ':', '-'
                limit = min(size, pos + max_line)
                end = pos + 1
                while end + 1 < limit and (data[end] != 13 or data[end + 1] != 10):
                    end += 1
                if end + 1 >= limit:
                    break
                stop = end + 2
            else:
                break
            out.append(data[pos:stop])
            pos = stop
        if pos < size:
            out += self._buffered(data[pos:])
        return out

    def _buffered(self, data: bytes) -> list[bytes]:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while pos < len(buf):
            end = self._skip(pos, 0)
            if end < 0:
                break
            out.append(bytes(buf[pos:end]))
            pos = end
        if pos:
            del buf[:pos]
        return out

    def _skip(self, pos: int, depth: int) -> int:
        """The end of the reply at `pos`, -1 when it is not all here yet."""
        buf, limits = self.buf, self.limits
        end = buf.find(b"\r\n", pos, pos + limits.max_inline + 2)
        if end < 0:
            if len(buf) - pos > limits.max_inline + 1:
                raise ProtocolError("reply line too long")
            return -1
        kind = buf[pos]
        if kind in b"+-:":
            return end + 2
        if kind == 0x24:  # '$'
            size = _length(buf, pos + 1, end, "bulk", limits.max_bulk)
            if size < 0:
                return end + 2
            stop = end + 2 + size + 2
            if len(buf) < stop:
                return -1
            if buf[stop - 2 : stop] != b"\r\n":
                raise ProtocolError("bulk reply not followed by CRLF")
            return stop
        if kind == 0x2A:  # '*'
            if depth >= MAX_DEPTH:
                raise ProtocolError(f"reply nested deeper than {MAX_DEPTH}")
            n = _length(buf, pos + 1, end, "array", limits.max_array)
            return self._elements(end + 2, max(n, 0), depth + 1)
        raise ProtocolError(f"unknown reply type {bytes(buf[pos : pos + 1])!r}")

    def _elements(self, pos: int, count: int, depth: int) -> int:
        """The end of `count` values from `pos`, -1 when they are not all here yet."""
        buf = self.buf
        for _ in range(count):
            if pos >= len(buf):
                return -1
            pos = self._skip(pos, depth)
            if pos < 0:
                return -1
        return pos


def elements(raw: bytes, reader_type: type[ReplyReader] = ReplyReader) -> list[bytes]:
    """The raw elements of a complete array reply (one level), split by `reader_type`."""
    reader = reader_type(Limits(max_bulk=len(raw), max_array=len(raw), max_inline=len(raw)))
    reader.buf += raw
    end = raw.index(b"\r\n")
    n = int(raw[1:end])
    out: list[bytes] = []
    pos = end + 2
    for _ in range(max(n, 0)):
        stop = reader._skip(pos, 1)
        out.append(raw[pos:stop])
        pos = stop
    return out


def command(*args: bytes) -> bytes:
    """One command as an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def error(message: str) -> bytes:
    return b"-" + message.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\r\n"
