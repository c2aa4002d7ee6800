"""The loop the client command readers of the sharding modes share: take every complete
command from a byte buffer, stop at a broken one and remember why."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Framing(Generic[T]):
    """Subclasses give `_next`: the command at a position and where it ends, None for one not
    all here yet; a ValueError for broken input."""

    __slots__ = ("buf", "error")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.error = ""  # what broke the stream: nothing after it is read

    def feed(self, data: bytes) -> list[T]:
        """Every complete command now buffered. Broken or oversized input sets `error`; the
        commands before it are still returned."""
        buf = self.buf
        buf += data
        out: list[T] = []
        pos = 0
        while pos < len(buf):
            try:
                got = self._next(pos)
            except ValueError as exc:
                self.error = str(exc)
                buf.clear()
                return out
            if got is None:
                break
            command, pos = got
            if command is not None:
                out.append(command)
        if pos:
            del buf[:pos]
        return out

    def _next(self, pos: int) -> tuple[T | None, int] | None:
        raise NotImplementedError
