"""An answer read by the runtime's HTTP client from a connection's buffer (interim 1xx answers
skipped, then the head and the whole body): the body within the limit, or ClientError."""

from __future__ import annotations

import asyncio
import atexit

from tests.fuzz import http_parsers as http

from ._common import split

MAX_LEN = 4096
_LOOP = asyncio.new_event_loop()
atexit.register(_LOOP.close)
_METHODS = (b"GET", b"HEAD", b"POST")


async def _read(wire: bytes, method: bytes, limit: int) -> bytes:
    conn = http.Conn(asyncio.get_running_loop())
    conn.data_received(wire)
    conn.eof_received()
    answer = await http.Client("127.0.0.1", 1, keep=0)._answer(conn, method)
    return await answer.read(limit)


def fuzz(data: bytes) -> None:
    (pick, cap), wire = split(data, 2)
    method, limit = _METHODS[pick % len(_METHODS)], cap * 16
    try:
        body = _LOOP.run_until_complete(_read(wire, method, limit))
    except http.ANSWER_ERRORS:
        return
    assert len(body) <= limit and len(body) <= len(wire), (len(body), limit)
    if method == b"HEAD":
        assert body == b"", body
