"""Prometheus text (0.0.4) and OpenMetrics parser: one regex pass, strict, line-numbered errors."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
# A quoted label value: any character but quote, backslash or newline, or one of the three
# escapes the formats allow (\\, \" and \n); written unrolled, which is fast in `re`.
QUOTED = r'"[^"\\\n]*(?:\\[\\"n][^"\\\n]*)*"'
LABEL = rf"{LABEL_NAME}[ \t]*=[ \t]*{QUOTED}"
LABELS = rf"\{{[ \t]*(?:{LABEL}(?:[ \t]*,[ \t]*{LABEL})*[ \t]*,?[ \t]*)?\}}"
VALUE = r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[Ii]nf(?:inity)?|NaN|nan)"
TIMESTAMP = r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
# The common, canonical spelling of a sample: no blanks inside the braces, single spaces.
_STRICT_LABEL = rf"{LABEL_NAME}={QUOTED}"
_STRICT_SAMPLE = (
    rf"({NAME})(\{{(?:{_STRICT_LABEL}(?:,{_STRICT_LABEL})*,?)?\}})? ({VALUE})(?: ({TIMESTAMP}))?"
    rf"(?: #[^\n]*)?\n"
)
# Every line is a canonical sample, a comment, an empty line - or else it lands in the last
# group and gets a second, lenient look (blanks allowed where the text format allows them).
_LINE = re.compile(
    rf"{_STRICT_SAMPLE}|# (TYPE|HELP|UNIT) ({NAME})(?: ([^\n]*))?\n|(#[^\n]*)\n|\n|([^\n]*)\n"
)
_CHUNK = 1 << 16  # parse in slices so the temporary match tuples stay small
_SAMPLE = re.compile(
    rf"({NAME})({LABELS})?[ \t]+({VALUE})(?:[ \t]+({TIMESTAMP}))?(?:[ \t]+#.*)?[ \t]*\Z"
)
_LABEL_PAIR = re.compile(rf"({LABEL_NAME})[ \t]*=[ \t]*({QUOTED})")
_TYPES = frozenset(
    ("counter", "gauge", "histogram", "summary", "untyped", "unknown")
    + ("gaugehistogram", "info", "stateset")
)
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info")


class ParseError(ValueError):
    """The page is not valid exposition text; `line` is 1-based (0 when no line applies)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.line, self.problem = line, problem


def unescape(quoted: str) -> str:
    """The value of a quoted label value (quotes included in `quoted`)."""
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), body)


def parse_labels(raw: str) -> dict[str, str]:
    """`{a="1",b="x\\"y"}` -> {"a": "1", "b": 'x"y'}; a repeated label name is an error."""
    out: dict[str, str] = {}
    for name, quoted in _LABEL_PAIR.findall(raw):
        if name in out:
            raise ValueError(f"label {name!r} appears twice in {raw}")
        out[name] = unescape(quoted)
    return out


@dataclass(slots=True)
class Family:
    """The series of one sample name: raw label text -> value. Labels are parsed on demand."""

    series: dict[str, float] = field(default_factory=dict)
    _parsed: list[tuple[dict[str, str], float]] | None = None

    def samples(self) -> list[tuple[dict[str, str], float]]:
        if self._parsed is None:
            self._parsed = [(parse_labels(raw), v) for raw, v in self.series.items()]
        return self._parsed


@dataclass(slots=True)
class Page:
    """A parsed exposition page."""

    families: dict[str, Family]
    types: dict[str, str]
    helps: dict[str, str]
    openmetrics: bool = False

    @property
    def series_count(self) -> int:
        return sum(len(f.series) for f in self.families.values())

    def type_of(self, name: str) -> str:
        """The declared type of a sample name (`x_bucket` finds the type of `x`)."""
        if name in self.types:
            return self.types[name]
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in self.types:
                return self.types[name[: -len(suffix)]]
        return "untyped"


def parse(text: str) -> Page:
    """Parse a whole page; raise ParseError naming the first bad line."""
    text, openmetrics = _strip_eof(text)
    if not text.endswith("\n"):
        text += "\n"
    page = Page({}, {}, {}, openmetrics)
    pos, size = 0, len(text)
    while pos < size:
        end = text.find("\n", pos + _CHUNK)
        end = size if end < 0 else end + 1
        _scan(page, text, pos, end)
        pos = end
    return page


def _scan(page: Page, text: str, pos: int, end: int) -> None:
    """Parse the lines in text[pos:end] into `page` (the hot loop)."""
    families, types, helps = page.families, page.types, page.helps
    get, lenient = families.get, _SAMPLE.match
    for name, labels, value, _ts, kind, meta, rest, comment, other in _LINE.findall(text, pos, end):
        if not name:
            if kind:
                _meta(text, kind, meta, rest, types, helps)
                continue
            if comment:
                if comment.startswith(("# TYPE", "# HELP", "# UNIT")):
                    _fail_at(text, comment, "malformed metadata line")
                continue
            if not other or not other.strip():
                continue
            m = lenient(other)
            if m is None:
                _locate(text)
                return
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            if not labels.strip("{} \t"):
                labels = ""  # `x{ }` is `x`
        if labels == "{}":
            labels = ""  # `x{}` is the same series as `x`
        family = get(name)
        if family is None:
            family = families[name] = Family()
        series = family.series
        if labels in series:
            _locate(text)
        series[labels] = float(value)


def _strip_eof(text: str) -> tuple[str, bool]:
    """Cut an OpenMetrics `# EOF` terminator; anything but blank space after it is an error."""
    if text.startswith("# EOF"):
        at = 0
    else:
        at = text.find("\n# EOF")
        if at < 0:
            return text, False
        at += 1
    if text[at + 5 :].strip():
        raise ParseError(text.count("\n", 0, at) + 1, "text after # EOF")
    return text[:at], True


def _meta(
    text: str, kind: str, name: str, rest: str, types: dict[str, str], helps: dict[str, str]
) -> None:
    if kind == "TYPE":
        if rest not in _TYPES:
            _fail_at(text, f"# TYPE {name} {rest}", f"unknown metric type {rest!r}")
        if types.setdefault(name, rest) != rest:
            _fail_at(text, f"# TYPE {name} {rest}", f"second TYPE for {name}")
    elif kind == "HELP":
        helps[name] = rest.replace("\\n", "\n").replace("\\\\", "\\") if "\\" in rest else rest


def _fail_at(text: str, line_text: str, problem: str) -> None:
    for number, line in enumerate(text.split("\n"), 1):
        if line == line_text:
            raise ParseError(number, f"{problem}: {_clip(line)}")
    raise ParseError(0, problem)


def _locate(text: str) -> None:
    """Slow path, run only for a bad page: find the first bad line and raise for it."""
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ParseError(number, f"not a sample, comment or blank line: {_clip(line)}")
        labels = m.group(2) or ""
        key = (m.group(1), "" if labels.replace(" ", "").replace("\t", "") == "{}" else labels)
        if key in seen:
            raise ParseError(number, f"duplicate series {_clip(key[0] + key[1])}")
        seen.add(key)
    raise ParseError(0, "invalid page")


def _clip(line: str, limit: int = 120) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def format_value(value: float) -> str:
    """A float as the exposition formats spell it (NaN, +Inf, -Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
