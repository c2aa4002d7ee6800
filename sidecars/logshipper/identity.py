"""File identity: (device, inode) plus a fingerprint of the first line, and the id prefix."""

from __future__ import annotations

import os

try:  # CPython's own blake2b: hashlib would load OpenSSL's too (0.5 MiB idle) for nothing
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b

FINGERPRINT_MAX = 256


def head_length(head: bytes, partial: bool = False) -> int:
    """How many leading bytes the fingerprint covers: the first line (at most
    FINGERPRINT_MAX bytes), or 0 while that line is incomplete, unless `partial` (it is
    about to be shipped as it is). The first line never changes in an append-only file,
    so the fingerprint is stable from the first shipped record on, with no minimum size."""
    nl = head.find(b"\n", 0, FINGERPRINT_MAX)
    if nl >= 0:
        return nl + 1
    if len(head) >= FINGERPRINT_MAX:
        return FINGERPRINT_MAX
    return len(head) if partial else 0


def digest(data: bytes) -> str:
    return blake2b(data, digest_size=8).hexdigest()


def fingerprint(head: bytes, partial: bool = False) -> tuple[str, int] | None:
    """(hash, length) of the head of a file, or None while there is nothing to identify."""
    n = head_length(head, partial)
    return (digest(head[:n]), n) if n else None


def read_fingerprint(fd: int, partial: bool = False) -> tuple[str, int] | None:
    """The fingerprint of an open file."""
    return fingerprint(os.pread(fd, FINGERPRINT_MAX, 0), partial)


def still_matches(fd: int, fp: str, length: int) -> bool:
    """The file still starts with the bytes fingerprinted as (fp, length)."""
    data = os.pread(fd, length, 0)
    return len(data) == length and digest(data) == fp


def file_uid(dev: int, ino: int, fp: str, generation: int) -> str:
    """16 hex digits naming one incarnation of a file; document ids are this plus the offset.
    `generation` counts truncations (copytruncate), so re-written offsets get new ids."""
    key = f"{dev}:{ino}:{fp}:{generation}".encode()
    return blake2b(key, digest_size=8).hexdigest()
