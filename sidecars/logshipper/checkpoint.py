"""Acknowledged read positions on the state volume, written atomically (temp, fsync, rename)."""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import asdict, dataclass, field

import orjson

from sidecars.runtime.files import write_atomic

VERSION = 1


@dataclass(slots=True)
class Entry:
    """Where one file incarnation is acknowledged up to."""

    path: str
    dev: int
    ino: int
    fp: str
    generation: int
    offset: int
    fp_len: int = 0
    cuts: list[int] = field(default_factory=list)  # partial records' ends past `offset`


def _well_typed(entry: Entry) -> bool:
    """Text where text belongs, whole numbers of at least 0 everywhere else."""
    numbers = (entry.dev, entry.ino, entry.generation, entry.offset, entry.fp_len)
    return (
        isinstance(entry.path, str)
        and isinstance(entry.fp, str)
        and isinstance(entry.cuts, list)
        and all(type(n) is int and n >= 0 for n in (*numbers, *entry.cuts))
    )


class CheckpointError(Exception):
    """The checkpoint file exists but cannot be used."""


class CheckpointStore:
    """One JSON file mapping file uid -> Entry. Loading tolerates a missing file; a corrupt
    one is an error the caller decides about (re-reading from 0 is safe: ids are stable)."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, "checkpoints.json")
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._written = 0

    def ticket(self) -> int:
        """Take a number when the entries are collected (in the event loop): a save from a
        thread that collected earlier must not overwrite one that collected later."""
        return next(self._tickets)

    def load(self) -> dict[str, Entry]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        try:
            doc = orjson.loads(raw)
            if doc.get("version") != VERSION:
                raise CheckpointError(f"{self.path}: unknown version {doc.get('version')!r}")
            entries = {uid: Entry(**fields) for uid, fields in doc["files"].items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{self.path}: not a checkpoint file ({exc})") from None
        for uid, entry in entries.items():
            if not _well_typed(entry):  # a wrong type would fail later, in the tailer
                raise CheckpointError(f"{self.path}: entry {uid[:80]!r} has a wrong field type")
        return entries

    def save(self, entries: dict[str, Entry], ticket: int = 0) -> None:
        """Replace the file atomically; blocking (fsync). With the `ticket` taken when
        `entries` were collected, an older collection never replaces a newer one."""
        body = orjson.dumps(
            {"version": VERSION, "files": {uid: asdict(e) for uid, e in entries.items()}}
        )
        with self._lock:
            if ticket and ticket <= self._written:
                return
            write_atomic(self.path, body)
            self._written = max(self._written, ticket)

    def quarantine(self) -> str:
        """Move a corrupt checkpoint aside so the next save starts clean."""
        aside = self.path + ".corrupt"
        os.replace(self.path, aside)
        return aside
