"""The warloader's archive listing and unpacking (zip/war/jar, tar, tar.gz/.bz2/.xz) of an
archive made of the fuzzed bytes: the entry count or UnsafeArchive, nothing written outside
the destination, no link inside it leading out."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sidecars.warloader import extract
from sidecars.warloader.copier import Progress
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.fsops import Modes

MAX_LEN = 16384
_LIMITS = extract.Limits(max_bytes=1 << 20, max_files=64, max_ratio=200)
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # memory-backed: faster per input
_BASE = Path(tempfile.mkdtemp(prefix="fuzz-archive-", dir=_SHM))


def fuzz(data: bytes) -> None:
    work = Path(tempfile.mkdtemp(dir=_BASE))
    try:
        archive, root = work / "upload.war", work / "root"
        archive.write_bytes(data)
        root.mkdir()
        archive_fd = os.open(archive, os.O_RDONLY)
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            entries = extract.extract(archive_fd, root_fd, _LIMITS, Modes(), Progress("fuzz"))
        except UnsafeArchive as exc:
            assert str(exc)
        else:
            assert 0 <= entries <= _LIMITS.max_files
        finally:
            os.close(archive_fd)
            os.close(root_fd)
        assert sorted(os.listdir(work)) == ["root", "upload.war"], os.listdir(work)
        real_root = os.path.realpath(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    target = os.path.realpath(path)
                    assert os.path.commonpath([real_root, target]) == real_root, (path, target)
    finally:
        shutil.rmtree(work)  # Modes() leaves every directory writable
