"""One proxied http request: member attempts, the request body out, the response back."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from sidecars.ambassador import httpwire as wire
from sidecars.ambassador.accepting import SHORTAGE
from sidecars.ambassador.members import Member
from sidecars.ambassador.pool import Upstream
from sidecars.ambassador.retryafter import delay as retry_after
from sidecars.runtime.http.body import Body, Chunked, Length, request_body
from sidecars.runtime.http.head import head_end

if TYPE_CHECKING:
    from sidecars.ambassador.http import ClientSide

# a constant: compiled, a name imported from a module is looked up in this one's dict per call
_PERF_COUNTER: Final = time.perf_counter
UPSTREAM_HEAD_LIMIT = 64 * 1024
HEAD_CACHE_ENTRIES = 256  # response heads kept parsed by their exact bytes (see http.py)
HEAD_CACHE_BYTES = 2048


DONE = Length(0)  # the body of a response forwarded whole


def _plain(resp: wire.Head, status: int) -> bool:
    """A final answer the fast path may forward: Content-Length framed, kept alive, not one
    that ejects or retries (5xx), may back off (429) or has no body (204, 304)."""
    return (
        resp.length is not None
        and not resp.close
        and 200 <= status < 500
        and status not in (204, 304, 429)
    )


class Shape:
    """What a request head decides, worked out once per distinct head (heads are kept by their
    bytes, see http.py): its parsed form, the head forwarded to members and the flags that each
    exchange for it reads."""

    __slots__ = ("head", "out", "has_body", "retriable", "http10", "plain", "needs_host")

    def __init__(self, head: wire.Head, out: bytes) -> None:
        self.head, self.out = head, out
        self.has_body = head.chunked or bool(head.length)
        self.retriable = head.first[0] in wire.IDEMPOTENT and not self.has_body
        self.http10 = head.version == b"HTTP/1.0"  # kept alive only when it asked
        # its answer may take the fast path (see up_data)
        self.plain = (
            not self.has_body
            and not head.close
            and head.first[0] != b"HEAD"
            and not self.http10
            and not head.upgrade
        )
        # an HTTP/1.0 request without Host: each member gets its own name
        self.needs_host = head.get(b"host") is None


class Exchange:
    """Drives one request from its parsed head to the end of the response, with callbacks from
    the client side and from the member connection (no task per request)."""

    __slots__ = (
        "side", "shape", "head", "early", "listener", "body", "key", "tried", "member", "up",
        "task", "error", "started", "sent", "rbuf", "resp", "resp_body", "close_after",
        "finished", "tunnel",
    )  # fmt: skip

    def __init__(self, side: ClientSide, shape: Shape, early: bytes) -> None:
        self.side, self.shape, self.head, self.early = side, shape, shape.head, early
        self.listener = listener = side.listener
        self.body = request_body(shape.head) if shape.has_body else None
        self.tunnel = False  # bytes both ways after the member switched protocols (101)
        key = b""  # only hashing reads it
        if listener.hashing:
            key = side.ip.encode()
            header = listener.settings.hash_header
            if header:
                key = shape.head.find(header) or key
        self.key = key
        self.tried: tuple[Member, ...] = ()  # a 1-tuple comes from a free list, a list does not
        self.member: Member | None = None
        self.up: Upstream | None = None
        self.task: asyncio.Task[None] | None = None
        self.error = (503, "no member available")
        self.started = 0.0  # the loop's clock (deadlines)
        self.sent = 0.0  # perf_counter() (latency: the loop's clock may have 1 ms steps)
        self.rbuf = b""
        self.resp: wire.Head | None = None
        self.resp_body: Body | None = None
        self.close_after = False
        self.finished = False
        listener.cluster.budget.requests += 1  # record_request(), without a call

    # -- attempts -----------------------------------------------------------------------------

    def attempt(self, waited: bool = False) -> bool:
        """Send the request to a member: the first attempt, or a retry while any are left, or
        (`waited`) one waiting for a member under its limit again; False only then, when every
        member is still at its limit."""
        cluster = self.listener.cluster
        if not waited:
            retries = self.listener.retries
            attempt = len(self.tried)
            if attempt > retries or (attempt and not cluster.budget.try_spend()):
                self._give_up()
                return True
            if attempt:
                cluster.retries += 1
        member = cluster.pick(self.key, self.tried)
        if member is None:
            if cluster.member_limit and cluster.full:  # wait for a member to free a slot
                if waited:
                    return False
                listener = self.listener
                cluster.waits += 1
                listener.waiting.add(self, listener.loop.time() + listener.settings.connect_timeout)
                return True
            self._give_up()
            return True
        self.tried += (member,)
        now = self.listener.clock()
        up = self.listener.pool.take(member, now)
        if up is not None:
            self._send(member, up, now)
        else:
            member.active += 1  # counts toward its limit while connecting (the task's)
            self.task = self.listener.loop.create_task(self._connect(member))
        return True

    def resume(self) -> bool:
        """Waiting for a member under its limit: try again (True once it waits no more)."""
        return self.finished or self.attempt(waited=True)

    def expire(self) -> None:
        """No member freed a slot within the connect timeout."""
        if not self.finished:
            self.listener.cluster.at_limit += 1
            self.error = (503, "every member at its connection limit")
            self._give_up()

    def _last_attempt(self) -> bool:
        """No retry is left: as many attempts as allowed, or every member tried."""
        tried = len(self.tried)
        return tried > self.listener.retries or tried >= len(self.listener.cluster.members)

    async def _connect(self, member: Member) -> None:
        try:
            up = await self.listener.pool.connect(member, self.listener.settings.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.task = None
            member.active -= 1
            if self.finished:
                return
            if not isinstance(exc, TimeoutError) and exc.errno in SHORTAGE:
                # out of descriptors or memory here: not the member's fault, and no retry
                self.listener.metrics.rejected.labels(self.listener.name, "no_descriptors").inc()
                self.side.transport.write(wire.error_response(503, "out of descriptors"))
                self._done(keep=False)
                return
            timeout = isinstance(exc, TimeoutError)
            self.listener.failed(member, "timeout" if timeout else "connect")
            self.error = (
                (504, "connect to a member timed out")
                if timeout
                else (502, "no member accepted the connection")
            )
            self.attempt()
            return
        self.task = None
        member.active -= 1
        if self.finished:
            up.close()
            return
        self._send(member, up, self.listener.loop.time())

    def _send(self, member: Member, up: Upstream, now: float) -> None:
        self.member, self.up = member, up
        up.owner = self
        member.requests += 1
        member.active += 1
        shape = self.shape
        out = shape.out
        if shape.needs_host:
            out = out.replace(b"\r\n", b"\r\nhost: %s\r\n" % member.key.encode(), 1)
        self.started, self.sent = now, _PERF_COUNTER()
        # the listener's sweep fires the request timeout: no timer handle per request
        self.listener.awaiting[self] = now + self.listener.request_timeout
        early = self.early
        if early:
            self.early = b""
            self.client_data(early, out)
        else:
            up.write(out)
        if self.body is not None:
            self.side.resume()

    def _give_up(self) -> None:
        self.listener.metrics.rejected.labels(self.listener.name, "no_member").inc()
        close = self.body is not None or self.head.close
        self.side.transport.write(wire.error_response(*self.error, close, self.shape.http10))
        self._done(keep=not close)

    def _retry_or_answer(self) -> None:
        if self.shape.retriable and not self.finished:
            self.attempt()
        else:
            self.side.transport.write(wire.error_response(*self.error))
            self._done(keep=False)

    def _unwatch(self) -> None:
        """Out of the request timeouts' watch (compiled, `in` and `del` are direct calls, `pop`
        a method lookup)."""
        awaiting = self.listener.awaiting
        if self in awaiting:
            del awaiting[self]

    def _release_up(self, reuse: bool) -> None:
        self._unwatch()
        up, self.up = self.up, None
        if up is None:
            return
        up.member.active -= 1
        if reuse:
            self.listener.pool.release(up, self.listener.loop.time())
        else:
            up.close()

    def _done(self, keep: bool) -> None:
        if self.finished:
            return
        self.finished = True
        if self.tunnel:  # counted out when it switched
            self.side.exchange_done(False, linger=False)
            return
        self.listener.pending -= 1
        body_left = self.body is not None and not self.body.done
        self.side.exchange_done(keep and not body_left, linger=body_left or self.body is not None)

    # -- the request body, from the client ----------------------------------------------------

    def wants_body(self) -> bool:
        return self.body is not None and not self.body.done and not self.finished

    def client_data(self, data: bytes, before: bytes = b"") -> None:
        """Request body bytes (and what follows them) as the client sends them."""
        up, body = self.up, self.body
        assert body is not None
        if up is None:  # not connected yet: hold it (reading is paused)
            self.early += data
            self.side.pause()
            return
        try:
            chunk, rest = body.feed(data)
        except ValueError:  # malformed chunked framing from the client
            self._bad_body()
            return
        up.transport.write(before + chunk if before else chunk)
        if body.done:
            self.side.stash(rest)

    def _bad_body(self) -> None:
        """Malformed chunked framing in the request body: the member connection is dropped
        (it holds a cut request) and the client gets a 400, or is cut off when the member's
        answer has begun."""
        self._release_up(reuse=False)
        if self.resp is not None:
            self.side.abort()
            return
        listener = self.listener
        listener.metrics.rejected.labels(listener.name, "bad_request").inc()
        self.side.transport.write(wire.error_response(400, "malformed chunked request body"))
        self._done(keep=False)

    def up_paused(self, paused: bool) -> None:
        """The member reads the request body slower than the client sends it."""
        if self.wants_body():
            self.side.pause() if paused else self.side.resume()

    def client_paused(self, paused: bool) -> None:
        """The client reads the response slower than the member sends it."""
        if self.up is not None:
            self.up.pause_reading(paused)

    def client_lost(self) -> None:
        """The client closed or reset: drop the member connection (not the member's fault)."""
        if self.task is not None:  # connecting to the last member tried
            self.task.cancel()
            self.task = None
            self.tried[-1].active -= 1
        self._release_up(reuse=False)
        if not self.finished:
            self.finished = True
            if not self.tunnel:  # a tunnel was counted out when it switched
                self.listener.pending -= 1

    def awaiting_head(self) -> bool:
        return self.resp is None and self.up is not None

    # -- the response, from the member --------------------------------------------------------

    def up_data(self, data: bytes) -> None:
        try:
            if not self.shape.plain or self.resp_body is not None or self.rbuf:
                return self._up_data(data)
            # the fast path: a whole Content-Length answer in one read, its head seen before;
            # a member connection keeps its last one (a member repeats its answer but for the
            # Date, which moves once a second)
            up = self.up
            assert up is not None
            if data == up.last_in and up.last_head is not None:
                resp, out = up.last_head, up.last_out
            else:
                found = self._plain_seen(up, data)
                if found is None:
                    return self._up_data(data)
                resp, out = found
            # what _response and _response_end do for it, fused: forward it whole and put the
            # member connection back in the pool
            listener, side = self.listener, self.side
            if listener.draining or side.client_eof:
                return self._up_data(data)  # the general path adds `connection: close`
            side.nbytes += 1
            self._unwatch()
            listener.latency.observe(_PERF_COUNTER() - self.sent)
            up.member.failures_in_row = 0
            self.resp, self.resp_body = resp, DONE
            side.write(out)
            self.up = None
            up.member.active -= 1
            # idle from the request's start: a whole answer came in one read, so at most a little
            # early (the connection may leave the pool sooner, never later); no clock read
            listener.pool.release(up, self.started)
            self.finished = True
            listener.pending -= 1
            side.exchange_done(True, False)
        except Exception:  # a bug must cost one exchange, not the process or a hang
            self.listener.log.exception(
                "http exchange failed", extra={"listener": self.listener.name}
            )
            self._cut()

    def _plain_seen(self, up: Upstream, data: bytes) -> tuple[wire.Head, bytes] | None:
        """A plain answer whose head was seen before, whole in `data`: (its parsed head, the
        bytes to forward), kept by the member connection when short; else None."""
        end = head_end(data)
        hit = self.listener.responses.get(data[:end]) if end > 0 else None
        if hit is None or hit[3] != len(data) - end - 4:
            return None
        out = hit[2] + data[end + 4 :] if hit[3] else hit[2]
        if len(data) <= HEAD_CACHE_BYTES:
            up.last_in, up.last_out, up.last_head = data, out, hit[0]
        return hit[0], out

    def _up_data(self, data: bytes) -> None:
        self.side.nbytes += 1
        if self.resp_body is None:
            self._head_data(data)
            return
        try:
            chunk, rest = self.resp_body.feed(data)
        except ValueError:
            self._cut()
            return
        self.side.transport.write(chunk)
        if self.resp_body.done:
            self._response_end(reuse=not rest)

    def _head_data(self, data: bytes) -> None:
        buf = self.rbuf + data if self.rbuf else data
        while True:
            end = head_end(buf)
            if end < 0:
                if len(buf) > UPSTREAM_HEAD_LIMIT:
                    return self._bad_member("protocol", "member sent a response head too large")
                self.rbuf = buf
                return
            raw = buf[:end]
            cache = self.listener.responses
            hit = cache.get(raw)
            if hit is None:
                try:
                    resp = wire.parse_response(raw)
                except ValueError:
                    return self._bad_member("protocol", "member sent a malformed response")
                status = int(resp.first[0])
                plain = resp.length if _plain(resp, status) and resp.length is not None else -1
                out = wire.forward_response(resp, wire.framing_line(resp), False)
                hit = resp, status, out, plain
                if end <= HEAD_CACHE_BYTES:
                    if len(cache) >= HEAD_CACHE_ENTRIES:
                        cache.clear()
                    cache[raw] = hit
            buf = buf[end + 4 :] if len(buf) > end + 4 else b""
            status = hit[1]
            if status == 101:
                if not self.head.upgrade or self.body is not None:
                    return self._bad_member("protocol", "member switched protocols unasked")
                self.rbuf = b""
                return self._switch(hit[0], buf)
            if status >= 200:
                break
            if not self.shape.http10:  # 100 Continue (the member wants the body), 103 Early Hints
                self.side.transport.write(hit[2])
        self.rbuf = b""
        self._response(hit[0], status, hit[2], buf)

    def _response(self, resp: wire.Head, status: int, plain: bytes, rest: bytes) -> None:
        """The final response head; `plain` is it forwarded with its own framing, kept alive."""
        member = self.member
        assert member is not None
        self._unwatch()
        self.listener.latency.observe(_PERF_COUNTER() - self.sent)
        if status in (429, 503):
            wait = retry_after(resp.find("retry-after"))
            if wait is not None:
                self.listener.cluster.back_off(member, wait)
        if status in (502, 503, 504):
            self.listener.failed(member, f"http_{status}")
            if status != 504 and self.shape.retriable and not self._last_attempt():
                self._release_up(reuse=False)
                self.error = (status, f"member answered {status}")
                self.attempt()
                return
        else:
            member.failures_in_row = 0  # record_success(), inlined on the hot path
        head, side = self.head, self.side
        close = head.close or self.listener.draining or (side.client_eof and not side.buf)
        body: Body
        own = True  # the response keeps its own framing
        if head.first[0] == b"HEAD" or status in (204, 304):
            body = Length(0)
        elif resp.chunked:
            decode = head.version == b"HTTP/1.0"
            body, own = Chunked(decode), not decode
            close = close or decode
        elif resp.length is not None:
            body = Length(resp.length)
        else:
            body, own, close = Body(), False, True
        self.resp, self.resp_body, self.close_after = resp, body, close
        if own and not close and not self.shape.http10:
            out = plain
        else:
            framing = wire.framing_line(resp) if own else b""
            out = wire.forward_response(resp, framing, close, self.shape.http10)
        extra = b""
        if rest:
            try:
                chunk, extra = body.feed(rest)
            except ValueError:
                side.transport.write(out)
                self._cut()
                return
            out += chunk
        side.transport.write(out)
        if body.done:
            self._response_end(reuse=not extra)

    def _switch(self, resp: wire.Head, rest: bytes) -> None:
        """The member switched protocols (101): from now on the bytes of both sides go to the
        other as they come (a WebSocket), until either closes or the idle timeout passes."""
        listener, side, up = self.listener, self.side, self.up
        assert up is not None
        self._unwatch()
        listener.latency.observe(_PERF_COUNTER() - self.sent)
        up.member.failures_in_row = 0
        self.tunnel, self.close_after = True, True
        listener.pending -= 1  # no longer a request in flight
        self.resp, self.resp_body, self.body = resp, Body(), Body()
        side.transport.write(wire.switch_response(resp) + rest)
        if side.buf:  # what the client sent after its request, already for the new protocol
            data, side.buf = side.buf, b""
            up.transport.write(data)
        side.resume()

    def client_eof(self) -> None:
        """The client half-closed a tunnel: pass it on."""
        up = self.up
        if up is not None and up.transport.can_write_eof():
            up.transport.write_eof()

    def _response_end(self, reuse: bool) -> None:
        assert self.resp is not None
        # a member that answered before the whole request body arrived is out of step
        body_sent = self.body is None or self.body.done
        # a member asked to upgrade may still think it is being asked: never reused
        self._release_up(reuse and body_sent and not self.resp.close and not self.head.upgrade)
        self._done(keep=not self.close_after)

    def up_closed(self, exc: Exception | None) -> None:
        """The member closed or reset the connection."""
        up = self.up
        if up is None or self.finished:
            return
        if self.resp_body is None:  # before a response head
            stale = up.reused and not self.rbuf
            self._release_up(reuse=False)
            if not stale:  # a kept-alive connection the member had closed is not its fault
                self.listener.failed(up.member, "reset")
            self.error = (502, "member closed the connection")
            self._retry_or_answer()
        elif type(self.resp_body) is Body:  # the end of a body framed by the close
            self._response_end(reuse=False)
        else:
            up.member.errors["reset"] += 1
            self._cut()

    def _cut(self) -> None:
        """The member failed mid-response: cut the client off so that it sees an incomplete
        answer instead of a silently truncated one."""
        self._release_up(reuse=False)
        self.side.abort()

    def _bad_member(self, kind: str, message: str) -> None:
        member = self.member
        assert member is not None
        self._release_up(reuse=False)
        self.listener.failed(member, kind)
        self.error = (502, message)
        self._retry_or_answer()

    def timed_out(self) -> None:
        """No response head within the request timeout (called by the listener's sweep)."""
        member = self.member
        assert member is not None
        self._release_up(reuse=False)
        self.listener.failed(member, "timeout")
        self.error = (504, "member did not answer in time")
        self._retry_or_answer()
