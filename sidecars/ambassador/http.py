"""http mode: HTTP/1.1 requests balanced one by one over keep-alive pools to the members."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sidecars.ambassador import httpwire as wire
from sidecars.ambassador.exchange import (
    ClientConn,
    ClientGone,
    Exchange,
    lingering_close,
    new_exchange,
    read_response,
)
from sidecars.ambassador.listener import Listener
from sidecars.ambassador.members import Member
from sidecars.ambassador.pool import Pool, UpstreamConn

RETRY = object()  # _try_member's answer when another member may be tried
_NET_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class HttpListener(Listener):
    """An http mode listener."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending = 0
        self.pool = Pool(self.settings.pool_size, self.settings.idle_timeout)
        # idle connections to members that left (DNS, member file) are closed at once
        self.cluster.on_change = lambda c: self.pool.prune(set(c.members.values()))

    async def _serve(self) -> asyncio.Server:
        host, port = self.settings.listen
        return await asyncio.start_server(
            self._handle,
            host,
            port,
            limit=self.settings.max_header_size,
            backlog=1024,
            reuse_address=True,
        )

    async def close(self) -> None:
        await super().close()
        self.pool.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ClientConn(writer)
        if not self.admit(conn):
            writer.write(wire.error_response(503, "too many client connections"))
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        try:
            await self._serve_conn(conn, reader, writer, ip)
        except (ClientGone, ConnectionError, OSError):
            conn.abort()
        except Exception:
            self.log.exception("http connection failed", extra={"listener": self.name})
            conn.abort()
        finally:
            if conn.linger and not writer.is_closing():
                await lingering_close(reader, writer)
            self.release(conn)
            writer.close()

    async def _serve_conn(
        self, conn: ClientConn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> None:
        while not self.draining:
            head = await self._read_head(conn, reader, writer)
            if head is None:
                return
            conn.in_request = True
            conn.nbytes += 1
            try:
                keep = await self._exchange(head, reader, writer, ip)
            finally:
                conn.in_request = False
                conn.nbytes += 1
            if not keep:
                conn.linger = head.chunked or bool(head.length)  # its body may be unread
                return
            await writer.drain()

    async def _read_head(
        self, conn: ClientConn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> wire.Head | None:
        """The next request head, or None when the connection should end."""
        first = await reader.read(1)  # an idle keep-alive wait; the sweeper bounds it
        if not first:
            return None
        reason = ""
        try:
            async with asyncio.timeout(self.settings.header_timeout):
                raw = first + await reader.readuntil(b"\r\n\r\n")
            return wire.parse_request(raw[:-4])
        except asyncio.LimitOverrunError:
            reason, status, message = "header_too_large", 431, "request head too large"
        except TimeoutError:
            reason, status, message = "header_timeout", 408, "request head not sent in time"
        except asyncio.IncompleteReadError:
            return None
        except wire.HttpError as exc:
            reason, status, message = "bad_request", exc.status, exc.message
        self.metrics.rejected.labels(self.name, reason).inc()
        writer.write(wire.error_response(status, message))
        conn.linger = True
        return None

    async def _exchange(
        self, head: wire.Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str
    ) -> bool:
        """Proxy one request; True when the client connection may carry another one."""
        has_body = head.chunked or bool(head.length)
        if self.pending >= self.settings.max_pending:
            self.metrics.rejected.labels(self.name, "max_pending").inc()
            writer.write(wire.error_response(503, "too many requests in flight", has_body))
            return not has_body
        if head.expect_continue and has_body and head.version == b"HTTP/1.1":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        ex = new_exchange(self.settings, head, reader, writer, ip, has_body)
        self.pending += 1
        try:
            result = await self._attempts(ex)
        finally:
            self.pending -= 1
        if result is None:
            status, message = ex.error
            self.metrics.rejected.labels(self.name, "no_member").inc()
            writer.write(wire.error_response(status, message, close=has_body or head.close))
            return not (has_body or head.close)
        return result

    async def _attempts(self, ex: Exchange) -> bool | None:
        cluster, retries = self.cluster, self.settings.retries
        tried: list[Member] = []
        cluster.budget.record_request()
        for attempt in range(retries + 1):
            if attempt:
                if not cluster.budget.try_spend():
                    break
                cluster.retries += 1
            member = cluster.pick(ex.key, tried)
            if member is None:
                break
            tried.append(member)
            ex.last = attempt == retries or len(tried) >= len(cluster.members)
            result = await self._try_member(member, ex)
            if result is not RETRY:
                assert isinstance(result, bool)
                return result
        return None

    def _failed(self, member: Member, kind: str) -> None:
        if self.cluster.failed(member, kind):
            self.log.warning(
                "member %s ejected after %s failures",
                member.key,
                kind,
                extra={"listener": self.name, "member": member.key},
            )

    async def _try_member(self, member: Member, ex: Exchange) -> object:
        settings = self.settings
        try:
            up = await self.pool.acquire(member, settings.connect_timeout)
        except (OSError, TimeoutError) as exc:
            timeout = isinstance(exc, TimeoutError)
            self._failed(member, "timeout" if timeout else "connect")
            ex.error = (
                (504, "connect to a member timed out")
                if timeout
                else (502, "no member accepted the connection")
            )
            return RETRY
        member.requests += 1
        member.active += 1
        try:
            return await self._send_and_relay(member, up, ex)
        finally:
            member.active -= 1

    async def _send_and_relay(self, member: Member, up: UpstreamConn, ex: Exchange) -> object:
        started = time.monotonic()
        try:
            out = ex.out_head
            if not ex.has_host:  # an HTTP/1.0 request without Host: name the member
                out = out.replace(b"\r\n", b"\r\nhost: %s\r\n" % member.key.encode(), 1)
            up.writer.write(out)
            if ex.has_body:
                await self._send_body(ex, up)
            async with asyncio.timeout(self.settings.request_timeout):
                resp = await read_response(up)
        except ClientGone:
            up.close()
            raise
        except (TimeoutError, *_NET_ERRORS) as exc:
            up.close()
            timeout = isinstance(exc, TimeoutError)
            stale = up.reused and not timeout and isinstance(exc, asyncio.IncompleteReadError)
            if not stale:  # a kept-alive connection the member had closed is not its fault
                garbage = isinstance(exc, (ValueError, asyncio.LimitOverrunError))
                self._failed(member, "timeout" if timeout else "protocol" if garbage else "reset")
            ex.error = (
                (504, "member did not answer in time")
                if timeout
                else (502, "member closed the connection")
            )
            if ex.retriable:
                return RETRY
            ex.writer.write(wire.error_response(ex.error[0], ex.error[1]))
            return False
        self.latency.observe(time.monotonic() - started)
        status = int(resp.first[0])
        if status in (502, 503, 504):
            self._failed(member, f"http_{status}")
            if status != 504 and ex.retriable and not ex.last:
                up.close()
                ex.error = (status, f"member answered {status}")
                return RETRY
        else:
            member.record_success()
        return await self._relay_response(up, resp, status, ex)

    async def _send_body(self, ex: Exchange, up: UpstreamConn) -> None:
        idle = self.settings.idle_timeout
        try:
            if ex.head.chunked:
                await wire.copy_chunked(ex.reader, up.writer, idle)
            else:
                await wire.copy_length(ex.reader, up.writer, ex.head.length or 0, idle)
        except ValueError:
            raise ClientGone() from None  # malformed chunked framing from the client
        except (TimeoutError, *_NET_ERRORS):
            if ex.reader.at_eof() or ex.writer.is_closing():
                raise ClientGone() from None
            raise

    async def _relay_response(
        self, up: UpstreamConn, resp: wire.Head, status: int, ex: Exchange
    ) -> bool:
        head, writer = ex.head, ex.writer
        close = head.close or self.draining
        decode = False
        if head.first[0] == b"HEAD" or status in (204, 304):
            mode, framing = "none", wire.framing(resp)
        elif resp.chunked:
            decode = head.version == b"HTTP/1.0"
            mode, framing = "chunked", [] if decode else wire.framing(resp)
            close = close or decode
        elif resp.length is not None:
            mode, framing = "length", wire.framing(resp)
        else:
            mode, framing, close = "eof", [], True
        writer.write(wire.forward_response(resp, framing, close))
        idle = self.settings.idle_timeout
        try:
            if mode == "chunked":
                await wire.copy_chunked(up.reader, writer, idle, decode=decode)
            elif mode == "length":
                await wire.copy_length(up.reader, writer, resp.length or 0, idle)
            elif mode == "eof":
                await wire.copy_until_eof(up.reader, writer, idle)
        except (TimeoutError, *_NET_ERRORS):
            up.close()
            if writer.is_closing():
                raise ClientGone() from None
            # The member failed mid-response: cut the client off so it sees an incomplete
            # answer instead of a silently truncated one.
            up.member.errors["reset"] += 1
            raise ClientGone() from None
        if mode == "eof" or resp.close:
            up.close()
        else:
            self.pool.release(up)
        return not close
