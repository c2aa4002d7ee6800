"""Paired rounds: a bench runs its targets in alternation, round by round, and compares them
round by round. The host of this machine sometimes slows a CPU for tens of seconds, invisibly
from inside; such a slowdown hits the runs of one round, which are adjacent in time, alike, so
the ratio of two targets' runs in one round (a paired ratio) cancels it, and the median of the
rounds' paired ratios is not moved by one slowed round (a ratio of the targets' medians, or one
run picked per target, pairs runs from different moments).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Paired:
    """The per-round ratios of two targets' figures and their median (nan: no round had a
    non-zero denominator)."""

    rounds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds) if self.rounds else math.nan

    def text(self, what: str = "") -> str:
        """`1.04x (0.97-1.08x, 5 rounds)`; `what` (say `anchor/ours`) follows the median."""
        if not self.rounds:
            return "n/a"
        head = f"{self.median:.2f}x{' ' + what if what else ''}"
        if len(self.rounds) == 1:
            return head
        low, high = min(self.rounds), max(self.rounds)
        return f"{head} ({low:.2f}-{high:.2f}x, {len(self.rounds)} rounds)"


def paired(over: Sequence[float], under: Sequence[float]) -> Paired:
    """`over[i] / under[i]` for each round i (a round whose `under` is 0 is left out).
    The two must have a figure for every round."""
    if len(over) != len(under):
        raise ValueError(f"paired rounds differ in number: {len(over)} and {len(under)}")
    return Paired(tuple(o / u for o, u in zip(over, under, strict=True) if u))


def median_index(values: Sequence[float]) -> int:
    """The index of the median of `values` (the lower middle one of an even count): the run
    whose other figures (latency, CPU busy) go beside the median."""
    if not values:
        raise ValueError("no values")
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(values) - 1) // 2]
