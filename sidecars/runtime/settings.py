"""Declare settings once; read them from flags and `<SIDECAR>_*` variables, validated."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import argparse

T = TypeVar("T")
C = TypeVar("C")

EXIT_CONFIG = 2


class ConfigError(Exception):
    """One or more settings are invalid; each message names the setting, the value and the rule."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Spec:
    """What a setting means: its raw default, how to parse it, and whether to hide its value."""

    default: str
    help: str
    parse: Callable[[str], Any]
    secret: bool = False
    metavar: str = "VALUE"
    check: Callable[[Any], str | None] | None = None


def setting(
    default: str,
    help: str,
    parse: Callable[[str], Any] = str,
    *,
    secret: bool = False,
    metavar: str = "VALUE",
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field whose default is given in the same text form a user would type.
    `check` (see checks.py) runs at start against this machine: what can never work there."""
    spec = Spec(default, help, parse, secret, metavar, check)
    return field(default=parse(default), metadata={"setting": spec})


# --- parsers: each returns the typed value or raises ValueError("expected ...") --------------


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value

    return parse


# Numbers are ASCII digits of bounded length (no other scripts' digits, no `_`): a value
# too large is refused with the rule it breaks, never turned into a huge int or inf.
_DIGITS = 15
MAX_SIZE = 1 << 60  # 1 EiB: far above any real limit, far below any overflow


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    whole = re.compile(rf"\s*([-+]?[0-9]{{1,{_DIGITS}}})\s*")

    def parse(raw: str) -> int:
        m = whole.fullmatch(raw)
        if not m:
            if re.fullmatch(r"\s*[-+]?[0-9]+\s*", raw):
                raise ValueError(f"expected a whole number of at most {_DIGITS} digits")
            raise ValueError("expected a whole number")
        value = int(m.group(1))
        _check_range(value, lo, hi)
        return value

    return parse


def size(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """Bytes, with optional binary suffix: 512, 64KiB, 10MiB, 1GiB (KB/MB/GB mean the same)."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    pattern = re.compile(rf"\s*([0-9]{{1,{_DIGITS}}})\s*([kmg]?)(?:i?b)?\s*")
    top = MAX_SIZE if hi is None else min(hi, MAX_SIZE)

    def parse(raw: str) -> int:
        m = pattern.fullmatch(raw.lower())
        if not m:
            raise ValueError("expected a size such as 512, 64KiB, 10MiB or 1GiB")
        value = int(m.group(1)) * units[m.group(2)]
        _check_range(value, lo, top)
        return value

    return parse


def duration(lo: float = 0.0, hi: float | None = None) -> Callable[[str], float]:
    """Seconds as a float: 5, 2.5s, 250ms, 3m, 1h."""
    units = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
    pattern = re.compile(rf"\s*([0-9]{{1,{_DIGITS}}}(?:\.[0-9]{{1,9}})?)\s*(ms|s|m|h)?\s*")

    def parse(raw: str) -> float:
        m = pattern.fullmatch(raw.lower())
        if not m:
            raise ValueError("expected a duration such as 5s, 250ms or 2m")
        value = float(m.group(1)) * units[m.group(2) or ""]
        _check_range(value, lo, hi)
        return value

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def host_port(default_host: str = "127.0.0.1") -> Callable[[str], tuple[str, int]]:
    """`host:port`, `:port` (default host) or `[v6]:port`."""

    def parse(raw: str) -> tuple[str, int]:
        m = re.fullmatch(r"\s*(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]*):([0-9]{1,5})\s*", raw)
        if not m or int(m.group(2)) > 65535:
            raise ValueError("expected host:port with a port from 0 to 65535")
        host = m.group(1).strip("[]") or default_host
        return host, int(m.group(2))

    return parse


def listing(item: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """A comma-separated list; each item parsed by `item`, blanks ignored."""

    def parse(raw: str) -> tuple[T, ...]:
        return tuple(item(part.strip()) for part in raw.split(",") if part.strip())

    return parse


def _check_range(value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise ValueError(f"expected at least {lo:g}")
    if hi is not None and value > hi:
        raise ValueError(f"expected at most {hi:g}")


# --- loading ----------------------------------------------------------------------------------


def specs(cls: type[Any]) -> list[tuple[str, Spec]]:
    """The settings of a config dataclass, in declaration order."""
    return [
        (f.name, f.metadata["setting"]) for f in dataclasses.fields(cls) if "setting" in f.metadata
    ]


def env_name(prefix: str, name: str) -> str:
    return f"{prefix}_{name.upper()}"


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(
    cls: type[Any], prog: str, prefix: str, summary: str, defaults: Mapping[str, str]
) -> argparse.ArgumentParser:
    """The flags (argparse is imported for a command line only)."""
    import argparse

    from sidecars.runtime.flags import OneLineParser

    parser = OneLineParser(
        prog=prog,
        description=summary
        + "\n\nEvery setting is a flag and an environment variable; the flag wins.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, spec in specs(cls):
        default = defaults.get(name, spec.default)
        shown = "(hidden)" if spec.secret and default else repr(default)
        # A boolean flag may stand alone (`--watch`) or take a value (`--watch false`).
        bare = {"nargs": "?", "const": "true"} if spec.parse is boolean else {}
        parser.add_argument(
            flag_name(name),
            dest=name,
            metavar=spec.metavar,
            default=None,
            **bare,  # type: ignore[arg-type]
            # argparse expands %-formats in help; date patterns such as %Y must stay literal
            help=f"{spec.help} [env {env_name(prefix, name)}, default {shown}]".replace("%", "%%"),
        )
    return parser


def load(
    cls: type[C],
    prefix: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    defaults: Mapping[str, str] | None = None,
) -> C:
    """Build `cls` from flags (winning) and env; every bad value is reported, then ConfigError."""
    defaults = defaults or {}
    flags: dict[str, Any] = {}
    if argv:  # the images take their settings from the environment
        flags = vars(build_parser(cls, prefix.lower(), prefix, "", defaults).parse_args(list(argv)))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, spec in specs(cls):
        var = env_name(prefix, name)
        if flags.get(name) is not None:
            raw, source = flags[name], f"{flag_name(name)} ({var})"
        elif var in env:
            raw, source = env[var], var
        elif name in defaults:
            raw, source = defaults[name], var
        else:
            continue
        try:
            values[name] = spec.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if spec.secret else repr(raw)
            problems.append(hide_userinfo(f"{source}={shown}: {exc}"))
    if problems:
        raise ConfigError(problems)
    return cls(**values)


def verify(config: Any, prefix: str) -> list[str]:
    """The start-time checks of every setting that has one: one problem per failing setting."""
    problems = []
    for name, spec in specs(type(config)):
        value = getattr(config, name)
        why = spec.check(value) if spec.check is not None else None
        if why is not None:
            shown = "(hidden)" if spec.secret else repr(_text(value))
            problems.append(f"{env_name(prefix, name)}={shown}: {why}")
    return problems


def _text(value: Any) -> str:
    """A parsed value as typed: ("::1", 80) -> "[::1]:80"."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        host = f"[{value[0]}]" if ":" in str(value[0]) else str(value[0])
        return f"{host}:{value[1]}"
    return str(value)


def unknown_variables(cls: type[Any], prefix: str, env: Mapping[str, str]) -> list[str]:
    """Variables that carry our prefix but name no setting: most likely typos."""
    known = {env_name(prefix, name) for name, _ in specs(cls)}
    return sorted(k for k in env if k.startswith(prefix + "_") and k not in known)


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@")


def hide_userinfo(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://(hidden)@host` wherever a URL appears."""
    return _USERINFO.sub(r"\1(hidden)@", text)


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return hide_userinfo(value)
    if isinstance(value, tuple | list):
        return [_shown(item) for item in value]
    return value


def redacted(config: Any) -> dict[str, Any]:
    """The effective settings for the startup log line, with secrets and URL credentials hidden."""
    out: dict[str, Any] = {}
    for name, spec in specs(type(config)):
        value = getattr(config, name)
        out[name] = "(hidden)" if spec.secret and value else _shown(value)
    return out
