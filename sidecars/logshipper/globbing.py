"""Expand the path globs over a directory tree the application controls, in bounded work.

`glob.iglob` recurses once per directory level (a tree 1,000 deep raises RecursionError), lists
whole directories into memory, and follows directory symlinks into loops or into a chain of
directories each linking twice to the next (2^n paths). This walker keeps a stack of open
directory iterators at most MAX_DEPTH deep, reads directories lazily, enters each directory
reached through a symlink once and only when `may_enter` allows it. Syntax as glob's:
`*`, `?`, `[...]` within a name, `**` for any number of directories, hidden names only
matched by a part that starts with a dot."""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Callable, Iterator

MAX_DEPTH = 64  # directory levels below a glob's fixed part that `**` descends


def _closure(states: set[int], parts: list[str]) -> set[int]:
    """A `**` may match no directory at all: its state also stands at the next part."""
    out = set(states)
    todo = list(states)
    while todo:
        i = todo.pop()
        if i < len(parts) and parts[i] == "**" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


def _name_matches(name: str, part: str) -> bool:
    if name.startswith(".") and not part.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, part)


def expand(pattern: str, may_enter: Callable[[str], bool]) -> Iterator[str]:
    """The paths `pattern` names, lazily. `may_enter(path)` is asked before entering a
    directory that is a symlink."""
    parts = pattern.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    if not any(glob.has_magic(p) for p in parts[fixed:]):
        if os.path.lexists(pattern):
            yield pattern
        return
    prefix = os.sep.join(parts[:fixed])
    base = prefix or (os.sep if pattern.startswith(os.sep) else ".")
    rest = parts[fixed:]
    label = prefix or (os.sep if pattern.startswith(os.sep) else "")
    yield from _walk(base, label, rest, may_enter)


def _walk(
    base: str, label: str, parts: list[str], may_enter: Callable[[str], bool]
) -> Iterator[str]:
    entered: set[tuple[int, int]] = set()  # directories entered through a symlink
    stack: list[tuple[Iterator[os.DirEntry[str]], str, set[int]]] = []

    def push(directory: str, path: str, states: set[int]) -> None:
        try:
            it = os.scandir(directory)
        except OSError:
            return
        stack.append((it, path, states))

    push(base, label, _closure({0}, parts))
    try:
        while stack:
            it, path, states = stack[-1]
            entry = next(it, None)
            if entry is None:
                it.close()  # type: ignore[attr-defined]
                stack.pop()
                continue
            name = entry.name
            full = os.path.join(path, name) if path else name
            advanced = {
                i + 1
                for i in states
                if i < len(parts) and parts[i] != "**" and _name_matches(name, parts[i])
            }
            stars = {
                i
                for i in states
                if i < len(parts) and parts[i] == "**" and not name.startswith(".")
            }
            if len(parts) in _closure(advanced | stars, parts):
                yield full
            deeper = _closure(advanced | stars, parts)
            if len(stack) >= MAX_DEPTH or not any(i < len(parts) for i in deeper):
                continue
            try:
                if not entry.is_dir():
                    continue
                if entry.is_symlink():
                    st = os.stat(entry.path)
                    if (st.st_dev, st.st_ino) in entered or not may_enter(entry.path):
                        continue
                    entered.add((st.st_dev, st.st_ino))
            except OSError:
                continue
            push(entry.path, full, deeper)
    finally:
        for it, _, _ in stack:
            it.close()  # type: ignore[attr-defined]
