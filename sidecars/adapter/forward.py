"""Path mapping: stream a configured path of the app to the caller, with a deadline and a cap."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

# Response headers worth passing on; hop-by-hop and framing headers are aiohttp's business.
_PASS_HEADERS = ("Content-Type", "Cache-Control", "Content-Language", "Last-Modified", "ETag")
_CHUNK = 1 << 16


class ForwardError(Exception):
    """The app could not be read before the answer started; `reason` is a bounded label."""

    def __init__(self, reason: str, status: int, message: str) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


class Forwarder:
    """Forwards GET/HEAD of one fixed app URL; nothing from the request picks the target."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, deadline: float, max_bytes: int
    ) -> None:
        self.session, self.url, self.deadline, self.max_bytes = session, url, deadline, max_bytes

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Stream the app's answer; errors before the first byte become 502/504 answers."""
        accept = request.headers.get("Accept", "*/*")
        headers = {"Accept": accept, "Accept-Encoding": "identity"}
        out: web.StreamResponse | None = None
        try:
            async with asyncio.timeout(self.deadline):
                async with self.session.request(
                    request.method, self.url, headers=headers, allow_redirects=False
                ) as resp:
                    length = resp.content_length
                    if length is not None and length > self.max_bytes:
                        raise ForwardError("too_large", 502, f"the app's answer is {length} bytes")
                    out = web.StreamResponse(status=resp.status)
                    for name in _PASS_HEADERS:
                        if name in resp.headers:
                            out.headers[name] = resp.headers[name]
                    if length is not None:
                        out.content_length = length
                    await out.prepare(request)
                    if request.method != "HEAD":
                        await self._copy(resp, out)
                    await out.write_eof()
                    return out
        except TimeoutError:
            if out is not None:
                return _abort(request, out)
            msg = f"the app did not answer in {self.deadline:g}s"
            raise ForwardError("timeout", 504, msg) from None
        except (aiohttp.ClientError, OSError) as exc:
            if out is not None:
                return _abort(request, out)
            text = str(exc) or type(exc).__name__
            raise ForwardError("connect", 502, f"cannot read the app: {text}") from None

    async def _copy(self, resp: aiohttp.ClientResponse, out: web.StreamResponse) -> None:
        total = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > self.max_bytes:
                raise aiohttp.ClientPayloadError(f"answer exceeds {self.max_bytes} bytes")
            await out.write(chunk)


def _abort(request: web.Request, out: web.StreamResponse) -> web.StreamResponse:
    """The answer had started: the only honest signal left is to cut the connection."""
    if request.transport is not None:
        request.transport.abort()
    return out
