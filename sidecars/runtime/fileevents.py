"""File events from Linux inotify, read on the event loop (no thread, no dependency): which
names changed in watched directories. Events are a hint: callers still poll and rescan, and
fall back to that alone when inotify is unavailable (`WatchError`, one line)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import stat
import struct
from collections.abc import Callable, Iterable

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_ISDIR = 0x01000000, 0x02000000, 0x40000000
_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
) | (IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_HEAD = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_READ = 64 * 1024
MAX_WATCHES = 8192  # per watcher: a tree grown beyond this is left to polling

_libc: ctypes.CDLL | None = None


class WatchError(Exception):
    """File events are unavailable (no inotify, a limit reached): poll instead."""


def _os_error(what: str) -> WatchError:
    err = ctypes.get_errno()
    hint = {
        errno.ENOSPC: " (the inotify watch limit, fs.inotify.max_user_watches, is reached)",
        errno.EMFILE: " (the inotify instance limit, fs.inotify.max_user_instances, is reached)",
    }.get(err, "")
    return WatchError(f"{what}: {os.strerror(err)}{hint}")


class DirWatch:
    """Watches directories, not the files in them: `on_change(path)` for each event (the
    changed name's path, or a watched directory's own path when it is deleted or moved) and
    `on_overflow()` when the kernel dropped events (its queue overflowed): rescan everything.

    Roots are followed if they are links (they are configuration); with `recursive`, the
    directories below them are watched too, never through a link, at most MAX_WATCHES. A
    root missing (or replaced midway) is awaited in its parent: `on_change(root)` when it
    appears, for the caller to sync again."""

    def __init__(
        self,
        on_change: Callable[[str], None],
        on_overflow: Callable[[], None],
        *,
        recursive: bool = False,
    ) -> None:
        self.on_change, self.on_overflow, self.recursive = on_change, on_overflow, recursive
        self._fd = -1
        self._paths: dict[int, str] = {}  # wd -> directory
        self._roots: dict[str, tuple[int, int, int]] = {}  # root -> (wd, st_dev, st_ino)
        self._awaited: dict[int, tuple[str, set[str]]] = {}  # wd -> (parent, missing roots)

    def sync(self, roots: Iterable[str]) -> list[str]:
        """Watch exactly `roots` (and, if recursive, what is below them): add the new ones,
        drop the gone ones, watch again a root that names another directory now (replaced).
        Returns the roots watched anew (a change before raised no event). Raises WatchError
        (and then watches nothing) when inotify refuses."""
        added, missing = [], []
        try:
            if self._fd < 0:
                self._start()
            wanted = set(roots)
            for root in [r for r in self._roots if r not in wanted]:
                self._drop_root(root)
            for root in sorted(wanted):
                try:
                    st = os.stat(root)
                except OSError:
                    self._drop_root(root)
                    missing.append(root)
                    continue
                held = self._roots.get(root)
                if held and held[0] in self._paths and held[1:] == (st.st_dev, st.st_ino):
                    continue
                self._drop_root(root)
                wd = self._add(root, _MASK)
                if wd < 0:
                    missing.append(root)
                    continue
                self._roots[root] = (wd, st.st_dev, st.st_ino)
                added.append(root)
                if self.recursive:
                    self._add_tree(root)
            self._await(missing)
        except WatchError:
            self.close()
            raise
        return added

    def close(self) -> None:
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
        self._fd = -1
        self._paths.clear()
        self._roots.clear()
        self._awaited.clear()

    def _start(self) -> None:
        global _libc
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(_libc, "inotify_init1"):
            raise WatchError("inotify is not available on this system")
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error("cannot start file events")
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read)

    def _await(self, missing: list[str]) -> None:
        """Watch the parents of missing roots (those that exist) for them to appear."""
        assert _libc is not None
        awaited: dict[int, tuple[str, set[str]]] = {}
        for root in missing:
            parent = os.path.dirname(root.rstrip(os.sep)) or os.sep
            wd = self._add(parent, _MASK, keep=False)
            if wd >= 0:
                awaited.setdefault(wd, (parent, set()))[1].add(root)
        for wd in self._awaited.keys() - awaited.keys() - self._paths.keys():
            _libc.inotify_rm_watch(self._fd, wd)
        self._awaited = awaited

    def _add(self, path: str, mask: int, keep: bool = True) -> int:
        """The watch descriptor, or -1 if `path` is gone or not a directory (or a link, when
        IN_DONT_FOLLOW) by now; WatchError at a limit or any other refusal."""
        assert _libc is not None
        if len(self._paths) + len(self._awaited) >= MAX_WATCHES:
            raise WatchError(f"more than {MAX_WATCHES} directories to watch under {path}")
        wd = int(_libc.inotify_add_watch(self._fd, os.fsencode(path), mask))
        if wd < 0:
            if ctypes.get_errno() in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES):
                return -1
            raise _os_error(f"cannot watch {path}")
        if keep:
            self._paths[wd] = path
        return wd

    def _add_tree(self, top: str) -> None:
        """Watch every directory below `top`, never entering a link (IN_DONT_FOLLOW closes
        the race with a directory swapped for a link between the listing and the watch)."""
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                with os.scandir(path) as entries:
                    subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for sub in subdirs:
                if self._add(sub, _MASK | IN_DONT_FOLLOW) >= 0:
                    stack.append(sub)

    def _drop_root(self, root: str) -> None:
        held = self._roots.pop(root, None)
        if held is None or self._fd < 0:
            return
        assert _libc is not None
        prefix = root.rstrip(os.sep) + os.sep
        for wd, path in list(self._paths.items()):
            if wd == held[0] or (self.recursive and path.startswith(prefix)):
                del self._paths[wd]
                if wd not in self._awaited:
                    _libc.inotify_rm_watch(self._fd, wd)  # its IN_IGNORED is then skipped

    def _read(self) -> None:
        try:
            data = os.read(self._fd, _READ)
        except (BlockingIOError, InterruptedError):
            return
        offset = 0
        while offset + _HEAD.size <= len(data):
            wd, mask, _, size = _HEAD.unpack_from(data, offset)
            name = data[offset + _HEAD.size : offset + _HEAD.size + size].rstrip(b"\0")
            offset += _HEAD.size + size
            if mask & IN_Q_OVERFLOW:
                self.on_overflow()
                continue
            if mask & IN_IGNORED:  # deleted or unmounted: a later sync watches it again
                self._paths.pop(wd, None)
                self._awaited.pop(wd, None)
                continue
            awaited = self._awaited.get(wd)
            if awaited is not None and name:
                appeared = os.path.join(awaited[0], os.fsdecode(name))
                if appeared in awaited[1]:
                    self.on_change(appeared)
            directory = self._paths.get(wd)
            if directory is None:
                continue
            path = os.path.join(directory, os.fsdecode(name)) if name else directory
            if self.recursive and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self._watch_new(path)
            self.on_change(path)

    def _watch_new(self, path: str) -> None:
        """A directory appeared below a recursive root: watch it and what it holds already."""
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return
            if self._add(path, _MASK | IN_DONT_FOLLOW) >= 0:
                self._add_tree(path)
        except OSError:
            return
        except WatchError:
            self.close()
            self.on_overflow()  # events are incomplete from here: the caller falls back
