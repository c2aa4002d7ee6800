"""Unpack a zip/war/jar or a tar (plain, gzip, bzip2 or xz) into a staging directory, safely."""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sidecars.warloader.copier import CHUNK, Progress, write_all
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.fsops import Modes, apply_modes
from sidecars.warloader.safety import RATIO_FLOOR, Limits, check_link, member_parts

_CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)
_COMPRESSED_TAR = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz


def archive_kind(path: Path) -> str | None:
    """'zip' or 'tar' from the first bytes (names lie), else None."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(_COMPRESSED_TAR) or head[257:262] == b"ustar":
        return "tar"
    return None


@dataclass(slots=True)
class _Unpacker:
    root: Path
    limits: Limits
    modes: Modes
    progress: Progress
    archive_size: int
    written: int = 0
    entries: int = 0
    links: set[tuple[str, ...]] = field(default_factory=set)
    files: set[tuple[str, ...]] = field(default_factory=set)

    def admit(self, name: str) -> tuple[tuple[str, ...], Path]:
        parts = member_parts(name)
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise UnsafeArchive(f"more than {self.limits.max_files} entries")
        for i in range(1, len(parts)):
            if parts[:i] in self.links:
                raise UnsafeArchive(f"entry {name!r} goes through a symbolic link")
        path = self.root.joinpath(*parts) if parts else self.root
        with _conflicts(name):
            path.parent.mkdir(parents=True, exist_ok=True)
        return parts, path

    def count(self, n: int) -> None:
        self.written += n
        if self.written > self.limits.max_bytes:
            raise UnsafeArchive(f"unpacks to more than {self.limits.max_bytes} bytes")
        if self.written > RATIO_FLOOR and self.written > self.limits.max_ratio * self.archive_size:
            raise UnsafeArchive(
                f"unpacks to more than {self.limits.max_ratio} times its size (zip bomb?)"
            )
        self.progress.add(n)

    def directory(self, name: str) -> None:
        _, path = self.admit(name)
        with _conflicts(name):
            path.mkdir(exist_ok=True)

    def regular(self, name: str, data: IO[bytes], source_mode: int) -> None:
        parts, path = self.admit(name)
        if not parts:
            raise UnsafeArchive(f"entry {name!r} has no name")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with _conflicts(name):
            fd = os.open(path, flags, 0o600)
        try:
            while chunk := data.read(CHUNK):
                self.count(len(chunk))
                write_all(fd, chunk)
        finally:
            os.close(fd)
        apply_modes(path, self.modes, source_mode)
        self.files.add(parts)

    def symlink(self, name: str, target: str) -> None:
        parts, path = self.admit(name)
        check_link(parts, target)
        with _conflicts(name):
            os.symlink(target, path)
        apply_modes(path, self.modes)
        self.links.add(parts)

    def hardlink(self, name: str, target: str) -> None:
        parts, path = self.admit(name)
        wanted = member_parts(target)
        if wanted not in self.files:
            raise UnsafeArchive(f"hard link {name!r} -> {target!r} is not to a file in the archive")
        with _conflicts(name):
            os.link(self.root.joinpath(*wanted), path, follow_symlinks=False)
        self.files.add(parts)

    def finish(self) -> None:
        # every directory, also those only implied by a file's path; deepest first, so a
        # read-only mode never blocks setting the ones inside it
        for dirpath, _, _ in sorted(os.walk(self.root), key=lambda w: -len(Path(w[0]).parts)):
            apply_modes(Path(dirpath), self.modes)


@contextmanager
def _conflicts(name: str) -> Iterator[None]:
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise UnsafeArchive(f"entry {name!r} is a duplicate or conflicts with another") from None


def extract(archive: Path, root: Path, limits: Limits, modes: Modes, progress: Progress) -> int:
    """Unpack `archive` into the empty directory `root`; return the number of entries."""
    kind = archive_kind(archive)
    if kind is None:
        raise UnsafeArchive("is not a zip/war/jar or tar(.gz/.bz2/.xz) archive")
    unpacker = _Unpacker(root, limits, modes, progress, max(archive.stat().st_size, 1))
    try:
        if kind == "zip":
            _unzip(archive, unpacker)
        else:
            _untar(archive, unpacker)
    except _CORRUPT as exc:
        raise UnsafeArchive(f"is corrupt: {exc}") from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # writing failed (full, read-only): the destination's fault
        raise UnsafeArchive(f"is corrupt: {exc}") from None  # bz2: "Invalid data stream"
    unpacker.finish()
    return unpacker.entries


def _unzip(archive: Path, u: _Unpacker) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        declared = sum(i.file_size for i in infos)
        if len(infos) > u.limits.max_files:
            raise UnsafeArchive(f"more than {u.limits.max_files} entries")
        if declared > u.limits.max_bytes:
            raise UnsafeArchive(f"unpacks to more than {u.limits.max_bytes} bytes")
        if declared > RATIO_FLOOR and declared > u.limits.max_ratio * u.archive_size:
            raise UnsafeArchive(
                f"unpacks to more than {u.limits.max_ratio} times its size (zip bomb?)"
            )
        for info in infos:
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.flag_bits & 0x1:
                raise UnsafeArchive(f"entry {info.filename!r} is encrypted")
            if stat.S_ISLNK(mode):
                if info.file_size > 4096:
                    raise UnsafeArchive(f"link {info.filename!r} has an oversized target")
                u.symlink(info.filename, zf.read(info).decode("utf-8", "replace"))
            elif info.is_dir():
                u.directory(info.filename)
            elif stat.S_IFMT(mode) in (0, stat.S_IFREG):
                with zf.open(info) as data:
                    u.regular(info.filename, data, mode)
            else:
                raise UnsafeArchive(f"entry {info.filename!r} is a device, fifo or socket")


def _untar(archive: Path, u: _Unpacker) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            if member.isdir():
                u.directory(member.name)
            elif member.isreg():
                data = tf.extractfile(member)
                assert data is not None
                with data:
                    u.regular(member.name, data, member.mode)
            elif member.issym():
                u.symlink(member.name, member.linkname)
            elif member.islnk():
                u.hardlink(member.name, member.linkname)
            else:
                raise UnsafeArchive(f"entry {member.name!r} is a device, fifo or socket")


__all__ = ["Limits", "archive_kind", "check_link", "extract", "member_parts"]
