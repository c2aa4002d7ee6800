"""Copy a source directory into a staging directory, and fingerprint it cheaply."""

from __future__ import annotations

import hashlib
import os
import stat

from sidecars.warloader import beneath
from sidecars.warloader.copier import Progress, copy_plain
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.fsops import Modes, apply_modes
from sidecars.warloader.safety import check_link
from sidecars.warloader.stagetree import StageTree


def fingerprint(src: int) -> str:
    """sha256 over every entry's relative path, type, mode, size, mtime and link target, in
    the directory open at `src`: changes when any file changes, without reading contents."""
    h = hashlib.sha256()
    for dirpath, dirs, files, dirfd in os.fwalk(dir_fd=src):
        dirs.sort()
        for name in sorted(files + dirs):
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                continue
            link = os.readlink(name, dir_fd=dirfd) if stat.S_ISLNK(st.st_mode) else ""
            rel = os.path.normpath(os.path.join(dirpath, name))
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())
        h.update(f"{os.path.normpath(dirpath)}/\n".encode())
    return h.hexdigest()


def copy_tree(src: int, label: str, root: int, modes: Modes, progress: Progress) -> int:
    """Copy the source directory open at `src` into the new directory open at `root`: links
    are copied as links and must stay inside; none is followed on either side, so a link an
    app slips into the source cannot have a file from elsewhere copied. Returns the bytes."""
    total = 0
    tree = StageTree(root, modes)
    for dirpath, subdirs, files, dirfd in os.fwalk(dir_fd=src):
        rel = tuple(p for p in dirpath.split("/") if p not in ("", "."))
        for name in sorted(subdirs + files):
            parts = (*rel, name)
            what = "/".join(parts)
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=dirfd)
                check_link(parts, target)
                tree.symlink(parts, target, what)
            elif stat.S_ISDIR(st.st_mode):
                tree.directory(parts, what)
            elif stat.S_ISREG(st.st_mode):
                total += _copy_file(dirfd, name, tree, parts, modes, progress)
            else:
                raise UnsafeArchive(f"source entry {what!r} of {label} is a device, fifo or socket")
    tree.finish()
    return total


def _copy_file(
    dirfd: int, name: str, tree: StageTree, parts: tuple[str, ...], modes: Modes, p: Progress
) -> int:
    sfd = os.open(name, os.O_RDONLY | beneath.FILE_FLAGS, dir_fd=dirfd)
    try:
        st = os.fstat(sfd)
        if not stat.S_ISREG(st.st_mode):  # swapped since it was listed
            raise UnsafeArchive(f"source entry {'/'.join(parts)!r} is not a regular file")
        dfd = tree.create(parts, "/".join(parts))
        try:
            n = copy_plain(sfd, dfd, p)
            apply_modes(dfd, modes, st.st_mode)
            return n
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
