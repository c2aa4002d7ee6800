"""Small helpers the targets share: carving parameters out of the fuzzed bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def split(data: bytes, n: int) -> tuple[list[int], bytes]:
    """The first `n` bytes as small numbers (0 when the input is shorter), and the rest."""
    head = list(data[:n]) + [0] * max(0, n - len(data))
    return head, data[n:]


def pieces(data: bytes, seed: int) -> list[bytes]:
    """`data` cut into reads of varying sizes (as a socket or a file would hand them over)."""
    out, i, step = [], 0, seed % 17 + 1
    while i < len(data):
        out.append(data[i : i + step])
        i += step
        step = (step * 7 + seed) % 23 + 1
    return out


def parsed(
    parse: Callable[[bytes], T], errors: tuple[type[Exception], ...], data: bytes
) -> T | None:
    """`parse(data)`, or None when it raised one of `errors` (an HTTP one: with a 4xx/5xx
    status to answer)."""
    try:
        return parse(data)
    except errors as exc:
        assert 400 <= getattr(exc, "status", 400) <= 505, exc
        return None


def fed(
    feed: Callable[[bytes], list[T]], reads: Iterable[bytes], error: type[Exception]
) -> tuple[list[T], bool]:
    """Everything `feed` returns over `reads`, and whether it raised `error` (with a message;
    the reads stop there)."""
    out: list[T] = []
    for chunk in reads:
        try:
            out += feed(chunk)
        except error as exc:
            assert str(exc)
            return out, True
    return out, False
