"""The benches' plain-text tables: left-aligned columns two spaces apart."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[Sequence[str]], head: Sequence[str] | None = None) -> None:
    """Print `rows`; a `head`, when given, comes first with a rule of dashes under it."""
    lines = [tuple(head), *rows] if head is not None else list(rows)
    if not lines:
        return
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    if head is not None:
        lines.insert(1, tuple("-" * w for w in widths))
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
