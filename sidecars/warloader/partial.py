"""A partial download kept between runs, so a restarted init container resumes it by Range."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sidecars.runtime.files import write_atomic
from sidecars.warloader.copier import CHUNK, HashingSink, Progress
from sidecars.warloader.fsops import remove
from sidecars.warloader.remote import Validators

KEEP = ("partial", "partial.json")


def paths(dest: Path, name: str) -> tuple[Path, Path]:
    """The partial data and its record (URL and the validators its bytes belong to)."""
    data = dest / f".{name}.warloader-partial"
    return data, data.with_name(data.name + ".json")


def open_sink(
    dest: Path, name: str, url: str, progress: Progress
) -> tuple[int, HashingSink, Validators | None]:
    """Open the partial download of `url`: continue what an earlier run left (re-hashing it)
    when its record names the same URL and a validator, else start empty."""
    data, meta = paths(dest, name)
    resume = _resumable(data, meta, url)
    if resume is None:
        remove(meta)
        fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        return fd, HashingSink(fd, progress, data), None
    fd = os.open(data, os.O_RDWR | os.O_CLOEXEC)
    sink = HashingSink(fd, progress, data)
    os.lseek(fd, 0, os.SEEK_SET)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        sink.hasher.update(view[:n])
        sink.size += n
    return fd, sink, resume


def _resumable(data: Path, meta: Path, url: str) -> Validators | None:
    try:
        record = json.loads(meta.read_bytes())
        if record["url"] != _key(url) or not data.exists():
            return None
        found = Validators(record.get("etag"), record.get("last_modified"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if found.if_range() else None


def remember(dest: Path, name: str, url: str, v: Validators) -> None:
    """Record (durably, before any body byte) which version the partial bytes belong to."""
    _, meta = paths(dest, name)
    tmp = meta.with_name(meta.name + ".tmp")
    record = {"url": _key(url), "etag": v.etag, "last_modified": v.last_modified}
    body = json.dumps(record).encode()
    write_atomic(meta, body, 0o600, tmp)


def _key(url: str) -> str:
    # a digest, not the URL: query strings of pre-signed URLs are secrets, and the app can
    # read this volume
    return hashlib.sha256(url.encode()).hexdigest()


def discard(dest: Path, name: str) -> None:
    """Forget the partial download (done, or not worth resuming)."""
    for path in paths(dest, name):
        remove(path)
