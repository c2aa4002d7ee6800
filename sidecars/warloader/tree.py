"""Copy a source directory into a staging directory, and fingerprint it cheaply."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from sidecars.warloader.copier import Progress, copy_plain
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.fsops import Modes, apply_modes
from sidecars.warloader.safety import check_link


def fingerprint(root: Path) -> str:
    """sha256 over every entry's relative path, type, mode, size, mtime and link target:
    changes when any file changes, without reading file contents."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.relpath(path, root)
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())
        h.update(f"{os.path.relpath(dirpath, root)}/\n".encode())
    return h.hexdigest()


def copy_tree(src: Path, root: Path, modes: Modes, progress: Progress) -> int:
    """Copy `src` into the new directory `root`; links must stay inside; returns the bytes."""
    total = 0
    dirs: list[Path] = [root]
    for dirpath, subdirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        here = root / rel
        for name in sorted(subdirs + files):
            s = Path(dirpath, name)
            d = here / name
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                check_link((*rel.parts, name), os.readlink(s))
                os.symlink(os.readlink(s), d)
                apply_modes(d, modes)
            elif stat.S_ISDIR(st.st_mode):
                d.mkdir()
                dirs.append(d)
            elif stat.S_ISREG(st.st_mode):
                total += _copy_file(s, d, progress)
                apply_modes(d, modes, st.st_mode)
            else:
                raise UnsafeArchive(f"source entry {str(rel / name)!r} is a device, fifo or socket")
        subdirs[:] = [n for n in subdirs if not os.path.islink(os.path.join(dirpath, n))]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        apply_modes(d, modes)
    return total


def _copy_file(src: Path, dst: Path, progress: Progress) -> int:
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            return copy_plain(sfd, dfd, progress)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
