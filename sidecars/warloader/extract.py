"""Unpack a zip/war/jar or a tar (plain, gzip, bzip2 or xz) into a staging directory, safely."""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from sidecars.warloader.copier import CHUNK, Progress, write_all
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.fsops import Modes, apply_modes
from sidecars.warloader.safety import RATIO_FLOOR, Limits, check_link, member_parts
from sidecars.warloader.stagetree import StageTree
from sidecars.warloader.zipdir import bound_zip_directory

_CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
)
_COMPRESSED_TAR = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
# tarfile reads a pax header or GNU long name/link whole into memory, whatever size it claims:
# these bounds are checked on the claimed size, before a byte of it is read
MAX_HEADER = 64 << 10
_MAX_CHAIN = 8  # extended headers in front of one member
_chain = threading.local()


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member parser with every extended header bounded before it is read, and no
    GNU sparse members (their maps grow with every extension block)."""

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        with _bounded(self, "pax header"):
            return super()._proc_pax(tarfile)  # type: ignore[misc,no-any-return]

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        with _bounded(self, "GNU long name"):
            return super()._proc_gnulong(tarfile)  # type: ignore[misc,no-any-return]

    def _proc_sparse(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        raise UnsafeArchive(f"entry {self.name!r} is a GNU sparse file")


@contextmanager
def _bounded(info: tarfile.TarInfo, what: str) -> Iterator[None]:
    if info.size > MAX_HEADER:
        raise UnsafeArchive(f"a {what} claims {info.size} bytes (more than {MAX_HEADER})")
    depth = getattr(_chain, "depth", 0)
    if depth >= _MAX_CHAIN:
        raise UnsafeArchive(f"more than {_MAX_CHAIN} extended headers in front of one entry")
    _chain.depth = depth + 1
    try:
        yield
    finally:
        _chain.depth = depth


def archive_kind(fd: int) -> str | None:
    """'zip' or 'tar' from the first bytes (names lie), else None."""
    head = os.pread(fd, 512, 0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(tuple(_COMPRESSED_TAR)) or head[257:262] == b"ustar":
        return "tar"
    return None


@dataclass(slots=True)
class _Unpacker:
    tree: StageTree
    limits: Limits
    modes: Modes
    progress: Progress
    archive_size: int
    written: int = 0
    entries: int = 0
    links: set[tuple[str, ...]] = field(default_factory=set)
    files: set[tuple[str, ...]] = field(default_factory=set)

    def admit(self, name: str) -> tuple[str, ...]:
        parts = member_parts(name)
        self.entries += 1
        if self.entries > self.limits.max_files:
            raise UnsafeArchive(f"more than {self.limits.max_files} entries")
        for i in range(1, len(parts)):
            if parts[:i] in self.links:
                raise UnsafeArchive(f"entry {name!r} goes through a symbolic link")
        return parts

    def declare(self, size: int) -> None:
        """Refuse a member whose declared size breaks a limit, before reading any of it."""
        self.check(self.written + size)

    def check(self, total: int) -> None:
        if total > self.limits.max_bytes:
            raise UnsafeArchive(f"unpacks to more than {self.limits.max_bytes} bytes")
        if total > RATIO_FLOOR and total > self.limits.max_ratio * self.archive_size:
            raise UnsafeArchive(
                f"unpacks to more than {self.limits.max_ratio} times its size (zip bomb?)"
            )

    def count(self, n: int) -> None:
        self.written += n
        self.check(self.written)
        self.progress.add(n)

    def directory(self, name: str) -> None:
        self.tree.directory(self.admit(name), name)

    def regular(self, name: str, data: IO[bytes], source_mode: int) -> None:
        parts = self.admit(name)
        if not parts:
            raise UnsafeArchive(f"entry {name!r} has no name")
        fd = self.tree.create(parts, name)
        try:
            while chunk := data.read(CHUNK):
                self.count(len(chunk))
                write_all(fd, chunk)
            apply_modes(fd, self.modes, source_mode)
        finally:
            os.close(fd)
        self.files.add(parts)

    def symlink(self, name: str, target: str) -> None:
        parts = self.admit(name)
        if not parts:
            raise UnsafeArchive(f"entry {name!r} has no name")
        check_link(parts, target)
        self.tree.symlink(parts, target, name)
        self.links.add(parts)

    def hardlink(self, name: str, target: str) -> None:
        parts = self.admit(name)
        wanted = member_parts(target)
        if not parts or wanted not in self.files:
            raise UnsafeArchive(f"hard link {name!r} -> {target!r} is not to a file in the archive")
        self.tree.hardlink(parts, wanted, name)
        self.files.add(parts)


def extract(archive: int, root: int, limits: Limits, modes: Modes, progress: Progress) -> int:
    """Unpack the archive open at `archive` into the empty directory open at `root`; return
    the number of entries."""
    kind = archive_kind(archive)
    if kind is None:
        raise UnsafeArchive("is not a zip/war/jar or tar(.gz/.bz2/.xz) archive")
    tree = StageTree(root, modes)
    unpacker = _Unpacker(tree, limits, modes, progress, max(os.fstat(archive).st_size, 1))
    try:
        with os.fdopen(os.dup(archive), "rb") as f:
            if kind == "zip":
                _unzip(f, unpacker)
            else:
                _untar(f, unpacker)
    except _CORRUPT as exc:
        raise UnsafeArchive(f"is corrupt: {_first_line(exc)}") from None
    except (OSError, ValueError, NotImplementedError, IndexError, OverflowError) as exc:
        # zipfile and tarfile raise these too for malformed input (a name flagged UTF-8 that
        # is not, an unknown compression method, an empty name, a header offset before the
        # file's start: EINVAL, a number too large for a seek); an error raised elsewhere
        # (writing: full, read-only) is the destination's fault
        if not _raised_by_reader(exc) and not (isinstance(exc, OSError) and exc.errno is None):
            raise
        raise UnsafeArchive(f"is corrupt: {_first_line(exc)}") from None  # bz2: no errno
    tree.finish()
    return unpacker.entries


def _open_tar(archive: IO[bytes]) -> tarfile.TarFile:
    """The tar reader for the compression the first bytes name (tarfile's "r:*" would try
    each in turn and report every failure)."""
    head = archive.read(6)
    archive.seek(0)
    comp = next((c for magic, c in _COMPRESSED_TAR.items() if head.startswith(magic)), "")
    t = _BoundedTarInfo
    if comp == "gz":
        return tarfile.open(fileobj=archive, mode="r:gz", tarinfo=t)
    if comp == "bz2":
        return tarfile.open(fileobj=archive, mode="r:bz2", tarinfo=t)
    if comp == "xz":
        return tarfile.open(fileobj=archive, mode="r:xz", tarinfo=t)
    return tarfile.open(fileobj=archive, mode="r:", tarinfo=t)


def _raised_by_reader(exc: BaseException) -> bool:
    """Whether the innermost Python frame of `exc` is zipfile's or tarfile's own."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_READERS)


_READERS = ("/zipfile.py", "/tarfile.py", "/zipfile/__init__.py")  # a package since 3.12


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def _unzip(archive: IO[bytes], u: _Unpacker) -> None:
    bound_zip_directory(archive, u.limits.max_files)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > u.limits.max_files:
            raise UnsafeArchive(f"more than {u.limits.max_files} entries")
        u.declare(sum(i.file_size for i in infos))
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


def _untar(archive: IO[bytes], u: _Unpacker) -> None:
    with _open_tar(archive) as tf:
        for member in tf:
            if member.isdir():
                u.directory(member.name)
            elif member.isreg():
                u.declare(member.size)
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
