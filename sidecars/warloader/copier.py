"""Move bytes into a staged file: plain kernel copy, or hash while copying in one read."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sidecars.warloader.errors import FlushFailed

CHUNK = 4 << 20
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
    """Copy in the kernel (copy_file_range, may reflink); read/write if unsupported."""
    writeback = Writeback(dst_fd)
    try:
        total = _copy_kernel(src_fd, dst_fd, progress, writeback)
        if total is None:  # no copy_file_range between these files: read and write
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


def _copy_kernel(src_fd: int, dst_fd: int, progress: Progress, writeback: Writeback) -> int | None:
    """copy_file_range to the end; None if unsupported here (nothing copied then)."""
    total = 0
    try:
        while n := os.copy_file_range(src_fd, dst_fd, CHUNK):
            total += n
            writeback.wrote(n)
            progress.add(n)
    except OSError as exc:
        if total or exc.errno not in (18, 22, 38, 95):  # EXDEV, EINVAL, ENOSYS, EOPNOTSUPP
            raise
        return None
    return total


def copy_hashing(src_fd: int, dst_fd: int, progress: Progress) -> tuple[int, str]:
    """Copy and sha256 in one pass over the data: each chunk is read once, then written here
    while a second thread hashes it (both release the GIL), so the cost is max(copy, hash)."""
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
    writeback = Writeback(dst_fd)
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
        writeback.finish()
    finally:
        work.put(None)
        worker.join()
        writeback.close()
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
