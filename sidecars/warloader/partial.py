"""A partial download kept between runs, so a restarted init container resumes it by Range."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sidecars.warloader import beneath
from sidecars.warloader.copier import CHUNK, HashingSink, Progress
from sidecars.warloader.fsops import temp_name
from sidecars.warloader.remote import Validators

KEEP = ("partial", "partial.json")


def names(name: str) -> tuple[str, str]:
    """The partial data and its record (URL and the validators its bytes belong to)."""
    data = f".{name}.warloader-partial"
    return data, data + ".json"


def open_sink(
    dfd: int, dest: Path, name: str, url: str, progress: Progress
) -> tuple[int, HashingSink, Validators | None]:
    """Open the partial download of `url`: continue what an earlier run left (re-hashing it)
    when its record names the same URL and a validator, else start empty. Only a regular file
    of ours is continued: a link, hard link, FIFO or directory at the name is replaced."""
    data, meta = names(name)
    resume = _resumable(dfd, meta, url)
    fd = None if resume is None else beneath.open_regular(dfd, data, os.O_RDWR)
    if fd is None:
        beneath.clear(dfd, meta)
        fd = beneath.create_file(dfd, data)
        return fd, HashingSink(fd, progress, dest / data), None
    sink = HashingSink(fd, progress, dest / data)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        sink.hasher.update(view[:n])
        sink.size += n
    return fd, sink, resume


def _resumable(dfd: int, meta: str, url: str) -> Validators | None:
    try:
        raw = beneath.read_small(dfd, meta, 64 << 10)
        if raw is None:
            return None
        record = json.loads(raw)
        if record["url"] != _key(url):
            return None
        found = Validators(_text(record.get("etag")), _text(record.get("last_modified")))
        return found if found.if_range() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _text(value: object) -> str | None:
    """A validator from the record (which the app could have forged): header-safe text only."""
    if isinstance(value, str) and value.isprintable() and len(value) <= 1024:
        return value
    return None


def remember(dfd: int, name: str, url: str, v: Validators) -> None:
    """Record (durably, before any body byte) which version the partial bytes belong to."""
    _, meta = names(name)
    record = {"url": _key(url), "etag": v.etag, "last_modified": v.last_modified}
    beneath.write_atomic(dfd, meta, json.dumps(record).encode(), 0o600, temp_name(name, "tmp"))


def _key(url: str) -> str:
    # a digest, not the URL: query strings of pre-signed URLs are secrets, and the app can
    # read this volume
    return hashlib.sha256(url.encode()).hexdigest()


def discard(dfd: int, name: str) -> None:
    """Forget the partial download (done, or not worth resuming)."""
    for entry in names(name):
        beneath.clear(dfd, entry)
