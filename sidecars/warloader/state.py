"""The record of what is installed under a name, kept next to it, for idempotent restarts."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass
from typing import Any

from sidecars.warloader import beneath
from sidecars.warloader.fsops import marker_name, temp_name

VERSION = 2


@dataclass(frozen=True, slots=True)
class Record:
    """What was installed at `name`, from which source, and how to recognise it untouched.

    `sha256` is the content's digest (the archive's when extracted), empty when not computed;
    `source_id` is the source's cheap identity (stat of a path, tree fingerprint, or the URL's
    ETag/Last-Modified); `installed` is (device, inode, mtime_ns) of the entry we put in place;
    `settings` is whatever else shaped the result (extract, modes, owner)."""

    name: str
    source: str
    sha256: str
    source_id: str
    etag: str | None
    last_modified: str | None
    installed: tuple[int, int, int]
    settings: str
    manifest: str

    def intact(self, dfd: int) -> bool:
        """The installed entry is still the one we put there, down to every file in it."""
        return (
            installed_id(dfd, self.name) == self.installed
            and manifest(dfd, self.name) == self.manifest
        )


def manifest(dfd: int, name: str) -> str:
    """A digest of the installed entry's metadata: for every file, link and directory in it,
    its relative path, type, mode, size, inode, mtime and ctime (and a link's target). Reads no
    contents, yet any write, truncation, deletion, addition, rename or chmod changes it: ctime
    cannot be set back by hand the way mtime can. Empty when the entry is missing. Walked by
    descriptors: a link swapped in anywhere is hashed as a link, never followed."""
    h = hashlib.sha256()
    try:
        _entry(h, dfd, name, ".")
        fd = os.open(name, beneath.DIR_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        return ""
    except NotADirectoryError:  # a file (or a link)
        return h.hexdigest()
    try:
        for dirpath, dirs, files, dirfd in os.fwalk(dir_fd=fd):
            dirs.sort()
            for entry in sorted(dirs + files):
                _entry(h, dirfd, entry, os.path.normpath(os.path.join(dirpath, entry)))
    except FileNotFoundError:
        return ""
    finally:
        os.close(fd)
    return h.hexdigest()


def _entry(h: hashlib._Hash, dirfd: int, name: str, rel: str) -> None:
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    link = os.readlink(name, dir_fd=dirfd) if stat.S_ISLNK(st.st_mode) else ""
    h.update(
        f"{rel}\0{st.st_mode:o}\0{st.st_size}\0{st.st_ino}\0{st.st_mtime_ns}\0"
        f"{st.st_ctime_ns}\0{link}\n".encode()
    )


def installed_id(dfd: int, name: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def read(dfd: int, name: str) -> Record | None:
    """The record for `name`, or None when absent or unreadable (then we reinstall)."""
    try:
        data = beneath.read_small(dfd, marker_name(name))
        if data is None:
            return None
        raw: dict[str, Any] = json.loads(data)
        if raw.pop("version", None) != VERSION:
            return None
        raw["installed"] = tuple(raw["installed"])
        record = Record(**raw)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    # the app could have forged or garbled it: the name and every field's type must hold
    return record if record.name == name and _well_typed(record) else None


_TEXT_FIELDS = ("name", "source", "sha256", "source_id", "settings", "manifest")


def _well_typed(record: Record) -> bool:
    return (
        all(isinstance(getattr(record, k), str) for k in _TEXT_FIELDS)
        and all(v is None or isinstance(v, str) for v in (record.etag, record.last_modified))
        and len(record.installed) == 3
        and all(type(v) is int for v in record.installed)
    )


def write(dfd: int, record: Record) -> None:
    """Write the record atomically (temp, fsync, rename, fsync dir)."""
    data = json.dumps({"version": VERSION, **asdict(record)}, indent=1).encode()
    tmp = temp_name(record.name, "tmp")
    beneath.write_atomic(dfd, marker_name(record.name), data, 0o644, tmp)
