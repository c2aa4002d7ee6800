"""Hostile members answering the ambassador's HTTP health check: huge, endless, slow or
malformed answers fail the check, at a bounded cost in memory and time."""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from sidecars.ambassador.health import probe
from sidecars.ambassador.members import Member

pytestmark = pytest.mark.integration

PIECE = 65536


@contextlib.asynccontextmanager
async def answering(answer: bytes, repeat: int = 1, every: float = 0.0) -> AsyncIterator[Member]:
    """A member that reads the check's request and writes `answer` `repeat` times."""

    handlers: set[asyncio.Task[None]] = set()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            for _ in range(repeat):
                # in pieces, so that the member's own send buffer stays small: the test
                # measures the check's memory, in this process too
                for at in range(0, len(answer), PIECE):
                    writer.write(answer[at : at + PIECE])
                    await writer.drain()
                if every:
                    await asyncio.sleep(every)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(respond(reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield Member("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(handlers):  # a dripping answer is not over when the check is
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def test_a_plain_2xx_answer_passes() -> None:
    """The control: a well-formed 200 and 204 pass."""
    for status in (b"200 OK", b"204 No Content"):
        async with answering(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n") as m:
            assert await probe(m, "http:/health", 2.0)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2 OK\r\n\r\n",
        b"HTTP/1.1 200000 OK\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"HTTP/9.1 200 OK\r\n\r\n",
        b"200 OK\r\n\r\n",
        b"HTTP/1.1 200\x00OK\r\n\r\n",
        b"\r\n",
    ],
)
async def test_a_malformed_status_line_fails(answer: bytes) -> None:
    """Anything but `HTTP/1.x 2dd reason` is a failed check (a member answering garbage is
    not healthy because its garbage starts with a 2)."""
    async with answering(answer) as member:
        assert not await probe(member, "http:/health", 2.0)


@pytest.mark.parametrize(
    ("answer", "repeat"),
    [(b"HTTP/1.1 200 " + b"x" * (1 << 20), 16), (b"y" * 65536, 100_000)],
    ids=["16 MiB status line", "endless bytes"],
)
async def test_a_huge_answer_fails_with_bounded_memory(answer: bytes, repeat: int) -> None:
    """An answer head that never ends fails the check at once, and the check's peak memory
    stays under 1 MiB (the head is read up to the stream's limit, never whole)."""
    async with answering(answer, repeat) as member:
        tracemalloc.start()
        try:
            async with asyncio.timeout(5):
                assert not await probe(member, "http:/health", 10.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"peak {peak} bytes"


async def test_a_dripping_answer_fails_by_the_timeout() -> None:
    """One byte a tenth of a second: the check fails when its timeout is up."""
    async with answering(b"H", repeat=1000, every=0.1) as member:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert not await probe(member, "http:/health", 0.5)
        assert loop.time() - started < 3.0
