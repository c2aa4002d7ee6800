"""Name resolution that leaves no thread behind, and connections opened through it.

The event loop's resolver (libuv's thread pool under uvloop, the default executor under asyncio)
starts threads that live as long as the process. While a process has a second thread, every
system call on a descriptor takes and drops a reference to its file (the kernel skips that only
for a single-threaded process): measured here, one send and one recv on a socket cost 2.14 us
instead of 1.79 with one idle thread beside the loop. So numeric addresses are converted in the
loop's thread (that never blocks), and names are resolved by at most WORKERS threads that end
once they have been idle for IDLE seconds: a sidecar whose names are resolved now and then is
single-threaded in between.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

WORKERS = 4  # names resolved at once at most (libuv's default pool size); more wait their turn
IDLE = 2.0  # seconds a resolver thread waits for more work before it ends

# (family, type, proto, canonical name, socket address)
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
P = TypeVar("P", bound=asyncio.BaseProtocol)
_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class _Workers:
    """Threads that run blocking calls for the loop, started on demand, ending when idle."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        # Both counted under the lock, each job's taking at once: a thread that has just taken
        # a job but not yet counted it still pairs with that job, so run() never counts on a
        # thread that is about to be busy.
        self.idle = 0  # threads waiting for a job (a thread started counts at once)
        self.queued = 0  # jobs put and not yet taken

    def run(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self.lock:
            self.jobs.put((fn, loop, future))
            self.queued += 1
            if self.queued > self.idle and self.threads < WORKERS:
                try:
                    threading.Thread(target=self._work, name="resolver", daemon=True).start()
                except RuntimeError as exc:  # no thread to be had (the pod's process limit)
                    if self.threads == 0:  # nobody will take the job: the next thread skips it
                        future.cancel()
                        raise OSError(f"name resolution: cannot start a thread ({exc})") from None
                else:  # counted before the thread can take a job: it waits for this lock
                    self.threads += 1
                    self.idle += 1
        return future

    def _work(self) -> None:
        while True:
            try:
                fn, loop, future = self.jobs.get(timeout=IDLE)
            except queue.Empty:
                with self.lock:
                    # leave only if the other idle threads cover every queued job (one may
                    # have come just as this wait ran out)
                    if self.queued < self.idle:
                        self.idle -= 1
                        self.threads -= 1
                        return
                continue
            with self.lock:
                self.queued -= 1
                self.idle -= 1
            try:
                self._do(fn, loop, future)
            finally:
                with self.lock:
                    self.idle += 1

    @staticmethod
    def _do(
        fn: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        if future.done():  # its caller gave up (a connect timed out): skip the lookup
            return
        try:
            result, error = fn(), None
        except Exception as exc:  # handed to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _settle(future: asyncio.Future[Any], result: object, error: Exception | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_WORKERS = _Workers()


def numeric(
    host: str | bytes | None, port: int | str | None, family: int, type: int, proto: int, flags: int
) -> list[AddrInfo] | None:
    """getaddrinfo for a numeric host (or None), done at once; None for a name."""
    try:
        found = socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        return cast(list[AddrInfo], found)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_NONAME:
            return None
        raise


async def getaddrinfo(
    host: str | bytes | None,
    port: int | str | None,
    *,
    family: int = 0,
    type: int = 0,  # noqa: A002 - the name socket.getaddrinfo gives it
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """socket.getaddrinfo without blocking the loop and without a thread left behind."""
    found = numeric(host, port, family, type, proto, flags)
    if found is not None:
        return found
    found = await _WORKERS.run(lambda: socket.getaddrinfo(host, port, family, type, proto, flags))
    return cast(list[AddrInfo], found)


async def connect(
    factory: Callable[[], P], host: str, port: int, **kw: Any
) -> tuple[asyncio.Transport, P]:
    """loop.create_connection to `host`, resolved here: each address in turn until one
    accepts; when none does, the first address's error is raised."""
    loop = asyncio.get_running_loop()
    infos = await getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host}: no address")
    errors: list[OSError] = []
    for info in dict.fromkeys(infos):
        try:
            transport, protocol = await loop.create_connection(factory, info[4][0], port, **kw)
        except OSError as exc:
            errors.append(exc)
            continue
        return transport, protocol
    raise errors[0]
