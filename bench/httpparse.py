"""HTTP head parsing: ours (sidecars.runtime.http.head) side by side with httptools (llhttp, the
parser of Node.js and uvicorn), uncached, on realistic request and response heads.

Each head is parsed the way its user does it for a head not seen before: ours finds the blank
line and parses what is before it (as the ambassador does on a head-cache miss); httptools gets
a fresh parser fed the same bytes, with callbacks that collect the URL and the headers (as
uvicorn does). Several rounds in alternation; the median heads/s of each. Then the corpus of
support/http_corpus.py (well-formed and malformed requests and responses) through both: which
cases one accepts and the other refuses. Not part of the tests. Run it under the bench lock:

    flock /tmp/bench.lock .venv/bin/python bench/httpparse.py [--rounds 7] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httptools

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._record import Record, recording  # noqa: E402
from bench._table import print_table  # noqa: E402
from sidecars.runtime.http.body import request_body, response_body  # noqa: E402
from sidecars.runtime.http.head import (  # noqa: E402
    Head,
    HttpError,
    _framing,
    parse_request,
    parse_response,
)
from support.http_corpus import REQUESTS, RESPONSES  # noqa: E402

MAX_HEAD = 16384  # the ambassador's default AMBASSADOR_MAX_HEADER_SIZE


def _head(first: bytes, *lines: bytes) -> bytes:
    return first + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


BROWSER_GET = _head(
    b"GET /products/view?id=4711&ref=home HTTP/1.1",
    b"Host: shop.example.com",
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    b"Accept-Language: en-US,en;q=0.5",
    b"Accept-Encoding: gzip, deflate, br",
    b"Connection: keep-alive",
    b"Cookie: session=0123456789abcdef0123; theme=dark",
    b"Upgrade-Insecure-Requests: 1",
)
CURL_POST = _head(
    b"POST /api/v1/orders HTTP/1.1",
    b"Host: api.example.com",
    b"User-Agent: curl/8.5.0",
    b"Accept: */*",
    b"Content-Type: application/json",
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.sig",
    b"Content-Length: 512",
)
MANY = _head(
    b"GET /api/v1/items?page=2&per_page=50 HTTP/1.1",
    b"Host: api.example.com",
    *(b"X-Header-%02d: value-%02d-abcdefghijklmnop" % (i, i) for i in range(19)),
)
RESPONSE = _head(
    b"HTTP/1.1 200 OK",
    b"Date: Sun, 06 Dec 2026 08:00:00 GMT",
    b"Server: nginx/1.22.1",
    b"Content-Type: application/json; charset=utf-8",
    b"Content-Length: 1234",
    b"Cache-Control: no-cache",
    b'ETag: "5f8d-abc123"',
    b"Vary: Accept-Encoding",
)
CHUNKED_RESPONSE = _head(
    b"HTTP/1.1 200 OK",
    b"Date: Sun, 06 Dec 2026 08:00:00 GMT",
    b"Content-Type: text/html",
    b"Transfer-Encoding: chunked",
    b"Connection: keep-alive",
)
HEADS = [
    ("browser GET, 8 headers", BROWSER_GET, True),
    ("curl POST with Content-Length", CURL_POST, True),
    ("GET with 20 headers", MANY, True),
    ("response 200, 7 headers", RESPONSE, False),
    ("response 200 chunked", CHUNKED_RESPONSE, False),
]


class Collect:
    """httptools callbacks that keep what a server needs: URL, headers, completion."""

    __slots__ = ("url", "headers", "complete", "messages")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.messages = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_message_complete(self) -> None:
        self.messages += 1


def ours(raw: bytes, request: bool) -> Callable[[], object]:
    parse = parse_request if request else parse_response

    def run() -> object:
        return parse(raw[: raw.find(b"\r\n\r\n")])

    return run


def theirs(raw: bytes, request: bool) -> Callable[[], object]:
    make = httptools.HttpRequestParser if request else httptools.HttpResponseParser

    def run() -> object:
        proto = Collect()
        make(proto).feed_data(raw)
        return proto

    return run


# The header names ours reads for framing and forwarding (the rest is passed on as it came).
READ = frozenset(
    b"connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer"
    b" transfer-encoding upgrade content-length x-forwarded-for via expect host".split()
)


def hybrid(raw: bytes, request: bool) -> Callable[[], object]:
    """What adopting httptools would cost: its parse, then our framing rules on the headers
    it collected and the forwarded block rebuilt from them (a sketch, for the figure)."""
    make = httptools.HttpRequestParser if request else httptools.HttpResponseParser

    def run() -> object:
        proto = Collect()
        parser = make(proto)
        parser.feed_data(raw)
        read, block = [], []
        for name, value in proto.headers:
            low = name.lower()
            if low in READ:
                read.append((low, value))
            else:
                block.append(b"%s: %s\r\n" % (name, value))
        version = b"HTTP/" + parser.get_http_version().encode()
        first = (
            (parser.get_method(), proto.url) if request else (b"%d" % parser.get_status_code(), b"")
        )
        head = Head(first, version, read, b"".join(block))
        _framing(head)
        return head

    return run


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn` over about `seconds`."""
    n = 1000
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took >= seconds:
            return n / took
        n = int(n * min(10.0, 1.2 * seconds / max(took, 1e-6)))


