"""An answer read from a stream by the runtime's HTTP client (interim 1xx answers skipped,
then the head and the whole body): the body within the limit and a keep-alive verdict, or
ValueError/EOFError; the reader's head limit holds whatever the bytes are."""

from __future__ import annotations

import asyncio
import atexit

from tests.fuzz import http_parsers as http

from ._common import split

MAX_LEN = 4096
_LOOP = asyncio.new_event_loop()
atexit.register(_LOOP.close)
_METHODS = (b"GET", b"HEAD", b"POST")


async def _read(wire: bytes, method: bytes, limit: int) -> tuple[bytes, bool]:
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(wire)
    reader.feed_eof()
    head = await http.read_head(reader)
    return await http.read_body(reader, head, method, limit)


def fuzz(data: bytes) -> None:
    (pick, cap), wire = split(data, 2)
    method, limit = _METHODS[pick % len(_METHODS)], cap * 16
    try:
        body, keep = _LOOP.run_until_complete(_read(wire, method, limit))
    except http.ANSWER_ERRORS:
        return
    assert len(body) <= limit and len(body) <= len(wire), (len(body), limit)
    assert isinstance(keep, bool)
    if method == b"HEAD":
        assert body == b"", body
