"""Find the files the globs name and follow them: rotation, truncation, deletion, fd budget."""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator

from sidecars.logshipper.checkpoint import Entry
from sidecars.logshipper.files import Reader, Tracked
from sidecars.logshipper.globbing import expand
from sidecars.logshipper.identity import read_fingerprint, still_matches
from sidecars.logshipper.metrics import Metrics
from sidecars.logshipper.multiline import Joiner
from sidecars.logshipper.opening import Opener, Refused, shown

_WARN_EVERY = 30.0  # at most one warning per reason this often, however many paths
_WARNED_MAX = 10_000  # paths remembered as warned about (a flood of bad names stays bounded)


class Tailer:
    """All followed files, keyed by (device, inode) and by path. It does no waiting itself:
    the scheduler calls `scan`, `mark`, `read_pass` and `tick`; fds are opened only to read
    and at most `max_open` stay open (idle files are closed first)."""

    def __init__(
        self,
        patterns: Iterable[str],
        excludes: Iterable[str],
        reader: Reader,
        metrics: Metrics,
        log: logging.Logger,
        *,
        max_line: int,
        max_open: int,
        max_files: int,
        follow_symlinks: str,
        rotate_wait: float,
        read_from_end: bool,
        multiline: tuple[str, int, int] | None,
        skip: set[tuple[int, int]],
        checkpoints: dict[str, Entry],
        persist: Callable[[dict[str, Entry]], None] = lambda entries: None,
    ) -> None:
        self.patterns = tuple(patterns)
        self.excludes = tuple(excludes)
        self.reader = reader
        self.metrics = metrics
        self.log = log
        self.max_line = max_line
        self.max_open = max_open
        self.max_files = max_files
        self.opener = Opener(self.patterns, follow_symlinks)
        self.rotate_wait = rotate_wait
        self.read_from_end = read_from_end
        self.multiline = multiline
        self.skip = skip
        self.by_key: dict[tuple[int, int], Tracked] = {}
        self.by_path: dict[str, Tracked] = {}
        self.dirty: set[Tracked] = set()
        self.saved = {(e.dev, e.ino): (uid, e) for uid, e in checkpoints.items()}
        reader.on_truncate = self._follow_copy
        reader.on_cut = self._cut
        self.persist = persist
        self._cuts_wanted: dict[Tracked, int] = {}
        self._first_scan = True
        self._warned: set[str] = set()
        self._warned_at: dict[str, tuple[float, int]] = {}
        self.waiting = 0  # matches not followed at the last scan: LOGSHIPPER_MAX_FILES reached

    # --- discovery ------------------------------------------------------------------------

    def scan(self) -> None:
        """Re-evaluate the globs; pick up new files, notice renamed, rotated and deleted ones."""
        seen: set[str] = set()  # followed paths only: bounded by LOGSHIPPER_MAX_FILES
        self.opener.refresh()
        waiting = 0
        for pattern in self.patterns:
            matched = False
            for path in expand(pattern, self.opener.may_enter):
                matched = True
                if path in seen or self._excluded(path):
                    continue
                if path not in self.by_path and len(self.by_key) >= self.max_files:
                    waiting += 1
                    continue
                self._discover(path)
                if path in self.by_path:
                    seen.add(path)
            if not matched and pattern not in self._warned:
                self._warned.add(pattern)
                self.log.warning("no file matches %s yet; waiting for one", pattern)
        if waiting:
            self._warn_limited(
                "limit",
                f"{waiting} matching files wait: LOGSHIPPER_MAX_FILES={self.max_files} "
                "files are followed already",
            )
        self.waiting = waiting
        self.metrics.files_waiting.set(waiting)
        for path, f in list(self.by_path.items()):
            if path not in seen or self._names_other(f):
                self._lost_path(f)
        if self._first_scan:
            self._first_scan = False
            self._resume_orphans()
        self.saved.clear()
        self.metrics.files_tracked.set(len(self.by_key))

    def _excluded(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, ex) for ex in self.excludes)

    def _discover(self, path: str) -> None:
        try:
            st = os.stat(path)  # never blocks, opens nothing: only followed files are opened
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._warn_once(path, "not a regular file", "not_regular")
            return
        key = (st.st_dev, st.st_ino)
        if key in self.skip:
            return
        f = self.by_key.get(key)
        if f is not None:
            if f.path != path:
                if self.by_path.get(f.path) is f:
                    del self.by_path[f.path]
                f.rename(path)
            f.rotated = False
            self.by_path[path] = f
            if st.st_size != f.offset:
                self.dirty.add(f)
            return
        old = self.by_path.get(path)
        if old is not None:
            self._lost_path(old)
        f = self._new(path, key)
        if f is None:
            return
        start = 0 if not (self._first_scan and self.read_from_end) else st.st_size
        uid, saved = self.saved.get(key, ("", None))
        self._place(f, uid, saved, start)
        self.by_key[key] = f
        self.by_path[path] = f
        self.dirty.add(f)

    def _new(self, path: str, key: tuple[int, int]) -> Tracked | None:
        f = Tracked(path, key[0], key[1], self.max_line, self.opener)
        if self.multiline is not None:
            f.joiner = Joiner(*self.multiline)
        try:
            f.open()
        except PermissionError:
            self._warn_once(path, "permission denied", "permission")
            return None
        except Refused as exc:
            self._warn_once(path, exc.what, exc.reason)
            return None
        except IsADirectoryError:
            self._warn_once(path, "not a regular file", "not_regular")
            return None
        except OSError:
            return None
        self._warned.discard(path)
        return f

    def _place(self, f: Tracked, uid: str, saved: Entry | None, start: int = 0) -> None:
        """Where to start a newly seen file: its checkpoint if it is the same incarnation."""
        assert f.fd is not None
        if saved is not None and saved.fp_len and still_matches(f.fd, saved.fp, saved.fp_len):
            if os.fstat(f.fd).st_size < saved.offset:
                f.start_at(read_fingerprint(f.fd), saved.generation + 1, 0)
            else:
                f.start_at((saved.fp, saved.fp_len), saved.generation, saved.offset, uid)
                f.cuts = [c for c in saved.cuts if c > saved.offset]
        else:
            fp = read_fingerprint(f.fd)
            f.start_at(fp, 0, start if fp else 0)

    def _names_other(self, f: Tracked) -> bool:
        try:
            st = os.stat(f.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != f.key

    def _lost_path(self, f: Tracked) -> None:
        """The path no longer names `f` (renamed away, deleted, replaced): finish reading it
        through its open fd or its new name, then let it go."""
        if self.by_path.get(f.path) is f:
            del self.by_path[f.path]
        f.rotated = True
        f.changed_at = time.monotonic()
        if f.fd is None:
            moved = _find_inode(os.path.dirname(f.path) or ".", f.key)
            if moved is not None:
                f.rename(moved)
        self.dirty.add(f)

    def _resume_orphans(self) -> None:
        """Checkpointed files that no glob names any more (rotated while we were down)."""
        for key, (uid, entry) in self.saved.items():
            if key in self.by_key:
                continue
            moved = _find_inode(os.path.dirname(entry.path) or ".", key)
            if moved is None:
                continue
            f = self._new(moved, key)
            if f is None:
                continue
            self._place(f, uid, entry)
            f.rotated = True
            self.by_key[key] = f
            self.dirty.add(f)

    def _follow_copy(self, f: Tracked) -> None:
        """`f` was truncated. If a copy of it sits next to it (copytruncate), follow the copy
        from where `f` was read up to, as the same incarnation: its documents keep their ids,
        so the lines written just before the truncation are neither lost nor doubled."""
        directory = os.path.dirname(f.path) or "."
        try:
            with os.scandir(directory) as it:
                candidates = [e.path for e in it if e.inode() != f.ino]
        except OSError:
            return
        for path in candidates:
            try:
                st = os.stat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size < f.offset:
                    continue
                if (st.st_dev, st.st_ino) in self.by_key:
                    continue
                fd, st = self.opener.open(path, (st.st_dev, st.st_ino))
            except OSError:
                continue
            if not f.fp or not still_matches(fd, f.fp, f.fp_len):
                os.close(fd)
                continue
            copy = Tracked(path, st.st_dev, st.st_ino, self.max_line, self.opener)
            copy.fd = fd
            copy.fp, copy.fp_len, copy.generation, copy.uid = f.fp, f.fp_len, f.generation, f.uid
            copy.offset, copy.emitted_end, copy.cuts = f.offset, f.emitted_end, f.cuts
            copy.progress, copy.joiner = f.progress, f.joiner
            copy.framer.skipping = f.framer.skipping
            copy.rotated, copy.size = True, st.st_size
            if f.joiner is not None:
                f.joiner = Joiner(*self.multiline) if self.multiline else None
            self.by_key[copy.key] = copy
            self.dirty.add(copy)
            self.log.info("following the copy of truncated %s: %s", f.shown, shown(path))
            return

    # --- reading --------------------------------------------------------------------------

    def mark(self, path: str) -> bool:
        """A file event for `path`; False if it names no followed file (rescan it then)."""
        f = self.by_path.get(path)
        if f is None:
            # a new file: open it now, before a quick rotation could rename it out of sight
            if any(fnmatch.fnmatch(path, p) for p in self.patterns) and not self._excluded(path):
                if len(self.by_key) >= self.max_files:
                    return True  # it waits for a periodic rescan, not one per event of a flood
                self._discover(path)
            return path in self.by_path
        self.dirty.add(f)
        return True

    def read_pass(self, now: float, budget_full: Callable[[], bool], chunks: int = 4) -> bool:
        """Read up to `chunks` chunks of each dirty file; True if work is left."""
        try:
            for f in list(self.dirty):
                more = False
                for _ in range(chunks):
                    if budget_full():
                        return True
                    more = self._read(f, now)
                    if not more:
                        break
                if not more:
                    self.dirty.discard(f)
        finally:
            if self._cuts_wanted:
                self._write_cuts()
        self._limit_open()
        return bool(self.dirty)

    def _read(self, f: Tracked, now: float) -> bool:
        try:
            return self.reader.read(f, now)
        except (FileNotFoundError, Refused):  # the name is gone, or now names what we refuse
            if not f.rotated:
                self._lost_path(f)
                return True
            self._drop(f, "" if f.offset >= f.size else "deleted before it was read to its end")
            return False
        except IsADirectoryError:
            self._warn_once(f.path, "became a directory", "not_regular")
            self._drop(f, "became a directory")
            return False
        except OSError as exc:
            self._warn_once(f.path, exc.strerror or str(exc), "read")
            f.close()
            return False

    def tick(self) -> None:
        """Periodic: open files may have grown without an event; timers for partial lines,
        multiline records and rotated files run here."""
        now = time.monotonic()
        for f in list(self.by_key.values()):
            # before it is marked dirty again: a rotated file read to its end, idle for the
            # rotate wait, is let go (and its fd and its place under LOGSHIPPER_MAX_FILES)
            if f.rotated and now - f.changed_at >= self.rotate_wait and f not in self.dirty:
                if f.offset >= f.size and f.progress.idle:
                    self._drop(f, "")
                    continue
            if f.fd is not None or f.offset < f.size or (f.joiner and f.joiner.pending):
                self.dirty.add(f)
        self.metrics.files_open.set(sum(1 for f in self.by_key.values() if f.fd is not None))

    def _drop(self, f: Tracked, why: str) -> None:
        f.close()
        self.by_key.pop(f.key, None)
        if self.by_path.get(f.path) is f:
            del self.by_path[f.path]
        self.dirty.discard(f)
        if why:
            self.metrics.file_errors.labels("lost").inc()
            self.log.warning("stopped following %s: %s", f.shown, why)

    def _limit_open(self) -> None:
        open_files = [f for f in self.by_key.values() if f.fd is not None and not f.rotated]
        if len(open_files) <= self.max_open:
            return
        open_files.sort(key=lambda f: f.used_at)
        for f in open_files[: len(open_files) - self.max_open]:
            if f not in self.dirty:
                f.close()

    def _warn_once(self, path: str, what: str, reason: str) -> None:
        """Counted each time; one warning per path, and per reason at most one every
        _WARN_EVERY seconds (a volume full of FIFOs or planted symlinks is one line)."""
        self.metrics.file_errors.labels(reason).inc()
        if path in self._warned:
            return
        if len(self._warned) >= _WARNED_MAX:
            self._warned.clear()
        self._warned.add(path)
        self._warn_limited(reason, f"skipping {shown(path)}: {what}")

    def _warn_limited(self, reason: str, message: str) -> None:
        now = time.monotonic()
        last, suppressed = self._warned_at.get(reason, (-_WARN_EVERY, 0))
        if now - last < _WARN_EVERY:
            self._warned_at[reason] = (last, suppressed + 1)
            return
        self._warned_at[reason] = (now, 0)
        extra = {"reason": reason, "suppressed": suppressed} if suppressed else {"reason": reason}
        self.log.warning(message, extra=extra)

    # --- state ----------------------------------------------------------------------------

    def _cut(self, f: Tracked, end: int) -> bool:
        """A partial line of `f` would be shipped as a record ending at `end`: not before that
        cut is written down (a restart must cut the line there again, not ship it whole).
        The cuts wanted in one read pass are written at its end, in one checkpoint write
        (nothing is sent while a pass runs), and their lines shipped by the next pass."""
        self._cuts_wanted[f] = end
        return False

    def _write_cuts(self) -> None:
        wanted, self._cuts_wanted = self._cuts_wanted, {}
        for f, end in wanted.items():
            f.cuts.append(end)
        try:
            self.persist(self.entries())
        except OSError as exc:
            for f, end in wanted.items():
                f.cuts.remove(end)
            self.metrics.checkpoint_errors.inc()
            self._warn_limited("cut", f"partial lines wait for their newline: {exc}")
            return
        self.dirty.update(wanted)

    def entries(self) -> dict[str, Entry]:
        """Checkpoint entries for every file with an identity."""
        out = {}
        for f in self.by_key.values():
            if f.uid and f.fp:
                acked = f.progress.acked
                if f.cuts and f.cuts[0] <= acked:
                    f.cuts = [c for c in f.cuts if c > acked]
                out[f.uid] = Entry(
                    f.shown, f.dev, f.ino, f.fp, f.generation, acked, f.fp_len, f.cuts[:]
                )
        return out

    def lags(self) -> Iterator[tuple[str, int]]:
        for f in list(self.by_key.values()):
            # the size now, not at the last read: reading may be paused by backpressure
            # (f.size itself belongs to the reader: it dates the last change for partial lines)
            try:
                size = os.fstat(f.fd).st_size if f.fd is not None else os.stat(f.path).st_size
            except OSError:
                size = f.size
            yield f.shown, max(0, size - f.progress.acked)

    def close(self) -> None:
        for f in self.by_key.values():
            f.close()


def _find_inode(directory: str, key: tuple[int, int]) -> str | None:
    """The name `key` has now in `directory` (rename rotation keeps the inode)."""
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.inode() == key[1]:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev == key[0] and stat.S_ISREG(st.st_mode):
                        return entry.path
    except OSError:
        return None
    return None
