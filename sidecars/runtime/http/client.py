"""Reading answers from an asyncio stream (the logshipper's bulk requests, the ambassador's
health checks): heads by `head.parse_response`, bodies by `body.response_body`, both bounded."""

from __future__ import annotations

import asyncio

from sidecars.runtime.http.body import Body, response_body
from sidecars.runtime.http.head import Head, parse_response

READ_SIZE = 65536


async def read_head(reader: asyncio.StreamReader) -> Head:
    """The final answer's head (1xx interim answers are skipped). ValueError when it is not
    well-formed or longer than the reader's limit, EOFError when the peer closed first."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ValueError("answer head too large") from None
        except asyncio.IncompleteReadError as exc:
            raise EOFError("closed before a whole answer head") from exc
        head = parse_response(raw[:-4])
        if head.status >= 200 or head.status == 101:
            return head


async def read_body(
    reader: asyncio.StreamReader, head: Head, method: bytes, limit: int
) -> tuple[bytes, bool]:
    """The whole body of the answer to a `method` request, chunked framing taken off, and
    whether the connection may carry another request (the body ended where the bytes did).
    ValueError for malformed framing or a body over `limit` bytes, EOFError when cut short."""
    body = response_body(head, method, decode=True)
    if head.length is not None and head.length > limit and not body.done:
        raise ValueError(f"answer body of {head.length} bytes is over {limit}")
    parts: list[bytes] = []
    total = 0
    clean = True
    while not body.done:
        data = await reader.read(READ_SIZE)
        if not data:
            if type(body) is Body:
                return b"".join(parts), False  # a body framed by the close
            raise EOFError("closed mid-body")
        chunk, rest = body.feed(data)
        total += len(chunk)
        if total > limit:
            raise ValueError(f"answer body over {limit} bytes")
        parts.append(chunk)
        clean = not rest
    return b"".join(parts), clean and type(body) is not Body and not head.close
