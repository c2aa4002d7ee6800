"""Listener specs: from the settings alone or from a YAML/JSON file; member address syntax."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecars.ambassador import termination, tls
from sidecars.ambassador.config import Config
from sidecars.runtime.documents import parse_document, read_bounded
from sidecars.runtime.settings import specs

# Settings a config file may set per listener: everything from `listen` on.
_NAMES = [name for name, _ in specs(Config)]
LISTENER_KEYS = _NAMES[_NAMES.index("listen") :]
_SPECS = dict(specs(Config))
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_SRV_RE = re.compile(r"_[A-Za-z0-9-]{1,62}\._[A-Za-z0-9-]{1,62}(\.[A-Za-z0-9_-]{1,63}){1,40}\.?")
_ADDR_RE = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})(?:\*(\d{1,4}))?")
# Bounds on what a config or member file may ask of the parser and of the process.
MAX_LISTENERS = 256
MAX_MEMBERS = 4096  # per member file
MAX_PROBLEMS = 20  # reported at once; the rest are counted


@dataclass(frozen=True, slots=True)
class Address:
    """One member as configured: host (name or IP), port and weight."""

    host: str
    port: int
    weight: int = 1

    @property
    def key(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where members come from: `static` addresses, a `dns` name, an `srv` name (SRV records)
    or a watched `file`."""

    kind: str
    address: Address | None = None
    path: str = ""
    name: str = ""  # srv


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One listener: its name, its settings and its member sources."""

    name: str
    settings: Config
    sources: tuple[Source, ...]


def parse_address(raw: str) -> Address:
    """`host:port` or `host:port*weight` (weight 1 to 1000)."""
    m = _ADDR_RE.fullmatch(raw.strip())
    if not m or not 0 < int(m.group(2)) <= 65535:
        raise ValueError(f"{raw!r} is not host:port[*weight]")
    weight = int(m.group(3) or 1)
    if not 1 <= weight <= 1000:
        raise ValueError(f"{raw!r}: weight must be from 1 to 1000")
    return Address(m.group(1).strip("[]"), int(m.group(2)), weight)


def parse_source(raw: str) -> Source:
    raw = raw.strip()
    if raw.startswith("file://"):
        if not raw[7:]:
            raise ValueError(f"{raw!r}: expected file://path")
        return Source("file", path=raw[7:])
    if raw.startswith("dns://"):
        return Source("dns", address=parse_address(raw[6:]))
    if raw.startswith("srv://"):
        if not _SRV_RE.fullmatch(raw[6:]) or len(raw) > 6 + 253:
            raise ValueError(f"{raw!r}: expected srv://_service._proto.name")
        return Source("srv", name=raw[6:].rstrip("."))
    return Source("static", address=parse_address(raw))


def parse_member_file(text: str) -> list[Address]:
    """A watched member file: one host:port[*weight] per line; blanks and # comments ignored."""
    out: list[Address] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                out.append(parse_address(line))
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
    return out


def read_member_file(path: str) -> list[Address]:
    """The members a watched file lists now; ValueError naming what is wrong."""
    try:
        text = read_bounded(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    addresses = parse_member_file(text)
    if not addresses:
        raise ValueError("no members listed")
    if len(addresses) > MAX_MEMBERS:
        raise ValueError(f"{len(addresses)} members listed, at most {MAX_MEMBERS}")
    return addresses


def from_settings(config: Config) -> list[ListenerSpec]:
    """The listeners a start configuration declares; ConfigError-style problems as ValueError."""
    if config.config:
        return load_file(config.config, config)
    if not config.upstreams:
        # Nothing to proxy yet: stay up (the pod's other containers start) but never ready.
        return []
    return [_build("default", config, {}, "AMBASSADOR_")]


def load_file(path: str, base: Config) -> list[ListenerSpec]:
    """Read a listener file; every problem is collected into one ValueError (one per line)."""
    where = f"AMBASSADOR_CONFIG={path!r}"
    try:
        text = read_bounded(path).decode("utf-8")
        doc = parse_document(text, path.endswith(".json"))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    listeners = doc.get("listeners") if isinstance(doc, dict) else None
    if not isinstance(listeners, dict) or not listeners:
        raise ValueError(f"{where}: expected a mapping `listeners:` of name -> settings")
    if len(listeners) > MAX_LISTENERS:
        raise ValueError(f"{where}: {len(listeners)} listeners, at most {MAX_LISTENERS}")
    problems: list[str] = []
    out: list[ListenerSpec] = []
    for name, body in listeners.items():
        try:
            out.append(_build(str(name), base, body, f"{where}: listeners.{name}."))
        except ValueError as exc:
            problems.extend(str(exc).split("\n"))
    addrs = [spec.settings.listen for spec in out]
    for addr in {a for a in addrs if addrs.count(a) > 1}:
        problems.append(f"{where}: two listeners on {addr[0]}:{addr[1]}")
    if problems:
        raise ValueError("\n".join(problems))
    return out


def brief(problems: str) -> list[str]:
    """A multi-line problem report cut to MAX_PROBLEMS lines of at most 300 characters."""
    lines = [line if len(line) <= 300 else line[:297] + "..." for line in problems.split("\n")]
    if len(lines) > MAX_PROBLEMS:
        lines[MAX_PROBLEMS:] = [f"... and {len(lines) - MAX_PROBLEMS} more problems"]
    return lines


def _build(name: str, base: Config, body: Any, where: str) -> ListenerSpec:
    problems: list[str] = []
    if not _NAME_RE.fullmatch(name):
        problems.append(f"{where.rstrip('.')}: name {name!r} must be letters, digits, _ . -")
    if not isinstance(body, Mapping):
        raise ValueError(f"{where.rstrip('.')}: expected a mapping of settings")
    values: dict[str, Any] = {}
    for key, raw in body.items():
        if key not in LISTENER_KEYS:
            problems.append(f"{where}{key}: unknown setting (known: {', '.join(LISTENER_KEYS)})")
            continue
        if isinstance(raw, (dict, list)) and not (
            isinstance(raw, list) and all(isinstance(x, (str, int)) for x in raw)
        ):
            problems.append(f"{where}{key}: expected a value or a list of values")
            continue
        text = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        try:
            values[key] = _SPECS[key].parse(text)
            check = _SPECS[key].check
            why = check(values[key]) if check is not None else None
        except ValueError as exc:
            why = str(exc)
        if why:
            problems.append(f"{where}{key}={text!r}: {why}")
    settings = dataclasses.replace(base, **values)
    if where == "AMBASSADOR_":
        problems.extend(tls.problems(settings, lambda key: f"AMBASSADOR_{key.upper()}"))
        problems.extend(termination.problems(settings, lambda key: f"AMBASSADOR_{key.upper()}"))
    elif not problems:
        problems.extend(tls.problems(settings, lambda key: f"{where}{key}"))
        problems.extend(termination.problems(settings, lambda key: f"{where}{key}"))
    label = f"{where}upstreams" if body else "AMBASSADOR_UPSTREAMS"
    sources: list[Source] = []
    for raw_source in settings.upstreams:
        try:
            sources.append(parse_source(raw_source))
        except ValueError as exc:
            problems.append(f"{label}={raw_source!r}: {exc}")
    if not settings.upstreams:
        problems.append(f"{label}='': expected at least one member")
    for source in sources:
        if source.kind == "file":
            try:
                read_member_file(source.path)
            except ValueError as exc:
                problems.append(f"{label}='file://{source.path}': {exc}")
    if problems:
        raise ValueError("\n".join(problems))
    return ListenerSpec(name, settings, tuple(sources))
