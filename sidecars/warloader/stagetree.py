"""Build a tree beneath a staging directory's descriptor: never through a link, by any name.

Used for unpacked archives and copied source directories alike. Each entry is created by
name in its parent directory, which is reached one O_NOFOLLOW open per component from the
root: neither a link in the archive nor one an app slips into the staging directory while it
fills can send a write elsewhere."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from sidecars.warloader import beneath
from sidecars.warloader.errors import UnsafeArchive
from sidecars.warloader.fsops import Modes, apply_modes, own_link


class StageTree:
    """Creates entries (given as path components) beneath the open directory `root`."""

    def __init__(self, root: int, modes: Modes) -> None:
        self.root, self.modes = root, modes

    @contextmanager
    def parent(self, parts: tuple[str, ...], what: str) -> Iterator[int]:
        """The directory holding `parts` (created as needed), open for the `with` block."""
        cur = self.root
        try:
            for part in parts[:-1]:
                with _refusing(what):
                    try:
                        nxt = _open_dir(cur, part, what)
                    except FileNotFoundError:
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(part, 0o700, dir_fd=cur)
                        nxt = _open_dir(cur, part, what)
                if cur != self.root:
                    os.close(cur)
                cur = nxt
            yield cur
        finally:
            if cur != self.root:
                os.close(cur)

    def directory(self, parts: tuple[str, ...], what: str) -> None:
        if not parts:
            return
        with self.parent(parts, what) as at, _refusing(what):
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=at)
            except FileExistsError:
                os.close(os.open(parts[-1], beneath.DIR_FLAGS, dir_fd=at))  # a directory?

    def create(self, parts: tuple[str, ...], what: str) -> int:
        """A new empty file, created exclusively; its descriptor (write only)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | beneath.FILE_FLAGS
        with self.parent(parts, what) as at, _refusing(what):
            return os.open(parts[-1], flags, 0o600, dir_fd=at)

    def symlink(self, parts: tuple[str, ...], target: str, what: str) -> None:
        with self.parent(parts, what) as at, _refusing(what):
            os.symlink(target, parts[-1], dir_fd=at)
            own_link(at, parts[-1], self.modes)

    def hardlink(self, parts: tuple[str, ...], existing: tuple[str, ...], what: str) -> None:
        with self.parent(existing, what) as src, self.parent(parts, what) as at, _refusing(what):
            os.link(existing[-1], parts[-1], src_dir_fd=src, dst_dir_fd=at, follow_symlinks=False)

    def finish(self) -> None:
        """Give every directory (also those only implied by a file's path) its mode; deepest
        first, so a read-only mode never blocks setting the ones inside it."""
        for _, _, _, dirfd in os.fwalk(dir_fd=self.root, topdown=False):
            apply_modes(dirfd, self.modes)


def _open_dir(at: int, name: str, what: str) -> int:
    try:
        return os.open(name, beneath.DIR_FLAGS, dir_fd=at)
    except NotADirectoryError:  # O_DIRECTORY|O_NOFOLLOW on a link says ENOTDIR, not ELOOP
        if stat.S_ISLNK(os.stat(name, dir_fd=at, follow_symlinks=False).st_mode):
            raise UnsafeArchive(f"entry {what!r} goes through a symbolic link") from None
        raise


@contextmanager
def _refusing(what: str) -> Iterator[None]:
    """Name conflicts and links in the way are the archive's (or source tree's) fault."""
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise UnsafeArchive(f"entry {what!r} is a duplicate or conflicts with another") from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UnsafeArchive(f"entry {what!r} goes through a symbolic link") from None
