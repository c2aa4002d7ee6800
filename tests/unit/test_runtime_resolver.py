"""The resolver: numeric addresses at once and without a thread; names in at most WORKERS
threads, which end once idle; connections opened through it."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time

import pytest

from sidecars.runtime import resolver
from tests.helpers import free_port

pytestmark = pytest.mark.unit


def resolver_threads() -> int:
    return sum(t.name == "resolver" for t in threading.enumerate())


async def no_resolver_thread_within(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while resolver_threads():
        assert time.monotonic() < deadline, "a resolver thread did not end"
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def short_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "IDLE", 0.1)


async def test_a_numeric_address_is_converted_without_a_thread() -> None:
    await no_resolver_thread_within(5)
    infos = await resolver.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert infos[0][4] == ("127.0.0.1", 80)
    infos = await resolver.getaddrinfo("::1", 80, type=socket.SOCK_STREAM)
    assert infos[0][0] == socket.AF_INET6
    assert resolver_threads() == 0


async def test_a_name_is_resolved_in_a_thread_that_ends_once_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup of a name runs in a resolver thread (recorded by the call itself: the thread
    may already have ended, idle, when the caller looks), which ends once idle."""
    callers: list[str] = []
    real = socket.getaddrinfo

    def recording(*args: object, **kw: object) -> object:
        callers.append(threading.current_thread().name)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(resolver.socket, "getaddrinfo", recording)
    infos = await resolver.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert infos
    assert callers == ["MainThread", "resolver"]  # the numeric try, then the lookup
    await no_resolver_thread_within(5)


async def test_at_most_workers_threads_run_and_every_job_is_done() -> None:
    gate = threading.Event()
    busy: list[int] = []

    def job() -> int:
        busy.append(resolver_threads())
        gate.wait(5)
        return 7

    futures = [resolver._WORKERS.run(job) for _ in range(3 * resolver.WORKERS)]
    deadline = time.monotonic() + 5
    while len(busy) < resolver.WORKERS:
        assert time.monotonic() < deadline, "the jobs did not start"
        await asyncio.sleep(0.01)
    assert resolver_threads() == resolver.WORKERS
    gate.set()
    async with asyncio.timeout(5):
        assert await asyncio.gather(*futures) == [7] * len(futures)
    assert max(busy) == resolver.WORKERS
    await no_resolver_thread_within(5)


async def test_an_error_reaches_the_caller_and_a_cancelled_caller_is_left_alone() -> None:
    def fails() -> None:
        raise OSError("no such name")

    with pytest.raises(OSError, match="no such name"):
        await resolver._WORKERS.run(fails)
    gate = threading.Event()
    waiting = asyncio.ensure_future(resolver._WORKERS.run(lambda: gate.wait(5)))
    await asyncio.sleep(0)
    waiting.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await resolver._WORKERS.run(lambda: 3) == 3  # the workers still serve
    await no_resolver_thread_within(5)


async def test_connect_resolves_a_name_and_raises_a_refusal() -> None:
    got = asyncio.Event()

    class Accepting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            got.set()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Accepting, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport, _ = await resolver.connect(asyncio.Protocol, "localhost", port)
        async with asyncio.timeout(5):
            await got.wait()
        transport.close()
    finally:
        server.close()
    with pytest.raises(ConnectionRefusedError):
        await resolver.connect(asyncio.Protocol, "127.0.0.1", free_port())


async def test_a_lookup_whose_caller_gave_up_before_it_started_is_skipped() -> None:
    """While a name server hangs, callers time out and leave; their queued lookups must not
    each hold a worker for the name server's timeout afterwards."""
    gate = threading.Event()
    ran: list[int] = []

    def blocked() -> None:
        gate.wait(5)

    blockers = [resolver._WORKERS.run(blocked) for _ in range(resolver.WORKERS)]
    queued = [
        asyncio.ensure_future(resolver._WORKERS.run(lambda i=i: ran.append(i))) for i in range(8)
    ]
    await asyncio.sleep(0)
    for waiting in queued:
        waiting.cancel()
    gate.set()
    async with asyncio.timeout(5):
        await asyncio.gather(*blockers)
        assert await resolver._WORKERS.run(lambda: 1) == 1  # queued after them: they are done
    assert ran == []
    await no_resolver_thread_within(5)


