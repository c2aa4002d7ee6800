"""Differential test: one corpus of requests and responses (support/http_corpus.py) through a real
HAProxy and a real ambassador in http mode, both in front of the same recording member.

Expected behaviour, compared by meaning (forwarded or not, body bytes), not by exact bytes:
- requests: the ambassador is never laxer than HAProxy - what HAProxy refuses (an answer of its
  own, or a close without forwarding) the ambassador refuses too; what HAProxy forwards the
  ambassador forwards with the same body bytes, unless the case is in EXPECTED_DIFFERENCES
  with the reason. The member never receives a request the client got no answer for.
- responses: a member answer that cannot be framed reaches the client as a 502 or a cut
  connection, never as a complete answer; a well-framed one reaches it whole."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.http_corpus import REQUESTS, RESPONSES
from support.process import free_port, stop_process
from tests.ambassador_support import ambassador, wait_for

pytestmark = pytest.mark.integration

READ_DEADLINE = 10.0  # for every read of one exchange, generous for a starved machine

# Malformed answers HAProxy (2.6) passes on as a complete answer of its own reading.
HAPROXY_REPAIRS = {
    "status with four digits": "reads the first three digits",
    "CL and TE": "drops Content-Length and reads chunked",
    "obs-fold": "unfolds",
    "NUL in a header": "passes control characters on",
}

PIPELINED = {"pipelined": 3}  # cases of several requests: how many answers to wait for

ANSWER = b"HTTP/1.1 200 OK\r\nx-rec: %d\r\nContent-Length: 2\r\n\r\nok"

# Cases HAProxy (2.6) forwards and the ambassador refuses (never the other way), and why.
_SMUGGLING = "framing two parsers could read two ways is refused, not repaired (RFC 9112 6.1)"
_BARE_LF = "lines must end in CRLF; accepting a bare LF is a MAY (RFC 9112 2.2), not taken"
_CTL = "a control character in a field is refused (RFC 9110 5.5); HAProxy passes it on"
EXPECTED_DIFFERENCES: dict[str, str] = {
    "CL and TE": _SMUGGLING + "; HAProxy drops Content-Length and closes after",
    "TE and CL": _SMUGGLING + "; HAProxy drops Content-Length and closes after",
    "CL and TE smuggling a request": _SMUGGLING + "; HAProxy drops Content-Length",
    "list content-length, same": _SMUGGLING + "; HAProxy merges equal values",
    "repeated content-length, same": _SMUGGLING + "; HAProxy merges equal values",
    "TE in HTTP/1.0": "faulty framing in HTTP/1.0 (RFC 9112 6.1) is refused",
    "obs-fold": "obs-fold is refused with 400 (RFC 9112 5.2 allows it); HAProxy unfolds",
    "obs-fold of content-length": "obs-fold is refused, most of all on a framing header",
    "bare LF line ends": _BARE_LF + " (400 at once: the head could never end in CRLF CRLF)",
    "bare LF in the header block": _BARE_LF,
    "chunk lines with bare LF": _BARE_LF + " (400 before the member answers)",
    "NUL in a value": _CTL,
    "control character in a value": _CTL,
    "DEL in a value": _CTL,
    "NUL in a chunk extension": _CTL + " (400 before the member answers)",
    "obs-fold in a trailer": "trailers are checked as header lines (400 before the member answers)",
    "second host, same": "more than one Host is a 400 (RFC 9112 3.2: MUST)",
    "missing host": "an HTTP/1.1 request without Host is a 400 (RFC 9112 3.2: MUST)",
    "HTTP/1.2": "only HTTP/1.0 and HTTP/1.1 are served (505); HAProxy reads 1.2 as 1.1",
    "HTTP/2.0": "only HTTP/1.0 and HTTP/1.1 are served (505); HAProxy reads 2.0 as 1.1",
    "two spaces in the request line": "a request line is exactly three fields split by one "
    "space (RFC 9112 3: whitespace-lenient parsing is a MAY that splits parsers)",
    "tab in the request line": "a request line is exactly three fields split by one space",
    "asterisk-form with GET": "asterisk-form is for OPTIONS only (RFC 9112 3.2.4)",
    "absolute-form with userinfo": "userinfo in an http target is refused (RFC 9110 4.2.4)",
    "CONNECT": "not a forward proxy: CONNECT is 501 (tunnels only through Upgrade)",
    "lowercase method": "llhttp, which splits our header lines, knows the registered methods "
    "in upper case only (methods are case-sensitive, RFC 9110 9.1)",
}


@dataclass
class Record:
    """A request as the member received it."""

    proxy: str
    head: bytes
    body: bytes


@dataclass
class Member:
    """A raw HTTP/1.1 server that records every complete request it receives and answers
    `200` naming the request (`x-rec: <index>`, and `ok` as its body); a request
    for `/r/<n>` is answered with response `n` of the corpus instead, then the connection closes.
    Which proxy sent a request is told by the header it adds (HAProxy) or by Via (ambassador)."""

    port: int = 0
    records: list[Record] = field(default_factory=list)
    partial: int = 0  # connections that closed in the middle of a request
    busy: int = 0  # connections with part of a request read

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    self.partial += bool(exc.partial)
                    return
                self.busy += 1
                try:
                    body = await read_body(reader, head)
                except (asyncio.IncompleteReadError, ValueError):
                    self.partial += 1
                    return
                finally:
                    self.busy -= 1
                target = head.split(b" ", 2)[1]
                if target.startswith(b"/r/"):
                    writer.write(RESPONSES[int(target[3:])][1])
                    await writer.drain()
                    return
                proxy = (
                    "ambassador"
                    if re.search(rb"(?im)^via:.*1\.1 ambassador", head)
                    else ("haproxy" if b"x-proxied-by: haproxy" in head.lower() else "?")
                )
                self.records.append(Record(proxy, head, body))
                writer.write(ANSWER % (len(self.records) - 1))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The body of a request a proxy forwarded (so well-formed): decoded when chunked."""
    if re.search(rb"(?im)^transfer-encoding:[ \t]*chunked[ \t]*\r$", head):
        out = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if not size:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return out
            out += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise ValueError("chunk without its CRLF")
    m = re.search(rb"(?im)^content-length:[ \t]*([0-9]+)[ \t]*\r$", head)
    return await reader.readexactly(int(m.group(1))) if m else b""


