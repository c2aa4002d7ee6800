"""Path mapping: stream a configured path of the app to the caller, with a deadline and a cap."""

from __future__ import annotations

import asyncio

import aiohttp

from sidecars.adapter.http1 import Request, Writer

# Response headers worth passing on; hop-by-hop and framing headers are ours to set.
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

    async def forward(self, request: Request, out: Writer) -> int:
        """Stream the app's answer and return its status. Failures before the first byte raise
        ForwardError (502/504); after it, the connection is cut (the status is already sent)."""
        headers = {"Accept": request.accept, "Accept-Encoding": "identity"}
        try:
            async with asyncio.timeout(self.deadline):
                async with self.session.request(
                    request.method, self.url, headers=headers, allow_redirects=False
                ) as resp:
                    length = resp.content_length
                    if length is not None and length > self.max_bytes:
                        raise ForwardError("too_large", 502, f"the app's answer is {length} bytes")
                    passed = [(k, resp.headers[k]) for k in _PASS_HEADERS if k in resp.headers]
                    out.start(resp.status, passed, length)
                    if request.method != "HEAD":
                        await self._copy(resp, out)
                    out.finish()
                    return resp.status
        except TimeoutError:
            if out.started:
                out.abort()
                return 0
            msg = f"the app did not answer in {self.deadline:g}s"
            raise ForwardError("timeout", 504, msg) from None
        except (aiohttp.ClientError, OSError) as exc:
            if out.started:
                out.abort()
                return 0
            text = str(exc) or type(exc).__name__
            raise ForwardError("connect", 502, f"cannot read the app: {text}") from None

    async def _copy(self, resp: aiohttp.ClientResponse, out: Writer) -> None:
        total = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > self.max_bytes:
                raise aiohttp.ClientPayloadError(f"answer exceeds {self.max_bytes} bytes")
            await out.write(chunk)
