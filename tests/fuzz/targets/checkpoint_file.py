"""The shipper's checkpoint file (JSON on the state volume): entries whose fields have their
declared types, or CheckpointError (the file is then moved aside); nothing else escapes."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from sidecars.logshipper.checkpoint import CheckpointError, CheckpointStore, Entry

MAX_LEN = 4096
_STORE = CheckpointStore(tempfile.mkdtemp(prefix="fuzz-checkpoint-"))
_TYPES = {f.name: f.type for f in dataclasses.fields(Entry)}


def _typed(entry: Entry) -> bool:
    for name, kind in _TYPES.items():
        value = getattr(entry, name)
        if kind == "str" and not isinstance(value, str):
            return False
        if kind == "int" and (type(value) is not int or value < 0):
            return False
        if kind == "list[int]" and not (
            isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)
        ):
            return False
    return True


def fuzz(data: bytes) -> None:
    Path(_STORE.path).write_bytes(data)
    try:
        entries = _STORE.load()
    except CheckpointError as exc:
        assert str(exc)
        return
    for uid, entry in entries.items():
        assert isinstance(uid, str) and isinstance(entry, Entry)
        assert _typed(entry), entry
