"""SIDECARS_PURE=1: every sidecars module is imported from its source, never from a compiled
extension module beside it (which Python's import would otherwise prefer)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    SOURCE_SUFFIXES,
    FileFinder,
    ModuleSpec,
    SourceFileLoader,
    SourcelessFileLoader,
)
from types import ModuleType


class SourceOnly:
    """A meta path finder for sidecars' submodules that knows only .py and .pyc files."""

    _finders: dict[str, FileFinder] = {}

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is None or not name.startswith("sidecars."):
            return None
        for entry in path:
            finder = cls._finders.get(entry)
            if finder is None:
                finder = cls._finders[entry] = FileFinder(
                    entry,
                    (SourceFileLoader, SOURCE_SUFFIXES),
                    (SourcelessFileLoader, BYTECODE_SUFFIXES),
                )
            spec = finder.find_spec(name, target)
            if spec is not None:
                return spec
        return None


def install() -> None:
    if SourceOnly not in sys.meta_path:
        sys.meta_path.insert(0, SourceOnly)
