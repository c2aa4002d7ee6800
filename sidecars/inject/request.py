"""Which sidecars a workload gets, and with what: its annotations, then the flags (which win).

Keys are `<sidecar>` (enable: true or false) and `<sidecar>-<setting>` with the setting's name
in dashes (`logshipper-es-hosts` is LOGSHIPPER_ES_HOSTS), `<sidecar>-<setting>-from-secret`
(`SECRET/KEY`: the value from a Secret), or one of inject's own options (such as
`logshipper-logs-volume`); as annotations they carry the `sidecars.example.com/` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecars.inject.catalog import ANNOTATION_PREFIX, INJECTED, SIDECARS, Sidecar
from sidecars.inject.errors import InjectError
from sidecars.runtime.settings import boolean

FROM_SECRET = "-from-secret"  # `logshipper-es-password-from-secret: es-credentials/password`


@dataclass
class Request:
    sidecar: Sidecar
    settings: dict[str, str] = field(default_factory=dict)  # setting name -> value
    options: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # setting -> (Secret, key)


@dataclass(frozen=True)
class Flags:
    add: tuple[str, ...] = ()
    sets: tuple[tuple[str, str], ...] = ()  # (key, value), key without the prefix


def _text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)):  # never str() a list: it may be an alias bomb
        raise InjectError(f"annotation {key!r}: expected a string, not a {type(value).__name__}")
    return str(value)


def _split(key: str, origin: str) -> tuple[Sidecar, str | None]:
    """`logshipper` -> (logshipper, None); `logshipper-es-hosts` -> (logshipper, 'es-hosts')."""
    name, dash, rest = key.partition("-")
    sidecar = SIDECARS.get(name)
    if sidecar is None:
        known = ", ".join(SIDECARS)
        raise InjectError(f"{origin} {key!r}: no sidecar {name!r} (expected one of {known})")
    if not dash:
        return sidecar, None
    setting = rest.removesuffix(FROM_SECRET).replace("-", "_")
    if rest in sidecar.options or setting in sidecar.settings:
        return sidecar, rest
    raise InjectError(f"{origin} {key!r}: {sidecar.name} has no setting or option {rest!r}")


def _entries(annotations: Mapping[str, Any], flags: Flags) -> list[tuple[str, str, str]]:
    """(key, value, origin) from the annotations, then from the flags."""
    out: list[tuple[str, str, str]] = []
    for key, value in annotations.items():
        if isinstance(key, str) and key.startswith(ANNOTATION_PREFIX) and key != INJECTED:
            out.append((key[len(ANNOTATION_PREFIX) :], _text(key, value), "annotation"))
    out.extend((key, value, "--set") for key, value in flags.sets)
    return out


def requested(annotations: Mapping[str, Any], flags: Flags) -> list[Request]:
    """The sidecars to add, in the order they run (an empty list: leave the workload alone)."""
    enabled = {name: True for name in flags.add}
    values: dict[str, dict[str, str]] = {name: {} for name in SIDECARS}
    for key, value, origin in _entries(annotations, flags):
        sidecar, rest = _split(key, origin)
        if rest is None:
            try:
                on = boolean(value)
            except ValueError:
                raise InjectError(f"{origin} {key!r}: {value!r} is not true or false") from None
            # an annotation's "false" opts the workload out even of a sidecar --add names
            enabled[sidecar.name] = on and enabled.get(sidecar.name, True)
        else:
            values[sidecar.name][rest] = value
    out = []
    for name, sidecar in SIDECARS.items():
        if not enabled.get(name):
            continue
        request = Request(sidecar)
        for rest, value in values[name].items():
            if rest in sidecar.options:
                request.options[rest] = value
            elif rest.endswith(FROM_SECRET):
                setting = rest.removesuffix(FROM_SECRET)
                secret, slash, secret_key = value.partition("/")
                if not (secret and slash and secret_key) or "/" in secret_key:
                    raise InjectError(f"{name}-{rest} {value!r}: expected SECRET/KEY")
                if setting in values[name]:
                    raise InjectError(f"{name}-{setting} and {name}-{rest}: set one of them")
                request.secrets[setting.replace("-", "_")] = (secret, secret_key)
            else:
                request.settings[rest.replace("-", "_")] = value
        out.append(request)
    return out


def parse_add(names: Sequence[str]) -> tuple[str, ...]:
    """`--add logshipper,adapter --add warloader` -> the names, each checked."""
    out: list[str] = []
    for item in names:
        for name in (n.strip() for n in item.split(",")):
            if name not in SIDECARS:
                known = ", ".join(SIDECARS)
                raise InjectError(f"--add {name!r}: no such sidecar (expected one of {known})")
            out.append(name)
    return tuple(out)


def parse_set(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InjectError(f"--set {item!r}: expected KEY=VALUE, e.g. logshipper-index=logs")
        _split(key, "--set")
        out.append((key, value))
    return tuple(out)
