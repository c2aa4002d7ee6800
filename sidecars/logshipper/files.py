"""One followed file: its identity, read position, framing state, and reading a chunk of it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import orjson

from sidecars.logshipper.batching import Pipeline, Progress
from sidecars.logshipper.documents import DocumentBuilder
from sidecars.logshipper.framing import Framer, Line
from sidecars.logshipper.identity import file_uid, read_fingerprint, still_matches
from sidecars.logshipper.multiline import Joiner
from sidecars.logshipper.opening import Opener, shown

CHUNK = 1 << 20


class Tracked:
    """A file incarnation being followed. `offset` is where the next read starts (bytes of an
    incomplete last line are read again later); `progress.acked` is the checkpoint."""

    def __init__(self, path: str, dev: int, ino: int, max_line: int, opener: Opener) -> None:
        self.opener = opener
        self.rename(path)
        self.dev, self.ino = dev, ino
        self.fp: str | None = None
        self.fp_len = 0
        self.generation = 0
        self.uid = ""
        self.offset = 0
        self.progress = Progress(0)
        self.framer = Framer(max_line)
        self.joiner: Joiner | None = None
        self.fd: int | None = None
        self.size = 0
        self.changed_at = time.monotonic()
        self.used_at = 0.0
        self.rotated = False  # its path now names another file, or nothing
        self.emitted_end = 0
        # ends of records cut without a newline (partial flushes) not yet acknowledged: they
        # are checkpointed before the record is sent, so a restart cuts the line there again
        self.cuts: list[int] = []

    @property
    def key(self) -> tuple[int, int]:
        return self.dev, self.ino

    def rename(self, path: str) -> None:
        self.path = path
        self.shown = shown(path)
        self.path_json = orjson.dumps(self.shown)

    def start_at(
        self, fp: tuple[str, int] | None, generation: int, offset: int, uid: str = ""
    ) -> None:
        """Begin (or resume) this incarnation at `offset`; `uid` keeps a saved identity."""
        self.fp, self.fp_len = fp if fp else (None, 0)
        self.generation, self.offset = generation, offset
        self.uid = uid or (file_uid(self.dev, self.ino, fp[0], generation) if fp else "")
        self.progress = Progress(offset)
        self.emitted_end = offset
        self.cuts = []
        self.framer.skipping = False
        if self.joiner is not None:
            self.joiner.flush()

    def open(self) -> int:
        """The fd, opening the path if needed; raises FileNotFoundError when the path no
        longer names this file (the caller then treats the file as rotated): a name replaced
        by a symlink, a FIFO or another file is never opened for reading."""
        if self.fd is None:
            self.fd, _ = self.opener.open(self.path, self.key)
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @property
    def lag(self) -> int:
        return max(0, self.size - self.progress.acked)


class Reader:
    """Reads chunks of tracked files and turns them into documents for the pipeline."""

    def __init__(
        self,
        builder: DocumentBuilder,
        pipeline: Pipeline,
        *,
        partial_flush: float,
        multiline_timeout: float,
        chunk: int = CHUNK,
    ) -> None:
        self.builder = builder
        self.chunk = chunk
        self.pipeline = pipeline
        self.partial_flush = partial_flush
        self.multiline_timeout = multiline_timeout
        self.lines = 0
        self.bytes = 0
        self.on_truncate: Callable[[Tracked], None] | None = None
        # makes a partial record's end durable before it is sent; False: not now
        self.on_cut: Callable[[Tracked, int], bool] = lambda f, end: True

    def read(self, f: Tracked, now: float) -> bool:
        """Read one chunk; True if more is waiting. Raises OSError for the caller to judge."""
        fd = f.open()
        size = os.fstat(fd).st_size
        mono = time.monotonic()
        if size != f.size:
            f.size, f.changed_at = size, mono
        f.used_at = mono
        if size < f.offset or (f.fp and f.offset and not still_matches(fd, f.fp, f.fp_len)):
            self.truncated(f, fd)
        idle = mono - f.changed_at
        if not f.uid:
            fp = read_fingerprint(fd, partial=idle >= self.partial_flush)
            if fp is None:
                return False
            f.start_at(fp, f.generation, f.offset)
        if size == f.offset:
            if f.joiner is not None and f.joiner.pending and idle >= self.multiline_timeout:
                record = f.joiner.flush()
                if record is not None:
                    self._emit(f, record, now)
            return False
        data = os.pread(fd, max(self.chunk, f.framer.max_line + 1), f.offset)
        if not data:
            return False
        # only a last line at the end of the file may be flushed without its newline, and a
        # line cut so before a restart is cut at the same place again
        cut = next((c for c in f.cuts if c > f.offset), 0) if f.joiner is None else 0
        if cut and cut - f.offset <= len(data):
            data = data[: cut - f.offset]
        at_end = f.offset + len(data) >= size
        flush = f.offset + len(data) == cut or (at_end and idle >= self.partial_flush)
        plain = f.framer.frame_plain(data, f.offset) if f.joiner is None else None
        if plain is not None and not (flush and plain[2] < len(data)):
            lines, starts, used = plain
            text = memoryview(data)[:used]
            run = self.builder.run(f.uid, f.path_json, now, lines, starts, text)
            if run is not None:
                self.pipeline.extend_run(f.progress, starts[1:], *run)
            else:
                items = self.builder.items(f.uid, f.path_json, now, lines, starts)
                self.pipeline.extend(f.progress, starts[1:], items)
            f.emitted_end = starts[-1]
            count = len(lines)
        else:
            framed, used = f.framer.frame(data, f.offset, flush=flush)
            if flush and framed and f.joiner is None and self._new_cut(f, framed[-1], data):
                start, end, _, _ = framed.pop()  # not durable: wait for the newline instead
                used = start - f.offset
            self._emit_lines(f, framed, now)
            count = len(framed)
        f.offset += used
        pending = f.framer.skipping or (f.joiner is not None and f.joiner.pending)
        if f.offset > f.emitted_end and not pending:
            f.progress.skip(f.offset)
            f.emitted_end = f.offset
        self.lines += count
        self.bytes += used
        return used > 0 and f.offset < size

    def _new_cut(self, f: Tracked, last: Line, data: bytes) -> bool:
        """True if `last` is a newly flushed partial line whose end could not be made
        durable (then it must not be shipped yet)."""
        start, end, _, was_cut = last
        if was_cut or data.endswith(b"\n") or end != f.offset + len(data) or end in f.cuts:
            return False
        return not self.on_cut(f, end)

    def truncated(self, f: Tracked, fd: int) -> None:
        """copytruncate (or a rewrite): read again from 0 as a new generation, so the new
        content gets new document ids. `on_truncate` may first hand the unread rest of the
        old content to a follower of the copy."""
        if self.on_truncate is not None and f.uid:
            self.on_truncate(f)
        f.start_at(read_fingerprint(fd), f.generation + 1, 0)

    def _emit_lines(self, f: Tracked, lines: list[Line], now: float) -> None:
        joiner = f.joiner
        if joiner is not None:
            for line in lines:
                record = joiner.push(line)
                if record is not None:
                    self._emit(f, record, now)
            return
        if not lines:
            return
        item = self.builder.item_maker(f.uid, f.path_json, now)
        items = [item(start, data, cut) for start, _, data, cut in lines]
        self.pipeline.extend(f.progress, [line[1] for line in lines], items)
        f.emitted_end = lines[-1][1]

    def _emit(self, f: Tracked, record: Line, now: float) -> None:
        start, end, data, cut = record
        item = self.builder.item_maker(f.uid, f.path_json, now)
        self.pipeline.add(f.progress, end, item(start, data, cut))
        f.emitted_end = end