def ours_accepts_request(raw: bytes) -> bool:
    """The ambassador's reading: a head ending in CRLFCRLF within the limit, parsed, then
    every pipelined message's body framed to its end."""
    while raw:
        end = raw.find(b"\r\n\r\n")
        if end < 0 or end + 4 > MAX_HEAD:
            return False
        try:
            head = parse_request(raw[:end])
            body = request_body(head)
            rest = raw[end + 4 :]
            if body is not None:
                _, rest = body.feed(rest)
                if not body.done:
                    return False
        except (HttpError, ValueError):
            return False
        raw = rest
    return True


def ours_accepts_response(raw: bytes) -> bool:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return False
    try:
        head = parse_response(raw[:end])
        body = response_body(head, b"GET")
        body.feed(raw[end + 4 :])
    except (HttpError, ValueError):
        return False
    return body.done or not (head.chunked or head.length is not None)  # else: to the close


def theirs_accepts(raw: bytes, request: bool) -> bool:
    proto = Collect()
    parser = (httptools.HttpRequestParser if request else httptools.HttpResponseParser)(proto)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        return True  # CONNECT or Upgrade: the head was read, the rest is another protocol
    except httptools.HttpParserError:
        # bytes after a complete answer are the member's next (unasked) answer: not read
        return not request and proto.messages > 0
    if not request and proto.complete and not proto.messages:
        return parser.should_keep_alive() is False  # a body to the close: complete at EOF
    return proto.messages > 0 and proto.complete


def corpus_differences() -> list[tuple[str, str]]:
    """(case, which parser accepts it) for every corpus case the two read differently."""
    out = []
    for name, raw in REQUESTS:
        a, b = ours_accepts_request(raw), theirs_accepts(raw, True)
        if a != b:
            out.append((f"request: {name}", "ours only" if a else "httptools only"))
    for name, raw, _ in RESPONSES:
        a, b = ours_accepts_response(raw), theirs_accepts(raw, False)
        if a != b:
            out.append((f"response: {name}", "ours only" if a else "httptools only"))
    return out


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="per parser, head and round")
    args = parser.parse_args()
    with recording("httpparse") as record:
        measure(args.rounds, args.seconds, record)


def measure(rounds: int, seconds: float, record: Record) -> None:
    cpu = ["taskset", "-cp", "0", str(os.getpid())]
    if shutil.which("taskset"):
        subprocess.run(cpu, check=False, capture_output=True)
    for _, raw, request in HEADS:  # every parser reads every head alike
        mine, sketch = ours(raw, request)(), hybrid(raw, request)()
        assert isinstance(mine, Head) and isinstance(sketch, Head)
        assert (mine.length, mine.chunked) == (sketch.length, sketch.chunked)
        theirs(raw, request)()
    print(f"python {sys.version.split()[0]}, httptools {httptools.__version__}; {load()}")
    rows = [
        ("head", "bytes", "ours/s", "httptools/s", "ratio", "httptools+rules/s", "ratio"),
    ]
    for name, raw, request in HEADS:
        runs = (ours(raw, request), theirs(raw, request), hybrid(raw, request))
        rates: list[list[float]] = [[], [], []]
        for _ in range(rounds):
            for fn, got in zip(runs, rates, strict=True):
                got.append(rate(fn, seconds))
        a, b, c = (statistics.median(r) for r in rates)
        record.ratio(f"{name}: heads/s vs httptools", a / b, ours=a, anchor=b)
        record.ratio(f"{name}: heads/s vs httptools+rules", a / c, ours=a, anchor=c)
        rows.append(
            (
                name,
                str(len(raw)),
                f"{a:,.0f}",
                f"{b:,.0f}",
                f"{a / b:.2f}x",
                f"{c:,.0f}",
                f"{a / c:.2f}x",
            )
        )
    print_table(rows)
    print(f"after: {load()}")
    diffs = corpus_differences()
    total = len(REQUESTS) + len(RESPONSES)
    record.figure("corpus cases read differently", len(diffs))
    print(f"\ncorpus: {total} cases, read differently: {len(diffs)}")
    for case, who in diffs:
        print(f"  {case}: accepted by {who}")


if __name__ == "__main__":
    main()
