"""The warloader's install record (a JSON marker beside what it installed, on a volume the
app can write): a Record with the declared field types and the asked-for name, or None
(then it installs again); nothing raises."""

from __future__ import annotations

import os
import tempfile

from sidecars.warloader import state
from sidecars.warloader.fsops import marker_name

MAX_LEN = 4096
_NAME = "app.war"
_DIR = tempfile.mkdtemp(prefix="fuzz-record-")
_DFD = os.open(_DIR, os.O_RDONLY | os.O_DIRECTORY)
_PATH = os.path.join(_DIR, marker_name(_NAME))
_STR = ("name", "source", "sha256", "source_id", "settings", "manifest")


def fuzz(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
    record = state.read(_DFD, _NAME)
    if record is None:
        return
    assert record.name == _NAME
    assert all(isinstance(getattr(record, k), str) for k in _STR), record
    assert all(v is None or isinstance(v, str) for v in (record.etag, record.last_modified))
    assert len(record.installed) == 3 and all(type(v) is int for v in record.installed), record
