"""Path mapping: stream a configured path of the app to the caller, with a deadline and a cap."""

from __future__ import annotations

import asyncio

from sidecars.adapter.appclient import AppClient, AppError
from sidecars.runtime.http1 import Request, Writer

# Response headers worth passing on; hop-by-hop and framing headers are ours to set.
_PASS_HEADERS = ("Content-Type", "Cache-Control", "Content-Language", "Last-Modified", "ETag")
_PASS = [(name, name.lower()) for name in _PASS_HEADERS]


class ForwardError(Exception):
    """The app could not be read before the answer started; `reason` is a bounded label."""

    def __init__(self, reason: str, status: int, message: str) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


class Forwarder:
    """Forwards GET/HEAD of one fixed app path; nothing from the request picks the target."""

    def __init__(self, client: AppClient, path: str, deadline: float, max_bytes: int) -> None:
        self.client, self.path, self.deadline, self.max_bytes = client, path, deadline, max_bytes

    async def forward(self, request: Request, out: Writer) -> int:
        """Stream the app's answer and return its status. Failures before the first byte raise
        ForwardError (502/504); after it, the connection is cut (the status is already sent)."""
        try:
            async with asyncio.timeout(self.deadline):
                answer = await self.client.request(request.method, self.path, request.accept)
                try:
                    if answer.length is not None and answer.length > self.max_bytes:
                        msg = f"the app's answer is {answer.length} bytes"
                        raise ForwardError("too_large", 502, msg)
                    headers = answer.headers
                    passed = [(name, headers[low]) for name, low in _PASS if low in headers]
                    whole = answer.whole
                    if whole is not None and len(whole) == answer.length:  # a GET, read whole
                        out.full(answer.status, passed, whole)  # one write: head and body
                        return answer.status
                    out.start(answer.status, passed, answer.length)
                    total = 0
                    async for chunk in answer.chunks():
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise AppError(f"answer exceeds {self.max_bytes} bytes")
                        await out.write(chunk)
                    out.finish()
                    return answer.status
                finally:
                    await answer.aclose()
        except TimeoutError:
            if out.started:
                out.abort()
                return 0
            msg = f"the app did not answer in {self.deadline:g}s"
            raise ForwardError("timeout", 504, msg) from None
        except (AppError, OSError) as exc:
            if out.started:
                out.abort()
                return 0
            text = str(exc) or type(exc).__name__
            raise ForwardError("connect", 502, f"cannot read the app: {text}") from None
