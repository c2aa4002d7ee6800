"""Move bytes into a staged file: plain kernel copy, or hash while copying in one read."""

from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecars.warloader.errors import FlushFailed

CHUNK = 4 << 20
Hasher = Any  # hashlib's sha256 object (its type is private)
_BUFFERS = 4
_IOV_MAX = 1024
# A helper thread flushes the file to disk every this many bytes while we write. On a virtual
# disk the flush (the host persisting the data), not the write, is the slow part: done in one
# fsync at the end it adds about a second per GiB (what `cp` + `sync` pays); spread over the
# copy it overlaps with it and the final fsync has almost nothing left.
FLUSH_EVERY = 64 << 20


class Writeback:
    """Flushes a file being written in the background (fdatasync in a helper thread started
    on the first FLUSH_EVERY bytes). `finish` waits for it and raises an error it met, which
    the final fsync on this descriptor would no longer report; `close` just stops it."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, 0
        self.error: OSError | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = False

    def wrote(self, n: int) -> None:
        self.pending += n
        if self.pending < FLUSH_EVERY:
            return
        self.pending = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="warloader-flush", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                os.fdatasync(self.fd)
            except OSError as exc:
                self.error = exc
                return

    def close(self) -> None:
        """Stop flushing (no new flush starts; one in progress ends on its own)."""
        self._stop = True
        self._wake.set()

    def finish(self) -> None:
        """Stop flushing, wait for the helper, and raise the error it met, if any."""
        self.close()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise FlushFailed(self.error.errno, self.error.strerror)


class Aborted(Exception):
    """The load was cancelled while a worker thread was copying."""


@dataclass(slots=True, eq=False)
class Progress:
    """Bytes moved so far for one artifact, read by the progress logger on the event loop."""

    label: str
    total: int | None = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    abort: threading.Event = field(default_factory=threading.Event)

    def add(self, n: int) -> None:
        self.done += n
        if self.abort.is_set():
            raise Aborted(self.label)

    def rate(self) -> float:
        """Bytes per second since the start."""
        return self.done / max(time.monotonic() - self.started, 1e-6)


def write_all(fd: int, data: memoryview | bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def copy_plain(src_fd: int, dst_fd: int, progress: Progress) -> int:
    """Copy in the kernel (copy_file_range, may reflink; else sendfile); read/write if neither
    works between these files."""
    writeback = Writeback(dst_fd)
    try:
        total = _copy_kernel(src_fd, dst_fd, progress, writeback)
        if total is None:
            total = 0
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := os.readv(src_fd, [buf]):
                write_all(dst_fd, view[:n])
                total += n
                writeback.wrote(n)
                progress.add(n)
        writeback.finish()
        return total
    finally:
        writeback.close()


_UNSUPPORTED = (18, 22, 38, 95)  # EXDEV, EINVAL, ENOSYS, EOPNOTSUPP


def _copy_kernel(
    src_fd: int,
    dst_fd: int,
    progress: Progress,
    writeback: Writeback,
    copied: Callable[[int], None] | None = None,
) -> int | None:
    """Copy to the end without the data passing through user space: copy_file_range (same
    filesystem), else sendfile (any two files: an image layer to a volume, say). None if
    neither is supported between these files; nothing was copied then. `copied(n)` hears of
    each piece once it is in the destination."""
    for step in (os.copy_file_range, _sendfile):
        total = 0
        try:
            while n := step(src_fd, dst_fd, CHUNK):
                total += n
                writeback.wrote(n)
                if copied is not None:
                    copied(n)
                progress.add(n)
        except OSError as exc:
            if total or exc.errno not in _UNSUPPORTED:
                raise
            continue
        return total
    return None


def _sendfile(src_fd: int, dst_fd: int, count: int) -> int:
    return os.sendfile(dst_fd, src_fd, None, count)


class ReadBack:
    """Hashes what has landed in the destination, in a helper thread that follows the copy:
    the bytes hashed are those installed, read back from the page cache they were just
    written to, while the copy itself stays in the kernel. The descriptor must be readable.
    `hasher` and `start`: a digest that already covers the file's first `start` bytes."""

    def __init__(self, fd: int, hasher: Hasher | None = None, start: int = 0) -> None:
        self.fd = fd
        self.hasher = hashlib.sha256() if hasher is None else hasher
        self.copied = self.hashed = start
        self.ended = self.stopped = False
        self.error: OSError | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="warloader-sha256", daemon=True)
        self._thread.start()

    def advance(self, n: int) -> None:
        with self._cond:
            self.copied += n
            self._cond.notify()

    def _run(self) -> None:
        view = memoryview(bytearray(CHUNK))
        while True:
            with self._cond:
                while self.hashed >= self.copied and not self.ended:
                    self._cond.wait()
                end = self.copied
                if self.stopped or self.hashed >= end:
                    return
            try:
                while self.hashed < end and not self.stopped:
                    n = os.preadv(self.fd, [view[: min(CHUNK, end - self.hashed)]], self.hashed)
                    if n == 0:  # cannot be, short of a truncation behind our back
                        raise OSError(5, f"read back {self.hashed} of {end} bytes")
                    self.hasher.update(view[:n])
                    self.hashed += n
            except OSError as exc:
                self.error = exc
                return

    def finish(self) -> str:
        """Wait until everything copied is hashed; the digest, or the read error met."""
        with self._cond:
            self.ended = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.hasher.hexdigest()

    def stop(self) -> None:
        with self._cond:
            self.ended = self.stopped = True
            self._cond.notify()
        self._thread.join()


