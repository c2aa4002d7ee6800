"""Streaming HTTP/1.1 body framing: where a message body ends in the bytes as they arrive."""

from __future__ import annotations

MAX_LINE = 4096  # longest chunk-size or trailer line


class Body:
    """A body that ends when the connection does (a response without framing)."""

    done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes to forward, bytes after the end of the body)."""
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


class Chunked(Body):
    """A chunked body, forwarded as it is (framing and trailers included) or, with `decode`,
    as its bare data for an HTTP/1.0 peer. Malformed framing raises ValueError."""

    def __init__(self, decode: bool = False) -> None:
        self.decode = decode
        self.state = _SIZE
        self.left = 0
        self.line = b""
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
            text = line[:-2].split(b";", 1)[0].strip()
            if not text or len(text) > 16 or not _HEX.issuperset(text):
                raise ValueError("malformed chunk size")
            self.left = int(text, 16)
            self.state = _DATA if self.left else _TRAILER
        elif self.state == _DATA_END:
            if line != b"\r\n":
                raise ValueError("malformed chunk end")
            self.state = _SIZE
        elif line == b"\r\n":  # the blank line after the trailers ends the body
            self.done = True
