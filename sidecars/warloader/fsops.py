"""Filesystem steps of an atomic install: temp names, fsync, rename-exchange, modes, cleanup.

Everything in the destination is done relative to its open directory descriptor, by name
(beneath.py): the app sharing the volume may plant links at any name we use."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sidecars.warloader import beneath
from sidecars.warloader.errors import DestinationError, dest_error

_RENAME_EXCHANGE = 2


@dataclass(frozen=True, slots=True)
class Modes:
    """Permissions (and optionally owner) given to everything installed."""

    file_mode: int = 0o644
    dir_mode: int = 0o755
    uid: int = -1
    gid: int = -1

    def for_file(self, source_mode: int) -> int:
        """`file_mode`, plus execute bits where it grants read if the source was executable.
        Never setuid, setgid or sticky."""
        mode = self.file_mode & 0o777
        if source_mode & 0o111:
            mode |= (mode & 0o444) >> 2
        return mode


def temp_name(name: str, kind: str) -> str:
    """A fresh hidden name next to `name`, so a rename into place stays on one filesystem."""
    return f".{name}.warloader-{kind}-{os.urandom(6).hex()}"  # as secrets.token_hex(6)


def marker_name(name: str) -> str:
    return f".{name}.warloader.json"


def remove_leftovers(dfd: int, name: str, keep: tuple[str, ...] = ()) -> int:
    """Delete temp files and stage dirs an earlier, killed run left behind (except the `keep`
    kinds); return how many."""
    count = 0
    prefix = f".{name}.warloader-"
    kept = {prefix + kind for kind in keep}
    for entry in os.listdir(dfd):
        if entry.startswith(prefix) and entry not in kept:
            beneath.clear(dfd, entry)
            count += 1
    return count


def sync_tree(fd: int) -> None:
    """Persist a whole staged tree (open at `fd`): one syncfs(2) for its filesystem, else
    fsync every entry, each opened beneath it without following links."""
    if hasattr(beneath.libc, "syncfs") and beneath.libc.syncfs(fd) == 0:
        return
    for _, _, files, dirfd in os.fwalk(dir_fd=fd):
        for name in files:
            with contextlib.suppress(OSError):  # a link: nothing to sync
                ffd = os.open(name, os.O_RDONLY | beneath.FILE_FLAGS, dir_fd=dirfd)
                try:
                    os.fsync(ffd)
                finally:
                    os.close(ffd)
        os.fsync(dirfd)


def rename_exchange(dfd: int, a: str, b: str) -> bool:
    """Atomically swap two names (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not hasattr(beneath.libc, "renameat2"):
        return False
    rc = beneath.libc.renameat2(dfd, os.fsencode(a), dfd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)


def publish(dfd: int, staged: str, target: str, where: Path) -> None:
    """Put `staged` (file or directory) at `target` in one step; the old one is removed after.
    A reader sees the old entry or the new one, never a partial one. A link at `target` is
    replaced, never followed."""
    try:
        if _is_dir(dfd, staged) or _is_dir(dfd, target):
            _publish_swap(dfd, staged, target)
        else:
            os.replace(staged, target, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    except OSError as exc:
        raise dest_error(exc, str(where / target)) from None


def _is_dir(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _publish_swap(dfd: int, staged: str, target: str) -> None:
    try:
        os.stat(target, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(staged, target, src_dir_fd=dfd, dst_dir_fd=dfd)
        return
    if rename_exchange(dfd, staged, target):
        beneath.clear(dfd, staged)  # now holds the old version
        return
    # No renameat2 here (old kernel or filesystem): move the old one aside first. The name is
    # briefly absent, but never partial.
    aside = temp_name(target, "old")
    os.rename(target, aside, src_dir_fd=dfd, dst_dir_fd=dfd)
    os.rename(staged, target, src_dir_fd=dfd, dst_dir_fd=dfd)
    beneath.clear(dfd, aside)


def apply_modes(fd: int, modes: Modes, source_mode: int = 0) -> None:
    """Set mode (and owner if configured) on one staged file or directory, by its open
    descriptor: a name swapped for a link meanwhile cannot redirect it."""
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        # keep a setgid bit the directory inherited from a volume with fsGroup: files the app
        # creates in it later then get the group too
        mode = (modes.dir_mode & 0o777) | (st.st_mode & stat.S_ISGID)
    else:
        mode = modes.for_file(source_mode)
    os.fchmod(fd, mode)
    if modes.uid >= 0 or modes.gid >= 0:
        _chown(lambda: os.fchown(fd, modes.uid, modes.gid), modes)


def own_link(dirfd: int, name: str, modes: Modes) -> None:
    """Give a staged symlink the configured owner (links have no mode of their own)."""
    if modes.uid >= 0 or modes.gid >= 0:
        _chown(
            lambda: os.chown(name, modes.uid, modes.gid, dir_fd=dirfd, follow_symlinks=False),
            modes,
        )


def _chown(change: object, modes: Modes) -> None:
    assert callable(change)
    try:
        change()
    except PermissionError:
        raise DestinationError(
            f"cannot give owner {modes.uid}:{modes.gid}: not permitted "
            "(changing owners needs CAP_CHOWN; with fsGroup leave the owner unset)"
        ) from None


def try_lock(dfd: int, dest: Path, name: str) -> int | None:
    """Take the exclusive lock for `name` if free, so two loaders on one volume never
    interleave; closing the returned descriptor releases it. None: another loader has it.
    Whatever else sits at the lock's name (a link, FIFO, directory) is replaced."""
    lock = f".{name}.warloader.lock"
    try:
        fd = beneath.open_regular(dfd, lock, os.O_RDWR)
        if fd is None:
            fd = beneath.create_file(dfd, lock, 0o644)
    except FileExistsError:
        return None  # another loader created it just now: try again
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_dir(dest: Path) -> int:
    """Create the destination if needed; return it opened (every later step works relative
    to this descriptor)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        return beneath.open_dir(str(dest))
    except NotADirectoryError:
        raise DestinationError(f"cannot write {dest}: not a directory") from None
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None
