"""Config documents (YAML, JSON) read within bounds: file size, nesting, no YAML aliases."""

from __future__ import annotations

import functools
import json
import os
import stat
from typing import Any

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 16  # nesting of YAML/JSON collections (a listener file needs 4, a rules file 5)


def read_bounded(path: str) -> bytes:
    """A whole file of at most MAX_FILE_BYTES; ValueError otherwise (unreadable included)."""
    try:
        # non-blocking open: a FIFO put in the file's place must not block the reader (the
        # event loop) waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("cannot read: not a regular file")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES >> 20} MiB")
    return data


@functools.cache
def _bounded_loader() -> Any:
    """The YAML loader class, made on first use: most sidecars start without a YAML document,
    and PyYAML costs about 1 MiB of RSS and 15 ms of start-up."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """safe_load without aliases (an alias bomb expands a small file into billions of nodes)
        and with bounded nesting (the composer recurses once per level)."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.YAMLError(f"aliases (*name) are not allowed, line {mark.line + 1}")
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                    raise yaml.YAMLError(
                        f"nested deeper than {MAX_DEPTH} levels, line {mark.line + 1}"
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BoundedLoader


def parse_document(text: str, json_file: bool) -> Any:
    """A config document, its size and shape bounded; ValueError with one line."""
    if json_file:
        try:
            doc = json.loads(text)
        except RecursionError:
            raise ValueError("not valid JSON: nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if _depth(doc) > MAX_DEPTH:
            raise ValueError(f"not valid JSON: nested deeper than {MAX_DEPTH} levels")
        return doc
    import yaml

    loader = None
    try:
        loader = _bounded_loader()(text)  # already reads: a NUL or other control character fails
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not valid YAML: {first}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _depth(doc: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                todo.extend((child, level + 1) for child in node)
    return deepest
