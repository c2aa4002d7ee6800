"""Download one URL into a staged file: retries with backoff, Range resume, size limit."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from sidecars.runtime import Backoff
from sidecars.warloader.copier import HashingSink
from sidecars.warloader.errors import SourceError

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_WRITE_BATCH = 1 << 20
_NOT_RETRYABLE = (
    aiohttp.ClientSSLError,
    aiohttp.InvalidURL,
    aiohttp.TooManyRedirects,
    aiohttp.NonHttpUrlRedirectClientError,
)


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server said identifies this version: for resuming and conditional requests."""

    etag: str | None = None
    last_modified: str | None = None

    def if_range(self) -> str | None:
        """A validator fit for If-Range: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


@dataclass(frozen=True, slots=True)
class Fetched:
    """Outcome of a download: the server's 304, or the size and sha256 of what was written."""

    not_modified: bool
    size: int = 0
    sha256: str = ""
    validators: Validators = Validators()


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Limits and retry behaviour for every download."""

    max_size: int
    attempts: int
    retry_delay: float


async def download(
    session: aiohttp.ClientSession,
    url: str,
    label: str,
    sink: HashingSink,
    policy: HttpPolicy,
    headers: Mapping[str, str],
    known: Validators | None,
    log: logging.Logger,
    resume: Validators | None = None,
    on_fresh: Callable[[Validators], None] | None = None,
) -> Fetched:
    """Fetch `url` into `sink`; retry transient failures, resuming by Range when possible.
    `known` (the installed version's validators) makes the first request conditional; `resume`
    names the version of bytes already in `sink`; `on_fresh` runs (in a thread) before the body
    of every full (200) response."""
    backoff = Backoff(base=policy.retry_delay, cap=30.0)
    state = _State(validators=resume, on_fresh=on_fresh)
    for attempt in range(1, policy.attempts + 1):
        try:
            return await _attempt(session, url, sink, policy, headers, known, state)
        except SourceError as exc:
            if not exc.retryable or attempt == policy.attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                message = f"cannot download {label}: {exc}{tries}"
                raise SourceError(message, retryable=exc.retryable) from None
            delay = backoff.next_delay()
            log.warning(
                "download of %s failed: %s; retrying in %.1fs",
                label,
                exc,
                delay,
                extra={"source": label, "attempt": attempt, "resume_at": sink.size},
            )
            state.retries += 1
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@dataclass(slots=True)
class _State:
    validators: Validators | None = None
    on_fresh: Callable[[Validators], None] | None = None
    retries: int = 0


async def _attempt(
    session: aiohttp.ClientSession,
    url: str,
    sink: HashingSink,
    policy: HttpPolicy,
    base_headers: Mapping[str, str],
    known: Validators | None,
    state: _State,
) -> Fetched:
    headers = dict(base_headers)
    sink.progress.done = sink.size
    resume_from = 0
    if sink.size and state.validators and state.validators.if_range():
        resume_from = sink.size
        headers["Range"] = f"bytes={resume_from}-"
        headers["If-Range"] = state.validators.if_range() or ""
    elif known and not sink.size:
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status == 304 and known:
                return Fetched(not_modified=True, validators=known)
            _check_status(resp, resume_from)
            if resp.status == 200 and sink.size:
                await in_thread(sink.restart)
                sink.progress.done = 0
            state.validators = Validators(
                resp.headers.get("ETag"), resp.headers.get("Last-Modified")
            )
            if resp.status == 200 and state.on_fresh is not None:
                await in_thread(state.on_fresh, state.validators)
            length = resp.content_length
            total = None if length is None else sink.size + length
            if total is not None and total > policy.max_size:
                raise SourceError(f"{total} bytes is more than the limit of {policy.max_size}")
            sink.progress.total = total
            await _stream(resp, sink, policy.max_size)
            if total is not None and sink.size != total:
                raise SourceError(f"body ended at {sink.size} of {total} bytes", retryable=True)
            return Fetched(False, sink.size, sink.hexdigest(), state.validators)
    except _NOT_RETRYABLE as exc:
        raise SourceError(_describe(exc)) from None
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise SourceError(_describe(exc), retryable=True) from None


def _check_status(resp: aiohttp.ClientResponse, resume_from: int) -> None:
    if resp.status == 206:
        match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if resume_from and match and int(match.group(1)) == resume_from:
            return
        raise SourceError(f"HTTP 206 with an unexpected Content-Range at {resume_from}")
    if resp.status == 200:
        return
    what = f"HTTP {resp.status} {resp.reason or ''}".strip()
    raise SourceError(what, retryable=resp.status in RETRY_STATUSES)


async def _stream(resp: aiohttp.ClientResponse, sink: HashingSink, max_size: int) -> None:
    """Receive on the loop while a thread writes and hashes the previous batch. When the
    connection breaks, what arrived before is still written: a retry resumes after it."""
    pending: asyncio.Future[None] | None = None
    batch = bytearray()
    received = sink.size
    try:
        async for chunk in resp.content.iter_any():
            received += len(chunk)
            sink.progress.done = received
            if received > max_size:
                raise SourceError(f"body exceeds the limit of {max_size} bytes")
            batch += chunk
            if len(batch) >= _WRITE_BATCH:
                if pending is not None:
                    await asyncio.shield(pending)
                data, batch = batch, bytearray()
                pending = asyncio.ensure_future(asyncio.to_thread(sink.write, data))
    except (aiohttp.ClientError, TimeoutError, ConnectionError):
        await _flush(pending, sink, batch)
        raise
    except BaseException:
        if pending is not None:
            # the writer thread must be done with the file before anyone closes it
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()
        raise
    await _flush(pending, sink, batch)


async def _flush(pending: asyncio.Future[None] | None, sink: HashingSink, batch: bytearray) -> None:
    if pending is not None:
        await asyncio.shield(pending)
    if batch:
        await in_thread(sink.write, batch)


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """asyncio.to_thread that, when cancelled, still waits for the thread to finish: the thread
    may be using a file descriptor its caller is about to close."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()
        raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
