"""`sidecars inject` on any YAML: the text with the sidecars added, or one InjectError line;
and what it writes, injected again, comes back byte for byte (a second run changes nothing)."""

from __future__ import annotations

from sidecars.inject.errors import InjectError
from sidecars.inject.request import Flags
from sidecars.inject.transform import Options, inject_text

from ._common import split

MAX_LEN = 4096
_SETS = (("logshipper-logs-volume", "logs"), ("warloader-volume", "logs"))
_SETS += (("warloader-sources", "http://a/b.war"),)
OPTIONS = (
    Options(Flags(), "r", "1", True),  # annotations only
    Options(Flags(("ambassador", "adapter")), "r", "1", True),
    Options(Flags(("logshipper", "warloader"), _SETS), "r", "1", True),
    Options(Flags(("logshipper", "ambassador"), _SETS), "r", "1", False),  # classic
)


def fuzz(data: bytes) -> None:
    (pick,), rest = split(data, 1)
    options = OPTIONS[pick % len(OPTIONS)]
    try:
        text = rest.decode("utf-8")
    except UnicodeDecodeError:
        return  # the command refuses it before this (tested in tests/hostile)
    try:
        out = inject_text(text, options)
    except InjectError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return
    assert inject_text(out, options) == out