@dataclass
class Answer:
    """A response as the client parsed it."""

    status: int
    body: bytes
    complete: bool  # framed and whole (a body to the close counts once the close came)
    rec: int | None = None  # the member's record of the request answered


def parse_answers(data: bytes, head_request: bool = False) -> list[Answer]:
    """Every response in what a client received, interim (1xx) ones left out; the last is
    incomplete when the bytes end inside it. Unparseable bytes end the list. Answers to a
    HEAD request have no body."""
    out: list[Answer] = []
    while data:
        end = data.find(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] ([0-9]{3})[^\r\n]*\r\n", data)
        if end < 0 or m is None:
            return out
        head, data = data[: end + 2], data[end + 4 :]
        status = int(m.group(1))
        if 100 <= status < 200:
            continue
        length = re.search(rb"(?im)^content-length:[ \t]*([0-9]+)[ \t]*\r$", head)
        found = re.search(rb"(?im)^x-rec: ([0-9]+)\r$", head)
        rec = int(found.group(1)) if found else None
        if head_request:
            out.append(Answer(status, b"", True, rec))
        elif re.search(rb"(?im)^transfer-encoding:[ \t]*chunked", head):
            body, rest, complete = dechunk(data)
            out.append(Answer(status, body, complete, rec))
            data = rest
        elif length is not None:
            n = int(length.group(1))
            out.append(Answer(status, data[:n], len(data) >= n, rec))
            data = data[n:]
        else:
            out.append(Answer(status, data, True, rec))
            data = b""
    return out


def dechunk(data: bytes) -> tuple[bytes, bytes, bool]:
    """(body, bytes after it, complete) of a chunked body."""
    body = b""
    while True:
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return body, b"", False
        try:
            size = int(data[:line_end].split(b";")[0], 16)
        except ValueError:
            return body, b"", False
        data = data[line_end + 2 :]
        if not size:
            end = data.find(b"\r\n") if data.startswith(b"\r\n") else data.find(b"\r\n\r\n")
            if end < 0:
                return body, b"", False
            return body, data[end + (2 if data.startswith(b"\r\n") else 4) :], True
        if len(data) < size + 2:
            return body + data[:size], b"", False
        body, data = body + data[:size], data[size + 2 :]


