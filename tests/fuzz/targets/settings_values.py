"""The runtime's setting value parsers (sizes, durations, whole numbers, booleans, host:port,
choices, lists): the typed value within its range, or ValueError saying what was expected.
Numbers too long or too large are a clear rule result, never another exception."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sidecars.runtime import settings

from ._common import split

MAX_LEN = 512
_PARSERS: list[tuple[Callable[[str], Any], Callable[[Any], bool]]] = [
    (settings.size(), lambda v: isinstance(v, int) and v >= 0),
    (settings.size(1, 1 << 30), lambda v: isinstance(v, int) and 1 <= v <= 1 << 30),
    (settings.duration(), lambda v: isinstance(v, float) and 0.0 <= v),
    (settings.duration(0.01, 3600.0), lambda v: isinstance(v, float) and 0.01 <= v <= 3600.0),
    (settings.integer(), lambda v: isinstance(v, int)),
    (settings.integer(0, 65535), lambda v: isinstance(v, int) and 0 <= v <= 65535),
    (settings.boolean, lambda v: isinstance(v, bool)),
    (
        settings.host_port(),
        lambda v: isinstance(v, tuple) and isinstance(v[0], str) and 0 <= v[1] <= 65535,
    ),
    (settings.choice("tcp", "http"), lambda v: v in ("tcp", "http")),
    (settings.listing(settings.size()), lambda v: isinstance(v, tuple)),
    (settings.listing(str), lambda v: all(p and p == p.strip() for p in v)),
]


def fuzz(data: bytes) -> None:
    (pick,), rest = split(data, 1)
    parse, valid = _PARSERS[pick % len(_PARSERS)]
    raw = rest.decode("utf-8", "surrogateescape")  # how Python hands over environment values
    try:
        value = parse(raw)
    except ValueError as exc:
        assert str(exc).startswith("expected"), f"unclear error {exc!r} for {raw!r}"
        return
    assert valid(value), (raw, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # numbers are ASCII digits of bounded length: no other scripts' digits, no `_`
        assert raw.isascii() and "_" not in raw, f"{raw!r} accepted as {value!r}"
        assert abs(value) < 2**63, f"{raw!r} accepted as {value!r}"
    if isinstance(value, float):
        assert not math.isnan(value), raw
    shown = settings.hide_userinfo(raw)
    assert len(shown) <= len(raw) + 8 * raw.count("@")
