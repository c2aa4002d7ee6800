"""Download one URL into a staged file: retries with backoff, Range resume, size limit."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from sidecars.runtime import Backoff
from sidecars.warloader import redirects
from sidecars.warloader.copier import HashingSink
from sidecars.warloader.errors import SourceError
from sidecars.warloader.receive import dispatch, receive, settle
from sidecars.warloader.remote import Fetched, HttpPolicy, Validators
from sidecars.warloader.sources import display
from sidecars.warloader.splicing import splice_body, splice_socket

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MIN_BATCH = 256 << 10
_MAX_BATCH = 8 << 20
# Bytes aiohttp buffers before pausing the socket (its default, 64 KiB, pauses it often).
_READ_BUFFER = 1 << 20
NOT_RETRYABLE = (
    aiohttp.ClientSSLError,
    aiohttp.InvalidURL,
    aiohttp.TooManyRedirects,
    aiohttp.NonHttpUrlRedirectClientError,
)


def client_session(
    ca_file: str, tls_verify: bool, timeout: float, concurrency: int
) -> aiohttp.ClientSession:
    """The one client for every download: bounded connect and idle-read time, TLS verified
    (system CAs or `ca_file`) unless turned off, bodies never decoded (the digest is of the
    bytes as served), proxies from the environment."""
    # True/False: aiohttp's own verified/unverified contexts, built when it was imported; a
    # context of ours (loading the CAs again, about 30 ms) only for a CA file
    tls: ssl.SSLContext | bool = tls_verify
    if ca_file and tls_verify:
        tls = ssl.create_default_context(cafile=ca_file)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        connector=aiohttp.TCPConnector(ssl=tls, limit=2 * concurrency),
        auto_decompress=False,
        read_bufsize=_READ_BUFFER,
        headers={"Accept-Encoding": "identity", "User-Agent": "sidecars-warloader"},
        trust_env=True,
        trace_configs=[redirects.guard()],
    )


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
    try:
        async with asyncio.timeout(policy.deadline):  # the only TimeoutError reaching here
            for attempt in range(1, policy.attempts + 1):
                try:
                    return await _watched(
                        _attempt(session, url, sink, policy, headers, known, state), sink, policy
                    )
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
    except TimeoutError:
        raise SourceError(
            f"cannot download {label}: not finished within {policy.deadline:g}s "
            "(WARLOADER_DOWNLOAD_DEADLINE)",
            retryable=True,  # what arrived is kept: the next run resumes it
        ) from None
    raise AssertionError("unreachable")


async def _watched(
    attempt: Coroutine[None, None, Fetched], sink: HashingSink, policy: HttpPolicy
) -> Fetched:
    """Run one attempt, calling it off (retryable) when it moves fewer than `min_rate` bytes
    per second over a whole `rate_window` (curl's --speed-limit/--speed-time): a server that
    drips a byte now and then, headers included, never trips an idle timeout."""
    task = asyncio.ensure_future(attempt)
    try:
        if policy.min_rate <= 0:
            return await task
        window = policy.rate_window
        last = sink.progress.done
        while True:
            done, _ = await asyncio.wait([task], timeout=window)
            if done:
                return task.result()
            now = sink.progress.done
            moved = now - last if now >= last else now  # a 200 after a resume starts over
            if moved < policy.min_rate * window:
                break
            last = now
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled():
            return task.result()
        raise SourceError(f"slower than {policy.min_rate} bytes/s for {window:g}s", retryable=True)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait([task])
        raise


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
        async with session.get(url, headers=headers, trace_request_ctx=url) as resp:
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
            if total is not None and _can_take_over(resp):
                await _take_over(resp, sink, total, session.timeout.sock_read)
            else:
                await _stream(resp, sink, policy.max_size)
            if total is not None and sink.size != total:
                raise SourceError(f"body ended at {sink.size} of {total} bytes", retryable=True)
            return Fetched(False, sink.size, sink.hexdigest(), state.validators)
    except NOT_RETRYABLE as exc:
        raise SourceError(describe(exc)) from None
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise SourceError(describe(exc), retryable=True) from None


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


def _can_take_over(resp: aiohttp.ClientResponse) -> bool:
    """A plain body of known length on an open HTTP/1 connection: we can read it ourselves."""
    conn = resp.connection
    return (
        conn is not None
        and conn.transport is not None
        and conn.protocol is not None
        and not conn.transport.is_closing()
        and "chunked" not in resp.headers.get("Transfer-Encoding", "").lower()
        and resp.content.exception() is None
    )


async def _take_over(
    resp: aiohttp.ClientResponse, sink: HashingSink, total: int, idle: float | None
) -> None:
    """Write what aiohttp already buffered, then take the rest of the body from the connection
    ourselves: on plain TCP moved into the file in the kernel (splicing.py), over TLS received
    into reused buffers (receive.py: no bytes object per read, no stream reader). The
    connection is closed afterwards, never reused."""
    conn = resp.connection
    assert conn is not None and conn.transport is not None and conn.protocol is not None
    transport, owner = conn.transport, conn.protocol
    try:
        # Empty the stream reader; each read lets aiohttp's parser hand over bytes it held
        # back while the reader was full, so once it is empty the parser holds none either.
        # No await from here until receive() has the transport: bytes arriving meanwhile
        # would go to aiohttp's parser.
        first: list[bytes] = []
        while chunk := resp.content.read_nowait(-1):
            first.append(chunk)
        got = sum(len(c) for c in first)
        sink.progress.done = sink.size + got
        owner.read_timeout = None  # the idle timeout is ours from here on
        owner.start_timeout()
        left = 0 if resp.content.is_eof() else total - sink.size - got
        sock = splice_socket(transport) if left > 0 else None
        if sock is None:
            await receive(transport, owner, left, sink, idle, first)
            return
        transport.pause_reading()  # the socket's bytes are ours to move from here on
        if first:
            await settle(dispatch(sink, first))
        stop = threading.Event()
        await in_thread(splice_body, sock, left, sink, idle, stop, on_cancel=stop.set)
    finally:
        resp.close()


async def _stream(resp: aiohttp.ClientResponse, sink: HashingSink, max_size: int) -> None:
    """Receive on the loop while one thread writes the previous batch and another hashes it.
    A batch goes out as soon as both are idle (at least _MIN_BATCH bytes), so batches grow
    only while the disk or the hash lags behind. When the connection breaks, what arrived
    before is still written: a retry resumes after it."""
    pending: list[asyncio.Future[None]] = []
    batch: list[bytes] = []
    batched = 0
    received = sink.size
    try:
        async for chunk in resp.content.iter_any():
            received += len(chunk)
            sink.progress.done = received
            if received > max_size:
                raise SourceError(f"body exceeds the limit of {max_size} bytes")
            batch.append(chunk)
            batched += len(chunk)
            idle = all(p.done() for p in pending)
            if (batched >= _MIN_BATCH and idle) or batched >= _MAX_BATCH:
                await settle(pending)
                pending = dispatch(sink, batch)
                batch, batched = [], 0
    except (aiohttp.ClientError, TimeoutError, ConnectionError):
        await _flush(pending, sink, batch)
        raise
    except BaseException:
        await settle(pending, quietly=True)
        raise
    await _flush(pending, sink, batch)


async def _flush(
    pending: list[asyncio.Future[None]], sink: HashingSink, batch: list[bytes]
) -> None:
    await settle(pending)
    if batch:
        await settle(dispatch(sink, batch))


async def in_thread(
    fn: Callable[..., T], *args: object, on_cancel: Callable[[], None] | None = None
) -> T:
    """asyncio.to_thread that, when cancelled, tells the thread (`on_cancel`) and still waits
    for it to finish: it may be using a file descriptor its caller is about to close."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()
        raise


def describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "more than 10 redirects"
    if isinstance(exc, aiohttp.NonHttpUrlRedirectClientError):
        return f"redirected to {display(str(exc))[:200]}: only http and https are fetched"
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status == 400:
        # aiohttp's parser refused what the server sent
        return f"malformed response ({_first_line(exc.message).rstrip(':')})"
    return _first_line(str(exc) or type(exc).__name__)


def _first_line(text: str) -> str:
    return (text.splitlines() or [""])[0][:200]
