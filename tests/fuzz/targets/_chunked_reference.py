"""A plain, strict chunked-coding decoder (RFC 9112 section 7.1) to check the real ones
against, and an encoder that writes valid chunked bodies from fuzzed bytes."""

from __future__ import annotations

import re

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_EXT = rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb'|"[^"\\\r\n]*"))?)*'
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})" + _EXT)
_FIELD = re.compile(_TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*")
MAX_LINE = 4094  # a size or trailer line, without its CRLF, that every decoder here accepts


def decode(wire: bytes) -> tuple[bytes, bytes] | None:
    """(data, bytes after the body) for a complete, valid chunked body, else None."""
    pos, out = 0, []
    while True:
        eol = wire.find(b"\r\n", pos)
        if eol < 0 or eol - pos > MAX_LINE:
            return None
        m = _SIZE_LINE.fullmatch(wire, pos, eol)
        if m is None:
            return None
        size, pos = int(m.group(1), 16), eol + 2
        if size == 0:
            break
        if len(wire) < pos + size + 2 or wire[pos + size : pos + size + 2] != b"\r\n":
            return None
        out.append(wire[pos : pos + size])
        pos += size + 2
    while True:  # trailer fields up to the blank line
        eol = wire.find(b"\r\n", pos)
        if eol < 0 or eol - pos > MAX_LINE:
            return None
        line, pos = wire[pos:eol], eol + 2
        if not line:
            return b"".join(out), wire[pos:]
        if _FIELD.fullmatch(line) is None:
            return None


def encode(data: bytes, seed: int) -> tuple[bytes, bytes, bytes]:
    """(payload, its valid chunked encoding, bytes that follow it) carved from `data`;
    `seed` varies chunk sizes, hex case, leading zeros, extensions and trailers."""
    cut = len(data) * 3 // 4
    payload, tail = data[:cut], data[cut:]
    parts, i, step = [], 0, seed % 13 + 1
    while i < len(payload):
        piece = payload[i : i + step]
        size = b"%x" % len(piece) if seed & 1 else b"%X" % len(piece)
        if seed & 2:
            size = b"00" + size
        ext = b' ; name="v;x"' if seed & 4 else (b";e" if seed & 8 else b"")
        parts.append(size + ext + b"\r\n" + piece + b"\r\n")
        i += step
        step = (step * 5 + seed) % 29 + 1
    trailer = b"x-checksum: abc\r\n" if seed & 16 else b""
    return payload, b"".join(parts) + b"0\r\n" + trailer + b"\r\n", tail
