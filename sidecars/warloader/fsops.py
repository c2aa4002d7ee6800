"""Filesystem steps of an atomic install: temp names, fsync, rename-exchange, modes, cleanup."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from sidecars.runtime.files import fsync_dir
from sidecars.warloader.errors import DestinationError, dest_error

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


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


def temp_path(dest: Path, name: str, kind: str) -> Path:
    """A fresh hidden name next to `name`, so a rename into place stays on one filesystem."""
    return dest / f".{name}.warloader-{kind}-{secrets.token_hex(6)}"


def marker_path(dest: Path, name: str) -> Path:
    return dest / f".{name}.warloader.json"


def remove_leftovers(dest: Path, name: str, keep: tuple[str, ...] = ()) -> int:
    """Delete temp files and stage dirs an earlier, killed run left behind (except the `keep`
    kinds); return how many."""
    count = 0
    prefix = f".{name}.warloader-"
    kept = {prefix + kind for kind in keep}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(dest):
            if entry.name.startswith(prefix) and entry.name not in kept:
                remove(Path(entry.path))
                count += 1
    return count


def remove(path: Path) -> None:
    """Remove a file, link or tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def sync_tree(root: Path) -> None:
    """Persist a whole staged tree: one syncfs(2) for its filesystem, else fsync every entry."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if hasattr(_libc, "syncfs") and _libc.syncfs(fd) == 0:
            return
    finally:
        os.close(fd)
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                ffd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(ffd)
                finally:
                    os.close(ffd)
        fsync_dir(Path(dirpath))


def rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two names (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not hasattr(_libc, "renameat2"):
        return False
    rc = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(staged: Path, target: Path) -> None:
    """Put `staged` (file or directory) at `target` in one step; the old one is removed after.
    A reader sees the old entry or the new one, never a partial one."""
    try:
        if staged.is_dir() or (target.is_dir() and not target.is_symlink()):
            _publish_swap(staged, target)
        else:
            os.replace(staged, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise dest_error(exc, str(target)) from None


def _publish_swap(staged: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(staged, target)
        return
    if rename_exchange(staged, target):
        remove(staged)  # now holds the old version
        return
    # No renameat2 here (old kernel or filesystem): move the old one aside first. The name is
    # briefly absent, but never partial.
    aside = temp_path(target.parent, target.name, "old")
    os.rename(target, aside)
    os.rename(staged, target)
    remove(aside)


def apply_modes(path: Path, modes: Modes, source_mode: int = 0) -> None:
    """Set mode (and owner if configured) on one staged entry; links keep their own."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if modes.uid >= 0 or modes.gid >= 0:
            _chown(path, modes, follow=False)
        return
    if stat.S_ISDIR(st.st_mode):
        # keep a setgid bit the directory inherited from a volume with fsGroup: files the app
        # creates in it later then get the group too
        mode = (modes.dir_mode & 0o777) | (st.st_mode & stat.S_ISGID)
    else:
        mode = modes.for_file(source_mode)
    os.chmod(path, mode)
    if modes.uid >= 0 or modes.gid >= 0:
        _chown(path, modes, follow=True)


def _chown(path: Path, modes: Modes, follow: bool) -> None:
    try:
        os.chown(path, modes.uid, modes.gid, follow_symlinks=follow)
    except PermissionError:
        raise DestinationError(
            f"cannot give {path.name} owner {modes.uid}:{modes.gid}: not permitted "
            "(changing owners needs CAP_CHOWN; with fsGroup leave the owner unset)"
        ) from None


def try_lock(dest: Path, name: str) -> int | None:
    """Take the exclusive lock for `name` if free, so two loaders on one volume never
    interleave; closing the returned descriptor releases it. None: another loader has it."""
    path = dest / f".{name}.warloader.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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


def ensure_dir(dest: Path) -> None:
    """Create the destination if needed and check that it is a writable directory."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise dest_error(exc, str(dest)) from None
    if not dest.is_dir():
        raise DestinationError(f"cannot write {dest}: not a directory")
