"""The ambassador's listener file (YAML, or JSON for a .json name): listener specs or one
ValueError naming every problem; bounded in time and memory whatever the document does."""

from __future__ import annotations

import os
import tempfile

from sidecars.ambassador import spec
from sidecars.ambassador.config import Config

from ._common import split

MAX_LEN = 4096
_DIR = tempfile.mkdtemp(prefix="fuzz-listeners-")
_BASE = Config()


def fuzz(data: bytes) -> None:
    (pick,), rest = split(data, 1)
    path = os.path.join(_DIR, "listeners.json" if pick & 1 else "listeners.yaml")
    with open(path, "wb") as f:
        f.write(rest)
    try:
        listeners = spec.load_file(path, _BASE)
    except ValueError as exc:
        assert str(exc)
        return
    assert listeners and all(s.sources for s in listeners)
    assert len({s.settings.listen for s in listeners}) == len(listeners)
