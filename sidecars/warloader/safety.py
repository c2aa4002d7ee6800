"""Rules an unpacked or copied entry must follow to stay inside the destination, and limits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidecars.warloader.errors import UnsafeArchive

# Below this many unpacked bytes the ratio limit does not apply: tiny files of zeros compress
# a hundredfold and are harmless.
RATIO_FLOOR = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one archive may unpack to."""

    max_bytes: int
    max_files: int
    max_ratio: int


def member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive member, refusing anything that leaves the root."""
    if "\0" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise UnsafeArchive(f"entry {name!r} has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"entry {name!r} points outside the destination ('..')")
    return parts


def check_link(parts: tuple[str, ...], target: str) -> None:
    """A symlink at `parts` may point only inside the root: relative, its leading '..' no deeper
    than its own directory, and no '..' after a name (which could climb out through a link)."""
    where = "/".join(parts)
    if not target or "\0" in target or target.startswith("/"):
        raise UnsafeArchive(f"link {where!r} -> {target!r} points outside the destination")
    steps = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(steps) and steps[ups] == "..":
        ups += 1
    if ups > len(parts) - 1 or ".." in steps[ups:]:
        raise UnsafeArchive(f"link {where!r} -> {target!r} points outside the destination")
