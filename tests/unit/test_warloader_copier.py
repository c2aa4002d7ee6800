"""warloader copier: one-pass copy and hash, background flushing, batched download writes."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from sidecars.warloader import copier
from sidecars.warloader.copier import HashingSink, Progress, Writeback, copy_hashing, copy_plain
from sidecars.warloader.errors import DestinationError, FlushFailed, copy_error
from tests.helpers import wait_until

pytestmark = pytest.mark.unit


@pytest.fixture
def small_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flush every 1 MiB so that a few MiB exercise the background flusher."""
    monkeypatch.setattr(copier, "FLUSH_EVERY", 1 << 20)


def source(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.usefixtures("small_flushes")
@pytest.mark.parametrize(
    ("hashing", "flags"),
    [
        (False, os.O_WRONLY),
        (True, os.O_RDWR),  # the kernel copies, a helper hashes what landed
        (True, os.O_WRONLY),  # nothing to read back from: read, write and hash in user space
    ],
)
def test_copies_are_exact_and_hashes_match(tmp_path: Path, hashing: bool, flags: int) -> None:
    src, data = source(tmp_path, 9 * copier.CHUNK + 12345)  # several chunks and a short tail
    dst = tmp_path / "dst.bin"
    progress = Progress("test")
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, flags | os.O_CREAT, 0o600)
    try:
        if hashing:
            size, digest = copy_hashing(sfd, dfd, progress)
            assert digest == hashlib.sha256(data).hexdigest()
        else:
            size = copy_plain(sfd, dfd, progress)
    finally:
        os.close(sfd)
        os.close(dfd)
    assert size == len(data) == progress.done
    assert dst.read_bytes() == data


@pytest.mark.parametrize("hashing", [False, True])
def test_the_kernel_copies_across_filesystems(tmp_path: Path, hashing: bool) -> None:
    # an image layer to a volume: copy_file_range refuses (EXDEV), sendfile still copies
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    src, data = source(tmp_path, 3 * copier.CHUNK + 777)
    dst = shm / f"warloader-test-{os.getpid()}-{hashing}"
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with pytest.raises(OSError) as refused:
            os.copy_file_range(sfd, dfd, 1)
        assert refused.value.errno == errno.EXDEV
        progress = Progress("test")
        writeback = Writeback(dfd)
        if hashing:
            reader = copier.ReadBack(dfd)
            try:
                size = copier._copy_kernel(sfd, dfd, progress, writeback, reader.advance)
                assert reader.finish() == hashlib.sha256(data).hexdigest()
            finally:
                reader.stop()
        else:
            size = copier._copy_kernel(sfd, dfd, progress, writeback)
        writeback.finish()
        assert size == len(data)
        assert dst.read_bytes() == data
    finally:
        os.close(sfd)
        os.close(dfd)
        dst.unlink()


def test_a_failed_background_flush_is_raised_by_finish() -> None:
    # fdatasync on a pipe fails for real (EINVAL): the error a disk would give on a bad flush
    # must reach the caller, since the final fsync on the same descriptor would not repeat it
    r, w = os.pipe()
    try:
        writeback = Writeback(w)
        writeback.wrote(copier.FLUSH_EVERY)
        wait_until(lambda: writeback.error is not None, 10, "the background flush failed")
        with pytest.raises(FlushFailed) as err:
            writeback.finish()
        assert err.value.errno == errno.EINVAL
        assert isinstance(copy_error(err.value, "/src", "/dest/x"), DestinationError)
    finally:
        os.close(r)
        os.close(w)


def test_no_flusher_thread_for_small_files(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writeback = Writeback(fd)
        writeback.wrote(copier.FLUSH_EVERY - 1)
        writeback.finish()
        assert writeback._thread is None
    finally:
        os.close(fd)


@pytest.mark.usefixtures("small_flushes")
def test_sink_writes_batches_of_many_chunks_in_order(tmp_path: Path) -> None:
    path = tmp_path / "sink"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    sink = HashingSink(fd, Progress("test"), path)
    chunks = [os.urandom(1000 + i) for i in range(3000)]  # more than IOV_MAX per batch
    try:
        for batch in (chunks[:2500], chunks[2500:]):
            sink.write(batch)
            sink.digest(batch)
        sink.finish()
    finally:
        sink.close()
        os.close(fd)
    data = b"".join(chunks)
    assert path.read_bytes() == data
    assert sink.size == len(data)
    assert sink.hexdigest() == hashlib.sha256(data).hexdigest()
