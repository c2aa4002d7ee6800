"""Round-trip YAML: comments, key order, quotes, anchors and flow style of the input kept."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from sidecars.inject.errors import InjectError


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the layout of examples/pods
    yaml.width = 4096  # never fold a long value onto a second line
    return yaml


def load_all(text: str) -> list[Any]:
    try:
        return list(_yaml().load_all(text))
    except MarkedYAMLError as e:
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        problem = e.problem or e.context or "bad YAML"
        raise InjectError(f"not valid YAML{where}: {problem}") from None
    except YAMLError as e:
        raise InjectError(f"not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise InjectError("YAML nested too deeply to read") from None
    except TypeError as e:  # a mapping key that cannot be one (`? {a: 1}: b`)
        raise InjectError(f"not valid YAML: {e}") from None


def _same(a: Any, b: Any, seen: set[tuple[int, int]]) -> bool:
    """Equal as data; each pair of shared (aliased) nodes is compared once, and NaN is NaN."""
    if isinstance(a, (dict, list)):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k], seen) for k in a)
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_same(x, y, seen) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return bool(a == b)


def dump_all(docs: list[Any]) -> str:
    """The documents as YAML, read back to be sure they say what they said (never write what
    cannot be read, or reads as something else)."""
    out = io.StringIO()
    try:
        _yaml().dump_all(docs, out)
    except RecursionError:
        raise InjectError("YAML nested too deeply to write") from None
    text = out.getvalue()
    try:
        same = _same(load_all(text), docs, set())
    except InjectError:
        same = False
    if not same:
        raise InjectError("this YAML cannot be written back as it is (a ruamel.yaml limit)")
    return text
