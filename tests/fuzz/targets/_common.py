"""Small helpers the targets share: carving parameters out of the fuzzed bytes."""

from __future__ import annotations

import math


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


def finite_or_inf(value: float) -> bool:
    """A number a parser may return: anything but NaN."""
    return not math.isnan(value)