def copy_hashing(src_fd: int, dst_fd: int, progress: Progress) -> tuple[int, str]:
    """Copy and sha256 in one pass: the kernel copies while a helper thread hashes what has
    landed (`ReadBack`), so the cost is max(copy, hash) and the data never crosses into user
    space twice. Where the kernel cannot copy between these files, or the destination is
    write-only, each chunk is read once, written, and hashed by a helper thread."""
    writeback = Writeback(dst_fd)
    reader = ReadBack(dst_fd) if _readable(dst_fd) else None
    try:
        total = None
        if reader is not None:
            total = _copy_kernel(src_fd, dst_fd, progress, writeback, reader.advance)
        if total is None:
            if reader is not None:
                reader.stop()
            total, digest = _copy_read_hash_write(src_fd, dst_fd, progress, writeback)
        else:
            assert reader is not None
            digest = reader.finish()
        writeback.finish()
        return total, digest
    finally:
        if reader is not None:
            reader.stop()
        writeback.close()


def _readable(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR


def _copy_read_hash_write(
    src_fd: int, dst_fd: int, progress: Progress, writeback: Writeback
) -> tuple[int, str]:
    """Each chunk read once, then written here while a second thread hashes it."""
    hasher = hashlib.sha256()
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(_BUFFERS):
        free.put(bytearray(CHUNK))
    work: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()

    def hash_loop() -> None:
        while (item := work.get()) is not None:
            buf, n = item
            hasher.update(memoryview(buf)[:n])
            free.put(buf)

    worker = threading.Thread(target=hash_loop, name="warloader-sha256", daemon=True)
    worker.start()
    total = 0
    try:
        while True:
            buf = free.get()
            n = os.readv(src_fd, [buf])
            if n == 0:
                break
            work.put((buf, n))
            write_all(dst_fd, memoryview(buf)[:n])
            total += n
            writeback.wrote(n)
            progress.add(n)
    finally:
        work.put(None)
        worker.join()
    return total, hasher.hexdigest()


class HashingSink:
    """A staged file that takes a download batch by batch: one thread writes a batch while
    another hashes it (both release the GIL). Progress is counted by the receiver."""

    def __init__(self, fd: int, progress: Progress, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.progress = progress
        self.size = 0
        self.hasher = hashlib.sha256()
        self.writeback = Writeback(fd)

    def write(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append `chunks` to the file (the caller hashes them with `digest`)."""
        if self.progress.abort.is_set():
            raise Aborted(self.progress.label)
        for i in range(0, len(chunks), _IOV_MAX):
            group = chunks[i : i + _IOV_MAX]
            want = sum(len(c) for c in group)
            n = os.writev(self.fd, group)
            if n < want:  # short write (rare): finish it piece by piece
                write_all(self.fd, b"".join(group)[n:])
            self.size += want
            self.writeback.wrote(want)

    def digest(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        """Hash `chunks` in order: batches must be given in the order they are written."""
        for chunk in chunks:
            self.hasher.update(chunk)

    def finish(self) -> None:
        """Wait for the background flushes; raise an error one of them met."""
        self.writeback.finish()

    def close(self) -> None:
        """Stop the background flushes (before the descriptor is closed)."""
        self.writeback.close()

    def restart(self) -> None:
        """Throw away what was written (the server did not resume)."""
        self.writeback.close()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = 0
        self.hasher = hashlib.sha256()
        self.writeback = Writeback(self.fd)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()
