"""The ambassador's streaming body framing (chunked, decoded or passed through, and
Content-Length) fed in pieces. Differential: every valid chunked body decodes to what the
reference decoder gives and leaves the same bytes after it; passed through, the framing is
forwarded byte for byte; anything else is ValueError or still incomplete."""

from __future__ import annotations

from tests.fuzz import http_parsers as http

from . import _chunked_reference as reference
from ._common import pieces, split

MAX_LEN = 4096


def _run(body: object, wire: bytes, seed: int) -> tuple[bytes, bytes, bool]:
    """(what the framing forwarded, what it left after the body, whether it ended)."""
    out, rest = [], b""
    chunks = pieces(wire, seed)
    for n, chunk in enumerate(chunks):
        forwarded, after = body.feed(chunk)  # type: ignore[attr-defined]
        out.append(forwarded)
        if body.done:  # type: ignore[attr-defined]
            rest = after + b"".join(chunks[n + 1 :])
            break
        assert not after, (chunk, after)
    return b"".join(out), rest, body.done  # type: ignore[attr-defined]


def fuzz(data: bytes) -> None:
    (seed,), wire = split(data, 1)
    # 1. Arbitrary bytes against the reference.
    expected = reference.decode(wire)
    try:
        got, rest, done = _run(http.Chunked(decode=True), wire, seed)
    except http.CHUNKED_ERRORS:
        assert expected is None, f"valid chunked body refused: {wire!r}"
    else:
        if expected is not None:
            assert done and (got, rest) == expected, (wire, got, rest, expected)
        if done:
            assert len(got) <= len(wire)
    # 2. A valid encoding built from the bytes: decoded, and passed through unchanged.
    payload, encoded, tail = reference.encode(wire, seed)
    assert reference.decode(encoded + tail) == (payload, tail)
    got, rest, done = _run(http.Chunked(decode=True), encoded + tail, seed >> 3)
    assert done and got == payload and rest == tail, (encoded, got, rest)
    got, rest, done = _run(http.Chunked(), encoded + tail, seed)
    assert done and got == encoded and rest == tail, (encoded, got, rest)
    # 3. Content-Length: exactly n bytes, the rest left over.
    n = seed * 7 % (len(wire) + 1)
    got, rest, done = _run(http.Length(n), wire, seed)
    assert (got, rest) == (wire[:n], wire[n:]) and (done or n > len(wire)), (n, got, rest)
