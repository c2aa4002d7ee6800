"""Opening files the application controls: never out of the log volume, never blocking.

The app writes the volume the shipper reads, so any name in it may be a symlink to a secret, a
FIFO or a device. A file is opened as an `O_PATH` handle first (no side effects, never blocks,
a final symlink is not followed unless allowed), judged on that handle (regular file? where it
really is, from /proc/self/fd) and only then opened for reading through /proc/self/fd: what is
read is exactly what was judged, however the names change meanwhile."""

from __future__ import annotations

import glob
import os
import stat

SYMLINK_POLICIES = ("inside", "any", "never")
_O_PATH = getattr(os, "O_PATH", 0)
_PROC_FD = "/proc/self/fd"


class Refused(OSError):
    """A name the shipper will not read; `reason` is the metric label."""

    def __init__(self, path: str, what: str, reason: str) -> None:
        super().__init__(f"{path}: {what}")
        self.what, self.reason = what, reason


def shown(path: str) -> str:
    """A path as text for documents, checkpoints, metrics and logs: the app names its files,
    and bytes that are not UTF-8 (kept by Python as lone surrogates, which JSON and the
    exposition format cannot carry) are shown as U+FFFD."""
    return path if path.isascii() else os.fsencode(path).decode(errors="replace")


def fixed_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    fixed: list[str] = []
    for part in pattern.split(os.sep)[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else ".")


class Opener:
    """Opens followed files under the symlink policy: `inside` (a symlink, of a file or of a
    directory, is followed only when its fully resolved target stays inside the globs' roots),
    `never` (a file that is itself a symlink is skipped; directories as for `inside`) or `any`."""

    def __init__(self, patterns: tuple[str, ...], policy: str) -> None:
        self.patterns = patterns
        self.policy = policy
        # without /proc (a container that does not mount it) the plain path is taken
        self.by_handle = bool(_O_PATH) and os.path.isdir(_PROC_FD)
        self.roots: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Resolve the globs' fixed directories again (they are the operator's, trusted; one
        may be created, or be a symlink, after the start)."""
        self.roots = [os.path.realpath(fixed_root(p)) for p in self.patterns]

    def open(self, path: str, key: tuple[int, int] | None = None) -> tuple[int, os.stat_result]:
        """An O_RDONLY | O_NONBLOCK fd of the regular file `path` names and its stat. With
        `key`, it must be that (device, inode) (else FileNotFoundError: the name moved on).
        Raises Refused for names the policy or the file type rules out."""
        if not self.by_handle:  # not Linux, or no /proc: the same checks, less strictly ordered
            return self._open_plain(path, key)
        nofollow = os.O_NOFOLLOW if self.policy == "never" else 0
        handle = os.open(path, _O_PATH | os.O_CLOEXEC | nofollow)
        try:
            st = os.fstat(handle)
            self._judge(path, st, key)
            if self.policy != "any":
                self._inside(path, os.readlink(f"{_PROC_FD}/{handle}"))
            fd = os.open(f"{_PROC_FD}/{handle}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        finally:
            os.close(handle)
        return fd, st

    def _open_plain(self, path: str, key: tuple[int, int] | None) -> tuple[int, os.stat_result]:
        nofollow = os.O_NOFOLLOW if self.policy == "never" else 0
        st = os.stat(path, follow_symlinks=not nofollow)
        self._judge(path, st, key)
        if self.policy != "any":
            self._inside(path, os.path.realpath(path))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | nofollow)
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            raise FileNotFoundError(path)
        return fd, opened

    def may_enter(self, directory: str) -> bool:
        """A directory symlink met while expanding `**`: entered only when its target stays
        inside the roots (with `any`: always)."""
        if self.policy == "any":
            return True
        try:
            self._inside(directory, os.path.realpath(directory))
        except Refused:
            return False
        return True

    def _judge(self, path: str, st: os.stat_result, key: tuple[int, int] | None) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise Refused(path, "a symlink (LOGSHIPPER_FOLLOW_SYMLINKS=never)", "symlink")
        if key is not None and (st.st_dev, st.st_ino) != key:
            raise FileNotFoundError(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(path, "not a regular file (FIFO, socket or device)", "not_regular")

    def _inside(self, path: str, real: str) -> None:
        for root in self.roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return
        raise Refused(
            path, f"resolves to {shown(real)}, outside the watched directories", "outside_roots"
        )