async def exchange(port: int, raw: bytes, answers: int = 0) -> bytes:
    """Send `raw` on a fresh connection and read until the proxy closes. The client half-closes
    at once, unless it waits for `answers` answers to pipelined requests: what proxies do with
    requests held behind one in flight at a half-close differs (HAProxy drops them at times)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(OSError):  # a proxy may close before it has read it all
            writer.write(raw)
            await writer.drain()
            if not answers:
                writer.write_eof()
        got = b""
        async with asyncio.timeout(READ_DEADLINE):
            with contextlib.suppress(OSError):
                while chunk := await reader.read(65536):
                    got += chunk
                    if answers and sum(a.complete for a in parse_answers(got)) >= answers:
                        break
        return got
    finally:
        writer.close()


@dataclass
class Outcome:
    """What one proxy did with one request case."""

    answers: list[Answer]
    forwarded: list[bytes]  # bodies of the requests the member received and the client got
    unanswered: int  # requests the member received that the client got no answer for

    def __str__(self) -> str:
        statuses = [a.status for a in self.answers]
        return f"statuses {statuses}, forwarded bodies {self.forwarded}"


async def run_case(member: Member, proxy: str, port: int, name: str, raw: bytes) -> Outcome:
    before = len(member.records)
    got = await exchange(port, raw, PIPELINED.get(name, 0))
    answers = parse_answers(got, raw.startswith(b"HEAD "))
    # a proxy that cut a request may not have closed its member connection yet
    await wait_for(lambda: not member.busy, READ_DEADLINE, f"{proxy}: member done reading")
    forwarded = []
    for a in answers:
        if a.status == 200 and a.complete and a.rec is not None:
            rec = member.records[a.rec]
            assert rec.proxy == proxy, f"{proxy} got the answer to a request from {rec.proxy}"
            forwarded.append(rec.body)
    mine = [r for r in member.records[before:] if r.proxy == proxy]
    return Outcome(answers, forwarded, len(mine) - len(forwarded))


def haproxy_config(tmp: Path, port: int, member_port: int) -> Path:
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(
        "global\n  maxconn 256\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n"
        "  timeout server 5s\n  timeout http-request 5s\n"
        f"frontend fe\n  bind 127.0.0.1:{port}\n"
        "  http-request set-header x-proxied-by haproxy\n  default_backend be\n"
        f"backend be\n  server m 127.0.0.1:{member_port}\n"
    )
    return cfg


@contextlib.contextmanager
def haproxy(member_port: int) -> Iterator[int]:
    """`haproxy -f cfg -db` as a child process in front of the member; yields its port."""
    binary = shutil.which("haproxy")
    assert binary, "haproxy is not installed (scripts/setup installs it)"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = haproxy_config(Path(tmp), port, member_port)
        log = Path(tmp) / "haproxy.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, "-f", str(cfg), "-db"], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 10.0
            while not _listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"haproxy did not start: {log.read_text()[-2000:]}")
                time.sleep(0.05)
            yield port
        finally:
            stop_process(proc)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


@contextlib.asynccontextmanager
async def proxies() -> AsyncIterator[tuple[Member, int, int]]:
    """The member, HAProxy's port and the ambassador's port."""
    member = Member()
    server = await asyncio.start_server(member.serve, "127.0.0.1", 0)
    member.port = server.sockets[0].getsockname()[1]
    env = {
        "AMBASSADOR_MODE": "http",
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member.port}",
        "AMBASSADOR_HEALTH_CHECK": "none",
        "AMBASSADOR_HEADER_TIMEOUT": "5s",
        "AMBASSADOR_RETRIES": "0",
        "AMBASSADOR_EJECT_FAILURES": "1000",  # the response corpus is one bad answer after another
    }
    try:
        with haproxy(member.port) as hport:
            async with ambassador(env) as amb:
                yield member, hport, amb.port
    finally:
        server.close()


async def test_requests_the_ambassador_is_never_laxer_than_haproxy() -> None:
    """Every request case through both proxies: the ambassador refuses what HAProxy refuses,
    forwards the same bodies as HAProxy does unless listed, and never lets a request reach the
    member without its answer reaching the client."""
    problems: list[str] = []
    differences: dict[str, str] = {}
    async with proxies() as (member, hport, aport):
        for name, raw in REQUESTS:
            ha = await run_case(member, "haproxy", hport, name, raw)
            amb = await run_case(member, "ambassador", aport, name, raw)
            if amb.unanswered:
                problems.append(f"{name}: the member got {amb.unanswered} unanswered request(s)")
            if ha.forwarded == amb.forwarded:
                if name in EXPECTED_DIFFERENCES:
                    problems.append(f"{name}: listed as a difference but both agree ({ha})")
                continue
            differences[name] = f"haproxy {ha}; ambassador {amb}"
            if ha.forwarded[: len(amb.forwarded)] != amb.forwarded:  # not a prefix: laxer
                problems.append(f"{name}: the ambassador is laxer: {differences[name]}")
            elif name not in EXPECTED_DIFFERENCES:
                problems.append(f"{name}: unexplained difference: {differences[name]}")
    assert not problems, "\n".join(problems)


async def test_responses_never_reach_the_client_unframed() -> None:
    """Every response case from the member: through the ambassador a malformed one reaches the
    client as a 502 or a cut connection, never as a complete answer, and a well-framed one
    reaches it whole. HAProxy is the yardstick: what it refuses the ambassador refuses too
    (HAProxy itself repairs some answers the ambassador refuses: see HAPROXY_REPAIRS)."""
    problems: list[str] = []
    repaired: set[str] = set()
    async with proxies() as (_, hport, aport):
        for i, (name, _raw, framable) in enumerate(RESPONSES):
            request = b"GET /r/%d HTTP/1.1\r\nHost: h\r\n\r\n" % i
            ha = parse_answers(await exchange(hport, request))
            amb = parse_answers(await exchange(aport, request))
            got = [(a.status, a.body, a.complete) for a in amb]
            if framable:
                if got != [(200, b"ok", True)]:
                    problems.append(f"{name}: expected 200 ok, got {got}")
                if [(a.status, a.body, a.complete) for a in ha] != [(200, b"ok", True)]:
                    problems.append(f"{name}: HAProxy did not pass it on")
            elif any(a.complete and a.status != 502 for a in amb):
                problems.append(f"{name}: a complete answer went through: {got}")
            if any(a.complete and a.status != 502 for a in ha) and not framable:
                repaired.add(name)
    assert not problems, "\n".join(problems)
    assert repaired <= set(HAPROXY_REPAIRS), f"HAProxy repairs more: {repaired}"
