"""Read the app's endpoint: one GET with a deadline and a cap on the bytes read."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp


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
    session: aiohttp.ClientSession, url: str, deadline: float, max_bytes: int, accept: str
) -> Fetched:
    """GET `url`; FetchError(reason) for timeout, connection, too_large (never raises others)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline):
            async with session.get(url, headers={"Accept": accept}, allow_redirects=False) as resp:
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise _too_large(max_bytes, f"Content-Length {resp.content_length}")
                body = await _read_capped(resp, max_bytes)
                return Fetched(
                    resp.status,
                    resp.headers.get("Content-Type", ""),
                    body,
                    time.monotonic() - started,
                )
    except TimeoutError:
        raise FetchError("timeout", f"the target did not answer within {deadline:g}s") from None
    except aiohttp.ClientConnectorError as exc:
        raise FetchError("connect", f"cannot connect to the target: {exc.os_error}") from None
    except (aiohttp.ClientError, OSError) as exc:
        text = str(exc) or type(exc).__name__
        raise FetchError("connection", f"reading the target failed: {text}") from None


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes, "the body")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int, what: str) -> FetchError:
    return FetchError("too_large", f"{what} exceeds the {max_bytes} byte limit")