class _LateQueue:
    """A queue whose first get() times out although a job is there: the moment a job is
    queued just after a worker's wait ran out (a race, made certain here)."""

    def __init__(self) -> None:
        self.inner: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.late = True

    def put(self, item: object) -> None:
        self.inner.put(item)

    def get(self, timeout: float) -> object:
        if self.late:
            self.late = False
            raise queue.Empty
        return self.inner.get(timeout=timeout)

    def empty(self) -> bool:
        return self.inner.empty()


async def test_a_job_queued_as_a_worker_times_out_runs_and_the_counts_stay_true() -> None:
    workers = resolver._Workers()
    workers.jobs = _LateQueue()  # type: ignore[assignment]
    assert await asyncio.wait_for(workers.run(lambda: 5), 5) == 5
    await no_resolver_thread_within(5)
    assert (workers.idle, workers.queued, workers.threads) == (0, 0, 0)


class _StallingQueue:
    """A queue whose armed get() holds the job it took until released: a worker caught
    between taking a job and counting itself busy (a race, made certain here)."""

    def __init__(self) -> None:
        self.inner: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.armed, self.taken, self.release = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

    def put(self, item: object) -> None:
        self.inner.put(item)

    def get(self, timeout: float) -> object:
        item = self.inner.get(timeout=timeout)
        if self.armed.is_set():
            self.armed.clear()
            self.taken.set()
            self.release.wait(5)
        return item

    def empty(self) -> bool:
        return self.inner.empty()


async def test_a_job_queued_while_the_idle_worker_is_taking_another_gets_a_thread() -> None:
    """One worker waits idle; two jobs come at once. The worker takes the first, a slow one,
    and has not yet counted itself busy when the second is queued: the second must get a
    thread of its own, not wait behind the slow job (a hanging name server would hold it)."""
    workers = resolver._Workers()
    jobs = _StallingQueue()
    workers.jobs = jobs  # type: ignore[assignment]
    assert await asyncio.wait_for(workers.run(lambda: 0), 5) == 0
    deadline = time.monotonic() + 5
    while workers.idle != 1:  # the worker is back to waiting
        assert time.monotonic() < deadline, "the worker did not go back to waiting"
        await asyncio.sleep(0.01)
    jobs.armed.set()
    gate = threading.Event()
    slow = workers.run(lambda: gate.wait(5))
    assert await asyncio.to_thread(jobs.taken.wait, 5), "the worker did not take the slow job"
    second = workers.run(lambda: 2)
    jobs.release.set()
    try:
        assert await asyncio.wait_for(second, 2) == 2
    finally:
        gate.set()
    assert await asyncio.wait_for(slow, 5) is True
    await no_resolver_thread_within(5)
    assert (workers.idle, workers.queued, workers.threads) == (0, 0, 0)


async def test_no_thread_to_be_had_is_an_oserror_and_the_job_is_skipped_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When no thread can be started (the pod's process limit, faked here: as root this
    machine cannot be made to refuse a thread), the caller gets an OSError naming it, not a
    RuntimeError or a wait without end; once threads can start again, lookups work."""
    workers = resolver._Workers()
    ran: list[int] = []

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        with pytest.raises(OSError, match="name resolution: cannot start a thread"):
            workers.run(lambda: ran.append(1))
    assert await asyncio.wait_for(workers.run(lambda: 3), 5) == 3
    assert ran == []  # the refused job's caller had its error: its job was skipped
    await no_resolver_thread_within(5)
