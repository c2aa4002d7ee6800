"""Open names beneath a directory descriptor without following links the loader did not make.

The destination is shared with the app, which may plant a symlink at any name the loader uses:
every name is resolved relative to an open directory, with openat2(2) RESOLVE_BENEATH where the
kernel has it (else one O_NOFOLLOW open per component), so no write ever lands outside."""

from __future__ import annotations

import ctypes
import errno
import os
import stat

_SYS_OPENAT2 = 437  # the same number on every architecture (unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
# the process's own symbols, libc's among them (ctypes.util, 0.5 MiB, would find the same)
libc = ctypes.CDLL(None, use_errno=True)
_openat2_works: bool | None = None  # unknown until the first call
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# a FIFO or device at a name must never block or act on open; for regular files it is a no-op
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_at(dirfd: int, rel: str, flags: int, mode: int = 0o600, links: bool = False) -> int:
    """Open `rel` (a relative path) beneath `dirfd`. No component may be a symlink, unless
    `links`: then symlinks are followed while they stay beneath `dirfd` (a ConfigMap's ..data).
    A name that is or goes through a forbidden link fails with ELOOP (or EXDEV: leaves)."""
    global _openat2_works
    if _openat2_works is not False:
        resolve = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS
        if not links:
            resolve |= _RESOLVE_NO_SYMLINKS
        how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
        fd = libc.syscall(
            _SYS_OPENAT2, dirfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how)
        )
        if fd >= 0:
            _openat2_works = True
            return int(fd)
        err = ctypes.get_errno()
        if links and err == errno.EXDEV:
            # RESOLVE_BENEATH refuses every absolute link, also one that lands inside: open
            # it and check where the descriptor really is instead
            return _open_walking(dirfd, rel, flags, mode, links)
        if err not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
            raise OSError(err, os.strerror(err), rel)
        _openat2_works = False  # no openat2 here (old kernel, or a seccomp filter refusing it)
    return _open_walking(dirfd, rel, flags, mode, links)


def _open_walking(dirfd: int, rel: str, flags: int, mode: int, links: bool) -> int:
    """The fallback: one O_NOFOLLOW open per component; with `links`, an ordinary open whose
    result must still lie beneath `dirfd` (checked on the descriptor, so no race)."""
    if links:
        fd = os.open(rel, flags | os.O_CLOEXEC, mode, dir_fd=dirfd)
        root = os.readlink(f"/proc/self/fd/{dirfd}")
        where = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.commonpath([root, where]) != root:
            os.close(fd)
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), rel)
        return fd
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), rel)
    cur = dirfd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, DIR_FLAGS, dir_fd=cur)
            if cur != dirfd:
                os.close(cur)
            cur = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
    finally:
        if cur != dirfd:
            os.close(cur)


def open_dir(path: str) -> int:
    """Open the configured directory `path` itself (it may be a link: it is configuration)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def clear(dirfd: int, name: str) -> None:
    """Remove whatever sits at `name` in `dirfd` (a file, link, FIFO or a whole tree); the
    link itself, never its target. Missing is fine."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(st.st_mode):
            import shutil  # only when a directory is in the way

            shutil.rmtree(name, dir_fd=dirfd)
        else:
            os.unlink(name, dir_fd=dirfd)
    except FileNotFoundError:
        pass


def create_file(dirfd: int, name: str, mode: int = 0o600, flags: int = os.O_RDWR) -> int:
    """Create `name` in `dirfd` exclusively, first removing whatever an app planted there."""
    clear(dirfd, name)
    return open_at(dirfd, name, flags | os.O_CREAT | os.O_EXCL | FILE_FLAGS, mode)


def open_regular(dirfd: int, name: str, flags: int) -> int | None:
    """Open an existing `name` if it is a regular file with one link (ours, not a hard link
    to a file elsewhere); None if missing or anything else (then it is not ours to use)."""
    try:
        fd = open_at(dirfd, name, flags | FILE_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EXDEV, errno.EISDIR, errno.ENXIO):
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        return None
    return fd


def read_small(dirfd: int, name: str, limit: int = 1 << 20) -> bytes | None:
    """The content of a small regular file we wrote (at most `limit` bytes); None if it is
    missing, not a plain file of ours, or larger."""
    fd = open_regular(dirfd, name, os.O_RDONLY)
    if fd is None:
        return None
    try:
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


def write_atomic(dirfd: int, name: str, data: bytes, mode: int, tmp: str) -> None:
    """Replace `name` with `data` durably: exclusive temp `tmp`, fsync, rename, fsync dir.
    A link at `name` is replaced, never followed."""
    fd = create_file(dirfd, tmp, mode, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            clear(dirfd, tmp)
            raise
        clear(dirfd, name)  # a directory planted at our name
        os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    os.fsync(dirfd)
