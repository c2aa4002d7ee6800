"""File identity: (device, inode) plus a fingerprint of the first line, and the id prefix."""

from __future__ import annotations

import hashlib
import os

FINGERPRINT_MAX = 256


def fingerprint(head: bytes) -> str | None:
    """Hash of the file's first line (at most FINGERPRINT_MAX bytes); None while empty.
    The first line never changes in an append-only file once it is complete, so the
    fingerprint is stable from the first shipped record on, with no minimum file size."""
    nl = head.find(b"\n", 0, FINGERPRINT_MAX)
    head = head[: nl + 1] if nl >= 0 else head[:FINGERPRINT_MAX]
    if not head:
        return None
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def read_fingerprint(fd: int) -> str | None:
    """The fingerprint of an open file."""
    return fingerprint(os.pread(fd, FINGERPRINT_MAX, 0))


def file_uid(dev: int, ino: int, fp: str, generation: int) -> str:
    """16 hex digits naming one incarnation of a file; document ids are this plus the offset.
    `generation` counts truncations (copytruncate), so re-written offsets get new ids."""
    key = f"{dev}:{ino}:{fp}:{generation}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()
