"""One corpus of HTTP/1.1 messages, well-formed and malformed, named: requests as a client sends
them (head and body) and responses as a member sends them. The differential test sends it to
HAProxy and to the ambassador; the parser benchmark parses its heads with ours and httptools."""

from __future__ import annotations

H = b"Host: h\r\n"
CHUNKED = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
CL5 = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"


def post(*headers: bytes, body: bytes = b"") -> bytes:
    """A POST with the given header lines (CRLF added) and the body as it is."""
    return (
        b"POST /p HTTP/1.1\r\nHost: h\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body
    )


def get(*headers: bytes, first: bytes = b"GET / HTTP/1.1") -> bytes:
    return first + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


# Requests every HTTP/1.1 proxy forwards: (name, raw bytes).
WELL_FORMED: list[tuple[str, bytes]] = [
    ("get", get(b"Host: h")),
    (
        "get like curl",
        get(b"Host: example.com", b"User-Agent: curl/8.5.0", b"Accept: */*"),
    ),
    (
        "get like a browser",
        get(
            b"Host: example.com",
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            b"Accept-Language: en-US,en;q=0.5",
            b"Accept-Encoding: gzip, deflate, br",
            b"Connection: keep-alive",
            b"Cookie: session=0123456789abcdef; theme=dark",
            b"Upgrade-Insecure-Requests: 1",
            first=b"GET /index.html?q=1&r=%20 HTTP/1.1",
        ),
    ),
    ("head", get(H.strip(), first=b"HEAD / HTTP/1.1")),
    ("options asterisk", get(H.strip(), first=b"OPTIONS * HTTP/1.1")),
    ("post content-length", CL5 + b"hello"),
    ("post content-length 0", post(b"Content-Length: 0")),
    ("post leading-zero length", post(b"Content-Length: 005", body=b"hello")),
    ("get with a body", get(b"Host: h", b"Content-Length: 5") + b"hello"),
    ("chunked", CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("chunked with trailers", CHUNKED + b"5\r\nhello\r\n0\r\nX-Sum: 5\r\nX-More: a b\r\n\r\n"),
    ("chunked with an extension", CHUNKED + b"5;name=value\r\nhello\r\n0\r\n\r\n"),
    ("chunked uppercase hex", CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n"),
    ("chunked leading zeros", CHUNKED + b"0005\r\nhello\r\n0\r\n\r\n"),
    ("chunked coding in capitals", post(b"Transfer-Encoding: Chunked", body=b"0\r\n\r\n")),
    (
        "pipelined",
        get(b"Host: h", first=b"GET /1 HTTP/1.1")
        + get(b"Host: h", first=b"GET /2 HTTP/1.1")
        + CL5
        + b"hello",
    ),
    ("http/1.0 without host", get(first=b"GET / HTTP/1.0")),
    ("http/1.0 post", post(b"Content-Length: 2", body=b"hi").replace(b"1.1", b"1.0", 1)),
    ("absolute-form", get(b"Host: h", first=b"GET http://h/p?q HTTP/1.1")),
    ("absolute-form without host", get(first=b"GET http://h/p HTTP/1.1")),
    ("100 header lines", get(b"Host: h", *(b"X-H%d: v" % i for i in range(99)))),
    ("empty header value", get(b"Host: h", b"X-Empty:")),
    ("tab in a header value", get(b"Host: h", b"X-Tab: a\tb")),
    ("spaces around a header value", get(b"Host:   h   ")),
    ("obs-text in a header value", get(b"Host: h", b"X-Latin: caf\xe9")),
    ("lowercase method", get(b"Host: h", first=b"get / HTTP/1.1")),
    (
        "expect 100-continue with the body",
        post(b"Content-Length: 5", b"Expect: 100-continue") + b"hello",
    ),
]

# Requests a strict proxy refuses (or that only one reading of could forward).
MALFORMED: list[tuple[str, bytes]] = [
    # framing: the request smuggling shapes
    ("CL and TE", post(b"Content-Length: 4", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n")),
    ("TE and CL", post(b"Transfer-Encoding: chunked", b"Content-Length: 4", body=b"0\r\n\r\n")),
    (
        "CL and TE smuggling a request",
        post(
            b"Content-Length: 35",
            b"Transfer-Encoding: chunked",
            body=b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
    ),
    ("list content-length, same", post(b"Content-Length: 5, 5", body=b"hello")),
    ("list content-length, conflicting", post(b"Content-Length: 5, 6", body=b"hello!")),
    (
        "repeated content-length, same",
        post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
    ),
    (
        "repeated content-length, conflicting",
        post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
    ),
    ("signed content-length +", post(b"Content-Length: +5", body=b"hello")),
    ("signed content-length -", post(b"Content-Length: -5", body=b"hello")),
    ("spaced content-length", post(b"Content-Length: 5 5", body=b"hello")),
    ("hex content-length", post(b"Content-Length: 0x5", body=b"hello")),
    ("empty content-length", post(b"Content-Length:", body=b"")),
    ("over-long content-length", post(b"Content-Length: " + b"9" * 20, body=b"hello")),
    ("space before the colon", post(b"Content-Length : 5", body=b"hello")),
    ("TE gzip, chunked", post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n")),
    ("TE chunked, gzip", post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n")),
    ("TE chunked twice", post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n")),
    ("TE identity", post(b"Transfer-Encoding: identity", body=b"")),
    ("TE with a vertical tab", post(b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n")),
    (
        "TE in HTTP/1.0",
        post(b"Transfer-Encoding: chunked", body=b"0\r\n\r\n").replace(b"1.1", b"1.0", 1),
    ),
    ("body shorter than its length", post(b"Content-Length: 10", body=b"hello")),
    # header lines
    ("obs-fold", get(b"Host: h", b"X-Folded: a", b" b")),
    ("obs-fold of content-length", post(b"Content-Length:", b" 5", body=b"hello")),
    ("header line starting with a space", get(b" Host: h")),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: h\n\n"),
    ("bare LF in the header block", b"GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n"),
    ("bare CR in a value", get(b"Host: h", b"X-A: a\rb")),
    ("NUL in a value", get(b"Host: h", b"X-A: a\x00b")),
    ("control character in a value", get(b"Host: h", b"X-A: a\x01b")),
    ("DEL in a value", get(b"Host: h", b"X-A: a\x7fb")),
    ("header without a colon", get(b"Host: h", b"X-A")),
    ("empty header name", get(b"Host: h", b": v")),
    ("space in a header name", get(b"Host: h", b"X A: 1")),
    ("second host", get(b"Host: h", b"Host: other")),
    ("second host, same", get(b"Host: h", b"Host: h")),
    ("missing host", get(first=b"GET / HTTP/1.1")),
    ("over-long header line", get(b"Host: h", b"X-Long: " + b"a" * 20000)),
    ("over-long request line", get(b"Host: h", first=b"GET /" + b"a" * 20000 + b" HTTP/1.1")),
    ("absolute-form with another host", get(b"Host: h", first=b"GET http://other/p HTTP/1.1")),
    ("101 header lines", get(b"Host: h", *(b"X-H%d: v" % i for i in range(100)))),
    ("120 headers", get(b"Host: h", *(b"X-H%d: v" % i for i in range(120)))),
    # request line
    ("HTTP/1.2", get(b"Host: h", first=b"GET / HTTP/1.2")),
    ("HTTP/2.0", get(b"Host: h", first=b"GET / HTTP/2.0")),
    ("HTTP/1", get(b"Host: h", first=b"GET / HTTP/1")),
    ("lowercase version", get(b"Host: h", first=b"GET / http/1.1")),
    ("HTTP/0.9 request", b"GET /\r\n\r\n"),
    ("two spaces in the request line", get(b"Host: h", first=b"GET  / HTTP/1.1")),
    ("tab in the request line", get(b"Host: h", first=b"GET\t/ HTTP/1.1")),
    ("trailing space in the request line", get(b"Host: h", first=b"GET / HTTP/1.1 ")),
    ("bad method characters", get(b"Host: h", first=b"G(T / HTTP/1.1")),
    ("NUL in the target", get(b"Host: h", first=b"GET /a\x00b HTTP/1.1")),
    ("target without a slash", get(b"Host: h", first=b"GET a HTTP/1.1")),
    ("asterisk-form with GET", get(b"Host: h", first=b"GET * HTTP/1.1")),
    ("absolute-form with userinfo", get(b"Host: h", first=b"GET http://u@h/ HTTP/1.1")),
    ("CONNECT", get(b"Host: h:443", first=b"CONNECT h:443 HTTP/1.1")),
    # chunked bodies
    ("chunk size -1", CHUNKED + b"-1\r\nhello\r\n0\r\n\r\n"),
    ("chunk size 0x5", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk size with a leading space", CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n"),
    ("chunk size not hex", CHUNKED + b"g\r\nhello\r\n0\r\n\r\n"),
    ("chunk size empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk size huge", CHUNKED + b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("chunk data longer than its size", CHUNKED + b"5\r\nhelloX\r\n0\r\n\r\n"),
    ("chunk lines with bare LF", CHUNKED + b"5\nhello\n0\n\n"),
    ("CR in a chunk extension", CHUNKED + b"5;a=\rb\r\nhello\r\n0\r\n\r\n"),
    ("LF in a chunk extension", CHUNKED + b"5;a=\nb\r\nhello\r\n0\r\n\r\n"),
    ("NUL in a chunk extension", CHUNKED + b"5;a=\x00\r\nhello\r\n0\r\n\r\n"),
    ("CR in a trailer", CHUNKED + b"5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n"),
    ("obs-fold in a trailer", CHUNKED + b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
    ("trailer without a colon", CHUNKED + b"5\r\nhello\r\n0\r\nX-T\r\n\r\n"),
    ("chunked body cut short", CHUNKED + b"5\r\nhel"),
]

REQUESTS = WELL_FORMED + MALFORMED

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
RCHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

# Responses as a member sends them (then closes): (name, raw bytes, framable). A framable one
# must reach the client as it was meant; any other must reach it as a 502 or a cut connection,
# never as a complete answer.
RESPONSES: list[tuple[str, bytes, bool]] = [
    ("ok", OK_RESPONSE, True),
    ("chunked", RCHUNKED + b"2\r\nok\r\n0\r\n\r\n", True),
    ("chunked with trailers", RCHUNKED + b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n", True),
    ("http/1.0 to the close", b"HTTP/1.0 200 OK\r\n\r\nok", True),
    ("bytes after the length", OK_RESPONSE + b"EXTRA", True),
    ("status with four digits", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ("status without a code", b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ("status line misspelt", b"HTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ("status line HTTP/2", b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ("not HTTP", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", False),
    (
        "CL and TE",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        False,
    ),
    ("negative content-length", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", False),
    ("list content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", False),
    ("chunk size -1", RCHUNKED + b"-1\r\nok\r\n0\r\n\r\n", False),
    ("chunk size 0x2", RCHUNKED + b"0x2\r\nok\r\n0\r\n\r\n", False),
    ("chunk size huge", RCHUNKED + b"fffffffffffffffffff\r\nok\r\n0\r\n\r\n", False),
    ("CR in a chunk extension", RCHUNKED + b"2;a\rb\r\nok\r\n0\r\n\r\n", False),
    ("chunked cut short", RCHUNKED + b"2\r\nok\r\n", False),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-F: a\r\n b\r\n\r\nok", False),
    ("NUL in a header", b"HTTP/1.1 200 OK\r\nX-A: \x00\r\nContent-Length: 2\r\n\r\nok", False),
    ("bare CR in a header", b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok", False),
    ("content-length cut short", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", False),
]
