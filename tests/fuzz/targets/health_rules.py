"""The adapter's health rules file (JSON or YAML): a list of rules or RuleError, within bounds."""

from __future__ import annotations

import os
import tempfile

from sidecars.adapter import rules

MAX_LEN = 4096
_DIR = tempfile.mkdtemp(prefix="fuzz-rules-")
_PATH = os.path.join(_DIR, "rules.yaml")


def fuzz(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        loaded = rules.load(_PATH)
    except rules.RuleError as exc:
        assert str(exc)
        return
    assert isinstance(loaded, list)
    assert len({r.name for r in loaded}) == len(loaded)
