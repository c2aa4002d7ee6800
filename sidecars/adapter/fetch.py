"""Read the app's endpoint: one GET with a deadline and a cap on the bytes read."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sidecars.adapter.appclient import AppClient, AppError, ConnectError, CredentialError

# zlib window bits: gzip framing, or zlib framing (what "deflate" means in HTTP)
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


class FetchError(Exception):
    """The target could not be read; `reason` is a short bounded label for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    content_type: str
    body: bytes
    seconds: float


async def fetch(
    client: AppClient, path: str, deadline: float, max_bytes: int, accept: str
) -> Fetched:
    """GET `path` (gzip accepted); FetchError(reason) for timeout, connect, connection,
    auth_file, too_large (never raises others). The cap applies to the decoded body."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline):
            answer = await client.get("GET", path, accept, compressed=True)
            try:
                if answer.length is not None and answer.length > max_bytes:
                    raise _too_large(max_bytes, f"Content-Length {answer.length}")
                body = await _read(answer.chunks(), answer.headers, max_bytes)
            finally:
                await answer.aclose()
            content_type = answer.headers.get("content-type", "")
            return Fetched(answer.status, content_type, body, time.monotonic() - started)
    except TimeoutError:
        raise FetchError("timeout", f"the target did not answer within {deadline:g}s") from None
    except ConnectError as exc:
        raise FetchError("connect", f"cannot connect to the target: {exc}") from None
    except CredentialError as exc:
        raise FetchError("auth_file", str(exc)) from None
    except (AppError, OSError) as exc:
        text = str(exc) or type(exc).__name__
        raise FetchError("connection", f"reading the target failed: {text}") from None


async def _read(chunks: AsyncIterator[bytes], headers: dict[str, str], max_bytes: int) -> bytes:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    decoder = None
    if encoding not in ("", "identity"):
        wbits = _WBITS.get(encoding)
        if wbits is None:
            raise AppError(f"unsupported content encoding {encoding[:40]!r}")
        decoder = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        if decoder is not None:
            try:  # never inflate more than the cap (a small page may expand enormously)
                chunk = decoder.decompress(chunk, max_bytes + 1 - total)
            except zlib.error as exc:
                raise AppError(f"bad {encoding} body: {exc}") from None
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes, "the body")
        parts.append(chunk)
    if decoder is not None:
        if decoder.unconsumed_tail:
            raise _too_large(max_bytes, "the decoded body")
        if not decoder.eof:
            raise AppError(f"truncated {encoding} body")
    return b"".join(parts)


def _too_large(max_bytes: int, what: str) -> FetchError:
    return FetchError("too_large", f"{what} exceeds the {max_bytes} byte limit")
