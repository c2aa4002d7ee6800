"""The ambassador's watched member file (host:port[*weight] per line): addresses with a port
from 1 to 65535 and a weight from 1 to 1000, or ValueError naming the line."""

from __future__ import annotations

from sidecars.ambassador import spec

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    try:
        text = data.decode("utf-8")  # the file is read as UTF-8 text
    except UnicodeDecodeError:
        return
    try:
        members = spec.parse_member_file(text)
    except ValueError as exc:
        assert str(exc).startswith("line "), exc
        return
    for m in members:
        assert 0 < m.port <= 65535 and 1 <= m.weight <= 1000 and m.host, m
        assert spec.parse_address(f"{m.key}*{m.weight}") == m, m
