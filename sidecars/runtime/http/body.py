"""Streaming message bodies (RFC 9112 sections 6-7): where a body ends in the bytes as they
arrive, whatever way they are split. Malformed framing raises ValueError."""

from __future__ import annotations

from sidecars.runtime.http.head import Head, check_block, no_body

MAX_LINE = 4096  # longest chunk-size line or trailer line
MAX_TRAILERS = 16384  # the whole trailer section


class Body:
    """A body that ends when the connection does (a response without framing)."""

    done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """(body bytes, bytes after the end of the body)."""
        return data, b""


class Length(Body):
    """A body of exactly `n` bytes."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = n == 0

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        left = self.left
        if len(data) < left:
            self.left = left - len(data)
            return data, b""
        self.left, self.done = 0, True
        return (data, b"") if len(data) == left else (data[:left], data[left:])


_SIZE, _DATA, _DATA_END, _TRAILER = range(4)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_MAX_SIZE_DIGITS = 15  # a chunk of 2**60 bytes is already absurd


class Chunked(Body):
    """A chunked body, passed on as it is (framing and trailers included) or, with `decode`,
    as its bare data. Chunk sizes are hex digits only, of bounded length; a chunk extension
    or trailer with a control character, and any line not ending in CRLF, is refused."""

    def __init__(self, decode: bool = False) -> None:
        self.decode = decode
        self.state = _SIZE
        self.left = 0
        self.line = b""
        self.trailers = 0
        self.done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        i, n = 0, len(data)
        out: list[bytes] = []
        while i < n and not self.done:
            if self.state == _DATA:
                take = min(self.left, n - i)
                if self.decode:
                    out.append(data[i : i + take])
                i += take
                self.left -= take
                if not self.left:
                    self.state = _DATA_END
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.line += data[i:]
                if len(self.line) > MAX_LINE:
                    raise ValueError("chunk line too long")
                if self.state == _DATA_END and not b"\r\n".startswith(self.line):
                    raise ValueError("malformed chunk end")
                i = n
                break
            line = self.line + data[i : j + 1] if self.line else data[i : j + 1]
            self.line = b""
            i = j + 1
            self._line(line)
        if self.decode:
            return b"".join(out), data[i:]
        return (data, b"") if i == n else (data[:i], data[i:])

    def _line(self, line: bytes) -> None:
        if len(line) > MAX_LINE or not line.endswith(b"\r\n"):
            raise ValueError("malformed chunk line")
        if self.state == _SIZE:
            text, _, ext = line[:-2].partition(b";")
            if ext and not _clean(ext):
                raise ValueError("control character in a chunk extension")
            text = text.rstrip(b" \t")  # BWS before an extension
            if not text or len(text) > _MAX_SIZE_DIGITS or not _HEX.issuperset(text):
                raise ValueError("malformed chunk size")
            self.left = int(text, 16)
            self.state = _DATA if self.left else _TRAILER
        elif self.state == _DATA_END:
            if line != b"\r\n":
                raise ValueError("malformed chunk end")
            self.state = _SIZE
        elif line == b"\r\n":  # the blank line after the trailers ends the body
            self.done = True
        else:
            self.trailers += len(line)
            if self.trailers > MAX_TRAILERS:
                raise ValueError("trailers too large")
            check_block(line)


def _clean(ext: bytes) -> bool:
    """No control character but tab (a bare CR could end the line for another parser)."""
    return not any(c < 0x20 and c != 0x09 or c == 0x7F for c in ext)


def request_body(head: Head) -> Body | None:
    """The body of a request, None when it has none (RFC 9112 section 6.3, rule 6)."""
    if head.chunked:
        return Chunked()
    return Length(head.length) if head.length else None


def response_body(head: Head, method: bytes, decode: bool = False) -> Body:
    """The body of a response to a `method` request; `decode` strips chunked framing."""
    if no_body(method, head.status):
        return Length(0)
    if head.chunked:
        return Chunked(decode)
    if head.length is not None:
        return Length(head.length)
    return Body()
