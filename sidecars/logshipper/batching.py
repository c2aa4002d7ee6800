"""Bulk batches, the memory budget, and per-file progress that advances only in read order."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

# one bulk item (action line and document line, each with its newline), or a run of several
# items one after the other: a view into the bytes a whole chunk was formatted into
Piece = bytes | memoryview


class Batch:
    """Serialized (action, source) pairs bound for one bulk request, `docs` of them in
    `items` (single items and runs), and the files whose progress waits on it."""

    __slots__ = ("items", "docs", "nbytes", "progresses", "done", "created")

    def __init__(self) -> None:
        self.items: list[Piece] = []
        self.docs = 0
        self.nbytes = 0
        self.progresses: list[Progress] = []
        self.done = False
        self.created = time.monotonic()

    def add(self, item: bytes) -> None:
        """`item` is the action line and the document line, each ending with a newline."""
        self.items.append(item)
        self.docs += 1
        self.nbytes += len(item)

    def resolve(self) -> None:
        """Every item is acknowledged or dead-lettered: let the files' checkpoints move.
        The items are dropped now: a file's progress may keep this batch referenced until
        an older batch resolves, and must not keep its documents in memory meanwhile."""
        self.done = True
        self.items = []
        for progress in self.progresses:
            progress.advance()


class _Mark:
    __slots__ = ("batch", "end")

    def __init__(self, batch: Batch | None, end: int) -> None:
        self.batch = batch
        self.end = end


class Progress:
    """One file incarnation's offsets: `acked` is the end of the longest prefix of records
    that are all resolved. Records resolve out of order (several batches in flight) but
    `acked` only moves over a contiguous prefix, so a checkpoint never skips a record."""

    __slots__ = ("acked", "_pending", "_last")

    def __init__(self, acked: int) -> None:
        self.acked = acked
        self._pending: deque[_Mark] = deque()
        self._last: _Mark | None = None

    @property
    def idle(self) -> bool:
        """No record of this file is waiting for Elasticsearch."""
        return not self._pending

    def add(self, batch: Batch, end: int) -> None:
        """A record ending at `end` went into `batch`."""
        last = self._last
        if last is not None and last.batch is batch:
            last.end = end
            return
        mark = _Mark(batch, end)
        self._pending.append(mark)
        self._last = mark
        batch.progresses.append(self)

    def skip(self, end: int) -> None:
        """Bytes up to `end` were consumed without a record (the cut-off rest of a line)."""
        if not self._pending:
            self.acked = max(self.acked, end)
            return
        mark = _Mark(None, end)
        self._pending.append(mark)
        self._last = mark

    def advance(self) -> None:
        pending = self._pending
        while pending and (pending[0].batch is None or pending[0].batch.done):
            self.acked = pending.popleft().end
        if not pending:
            self._last = None


class Budget:
    """Bytes of documents read but not yet resolved. Readers wait while it is over the
    limit, so memory stays flat however long Elasticsearch is away: the files are the buffer."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._room = asyncio.Event()
        self._room.set()

    @property
    def full(self) -> bool:
        return self.used >= self.limit

    def take(self, n: int) -> None:
        self.used += n
        if self.used >= self.limit:
            self._room.clear()

    def give(self, n: int) -> None:
        self.used -= n
        if self.used < self.limit:
            self._room.set()

    async def wait(self) -> None:
        """Return once there is room again."""
        await self._room.wait()


class Pipeline:
    """Collects documents into batches (sealed by size, count or age) for the senders, and
    charges their bytes to the budget until they resolve."""

    def __init__(self, max_bytes: int, max_docs: int, budget: Budget) -> None:
        self.max_bytes = max_bytes
        self.max_docs = max_docs
        self.budget = budget
        self.current: Batch | None = None
        self.queue: asyncio.Queue[Batch] = asyncio.Queue()
        self.unresolved = 0
        self._all_resolved = asyncio.Event()
        self._all_resolved.set()

    def add(self, progress: Progress, end: int, item: bytes) -> None:
        batch = self.current
        if batch is None:
            batch = self.current = Batch()
        batch.add(item)
        progress.add(batch, end)
        self.budget.take(len(item))
        if (
            batch.nbytes >= self.max_bytes
            or batch.docs >= self.max_docs
            or self.budget.full  # reading stops now: the open batch must not wait for its age
        ):
            self.seal()

    def extend(self, progress: Progress, ends: list[int], items: list[bytes]) -> None:
        """`add` for the records of one chunk: the same batches, with the per-batch work
        done once per batch (the sizes are summed in C, the cut found by bisection)."""
        sums = list(accumulate(map(len, items)))
        self._extend(progress, ends, sums, lambda i, k, start, end: items[i:k])

    def extend_run(
        self, progress: Progress, ends: list[int], run: bytes, sums: SupportsLenAndGetItem[int]
    ) -> None:
        """`extend` for the items of one chunk formatted into one bytes, `run`, item i
        ending at `sums[i]` in it: each batch gets a view of its part, not a copy."""
        view = memoryview(run)
        self._extend(progress, ends, sums, lambda i, k, start, end: [view[start:end]])

    def _extend(
        self,
        progress: Progress,
        ends: list[int],
        sums: SupportsLenAndGetItem[int],
        pieces: Callable[[int, int, int, int], Sequence[Piece]],
    ) -> None:
        i, n = 0, len(sums)
        while i < n:
            batch = self.current
            if batch is None:
                batch = self.current = Batch()
            before = sums[i - 1] if i else 0
            # first k whose item brings the batch to max_bytes, like `add` would seal there
            full = bisect_left(sums, before + self.max_bytes - batch.nbytes, i) + 1
            k = min(n, i + self.max_docs - batch.docs, full)
            size = batch.nbytes + sums[k - 1] - before
            batch.items.extend(pieces(i, k, before, sums[k - 1]))
            batch.docs += k - i
            self.budget.take(size - batch.nbytes)
            batch.nbytes = size
            progress.add(batch, ends[k - 1])
            if size >= self.max_bytes or batch.docs >= self.max_docs or self.budget.full:
                self.seal()
            i = k

    def seal(self, older_than: float | None = None) -> None:
        """Hand the open batch to the senders (only if it is older than `older_than` s)."""
        batch = self.current
        if batch is None or not batch.items:
            return
        if older_than is not None and time.monotonic() - batch.created < older_than:
            return
        self.current = None
        self.unresolved += 1
        self._all_resolved.clear()
        self.queue.put_nowait(batch)

    def resolved(self, batch: Batch) -> None:
        """A sender finished `batch`: move checkpoints and free its bytes."""
        batch.resolve()
        self.budget.give(batch.nbytes)
        self.unresolved -= 1
        if self.unresolved == 0:
            self._all_resolved.set()

    async def drained(self) -> None:
        """Return once every sealed batch is resolved."""
        await self._all_resolved.wait()
