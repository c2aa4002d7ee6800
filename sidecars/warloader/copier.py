"""Move bytes into a staged file: plain kernel copy, or hash while copying in one read."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 4 << 20
_BUFFERS = 4
_IOV_MAX = 1024
# Start writeback every this many bytes, so the final fsync has little left to do and the disk
# works while we copy (cp + sync only starts writing at the sync).
WRITEBACK_EVERY = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


class Writeback:
    """Asks the kernel to start writing a file's dirty pages as they accumulate (Linux
    sync_file_range; a no-op elsewhere). Durability still comes from the final fsync."""

    def __init__(self, fd: int, start: int = 0) -> None:
        self.fd, self.flushed, self.pending = fd, start, 0

    def wrote(self, n: int) -> None:
        self.pending += n
        if self.pending >= WRITEBACK_EVERY and _sync_file_range is not None:
            _sync_file_range(self.fd, self.flushed, self.pending, _SYNC_FILE_RANGE_WRITE)
            self.flushed += self.pending
            self.pending = 0


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
    total = 0
    writeback = Writeback(dst_fd)
    try:
        while True:
            n = os.copy_file_range(src_fd, dst_fd, CHUNK)
            if n == 0:
                return total
            total += n
            writeback.wrote(n)
            progress.add(n)
    except OSError as exc:
        if total or exc.errno not in (18, 22, 38, 95):  # EXDEV, EINVAL, ENOSYS, EOPNOTSUPP
            raise
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := os.readv(src_fd, [buf]):
        write_all(dst_fd, view[:n])
        total += n
        writeback.wrote(n)
        progress.add(n)
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

    def write(self, chunks: Sequence[bytes | bytearray]) -> None:
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

    def digest(self, chunks: Sequence[bytes | bytearray]) -> None:
        """Hash `chunks` in order: batches must be given in the order they are written."""
        for chunk in chunks:
            self.hasher.update(chunk)

    def restart(self) -> None:
        """Throw away what was written (the server did not resume)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.size = 0
        self.hasher = hashlib.sha256()
        self.writeback = Writeback(self.fd)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()
