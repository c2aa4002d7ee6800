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


def dump_all(docs: list[Any]) -> str:
    out = io.StringIO()
    try:
        _yaml().dump_all(docs, out)
    except RecursionError:
        raise InjectError("YAML nested too deeply to write") from None
    return out.getvalue()
