"""A metrics page in the format and encoding the scraper asks for: OpenMetrics 1.0.0 for
`Accept: application/openmetrics-text`, the Prometheus text format 0.0.4 otherwise, gzip for
`Accept-Encoding: gzip`. The negotiation and the bytes are prometheus_client's (0.26), which
the sidecars used before: a version that cannot be compared (`version=x`) gets the text format,
an OpenMetrics type without a version gets 1.0.0, `escaping=dots` and `values` escape the
names as it does."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

from sidecars.runtime.metrics import Family, Sample, go_float

Encoder = Callable[[Iterable[Family]], bytes]
TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")


def _value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(sample: Sample, name: Callable[[str], str], sample_name: str) -> str:
    labels = ""
    if sample.labels:
        pairs = sorted(sample.labels.items())
        labels = "{" + ",".join(f'{name(k)}="{_value(v)}"' for k, v in pairs) + "}"
    return f"{sample_name}{labels} {go_float(sample.value)}\n"


def _same(name: str) -> str:
    return name


def _dots(name: str) -> str:
    return name.replace("_", "__")


def text(families: Iterable[Family], name: Callable[[str], str] = _same) -> bytes:
    """The Prometheus text format; `_created` series go to a gauge family of their own."""
    out: list[str] = []
    for f in families:
        help_text = f.documentation.replace("\\", r"\\").replace("\n", r"\n")
        title = f.name + "_total" if f.type == "counter" else f.name
        out.append(f"# HELP {name(title)} {help_text}\n# TYPE {name(title)} {f.type}\n")
        created = []
        for s in f.samples:
            if s.name == f.name + "_created":
                created.append(_line(s, name, name(s.name)))
            else:
                out.append(_line(s, name, name(s.name)))
        if created:
            title = name(f.name + "_created")
            out.append(f"# HELP {title} {help_text}\n# TYPE {title} gauge\n")
            out.extend(created)
    return "".join(out).encode()


def openmetrics(
    families: Iterable[Family], name: Callable[[str], str] = _same, values: bool = False
) -> bytes:
    """OpenMetrics: counters named without `_total`, `_created` beside each series, `# EOF`."""
    out: list[str] = []
    for f in families:
        out.append(f"# HELP {name(f.name)} {_value(f.documentation)}\n")
        out.append(f"# TYPE {name(f.name)} {f.type}\n")
        # prometheus_client writes sample names value-escaped here (`U__` and `_` doubled)
        for s in f.samples:
            sample_name = "U__" + _dots(s.name) if values else name(s.name)
            out.append(_line(s, name, sample_name))
    out.append("# EOF\n")
    return "".join(out).encode()


def _param(tokens: list[str], key: str) -> str:
    for token in tokens:
        if "=" in token:
            k, value = token.strip().split("=", 1)
            if k == key:
                return value
    return ""


def _version(raw: str) -> tuple[int | str, ...]:
    parts: list[int | str] = []
    for part in raw.split("."):
        try:
            parts.append(int(part))
        except ValueError:  # not a number, or more digits than int() reads
            parts.append(part)
    return tuple(parts)


def _at_least_1(raw: str) -> bool:
    """Whether a version is 1.0.0 or later; TypeError when it cannot be compared."""
    return _version(raw) >= (1, 0, 0)


def _escaping(tokens: list[str]) -> str:
    value = _param(tokens, "escaping")
    return value if value in ESCAPINGS else "underscores"


def _bind(encode: Callable[..., bytes], escaping: str) -> Encoder:
    name = _dots if escaping == "dots" else _same
    if encode is openmetrics and escaping == "values":
        return lambda families: openmetrics(families, name, values=True)
    return lambda families: encode(families, name)


def encoder_for(accept: str) -> tuple[Encoder, str]:
    """The encoder and Content-Type for an Accept header."""
    try:
        for accepted in accept.split(","):
            tokens = accepted.split(";")
            media = tokens[0].strip()
            if media == "application/openmetrics-text":
                version, escaping = _param(tokens, "version"), _escaping(tokens)
                if not version:
                    return openmetrics, OPENMETRICS
                if _at_least_1(version):
                    return _bind(openmetrics, escaping), (
                        f"application/openmetrics-text; version={version}; charset=utf-8; "
                        f"escaping={escaping}"
                    )
            elif media == "text/plain":
                version, escaping = _param(tokens, "version"), _escaping(tokens)
                if version and _at_least_1(version):
                    return _bind(text, escaping), f"{TEXT_1_0_0}; escaping={escaping}"
    except TypeError:  # a version that cannot be compared: the default
        pass
    return text, TEXT_0_0_4


def gzip_accepted(accept_encoding: str) -> bool:
    return any(item.split(";")[0].strip().lower() == "gzip" for item in accept_encoding.split(","))


def render(
    families: Iterable[Family], accept: str, accept_encoding: str
) -> tuple[bytes, list[tuple[str, str]]]:
    """The page's body and its headers (Content-Type, Vary, Content-Encoding when gzipped)."""
    encode, content_type = encoder_for(accept)
    body = encode(families)
    headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
    if gzip_accepted(accept_encoding):
        body = zlib.compress(body, 9, wbits=31)  # a gzip member, as gzip.compress writes one
        headers.append(("Content-Encoding", "gzip"))
    return body, headers
