"""Parse one source item: a path, an http(s) URL or an oci:// reference, with optional
`#sha256=..&name=..&extract=..` (`#layer=..` for oci)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from sidecars.warloader.oci import Reference, parse_reference

_HEX64 = re.compile(r"[0-9a-f]{64}")
_ARCHIVE_SUFFIXES = (
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".tar",
    ".war",
    ".zip",
    ".jar",
    ".ear",
)
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True, slots=True)
class Source:
    """One thing to install. `location` is a path or a URL without credentials or fragment
    (an oci:// source is a URL source with `oci` set); `problem` is set (and the rest is
    best-effort) when the item is malformed."""

    location: str
    is_url: bool
    sha256: str | None = None
    name: str = ""
    extract: bool | None = None
    userinfo: tuple[str, str] | None = None
    problem: str | None = None
    name_given: bool = False
    oci: Reference | None = None

    def __str__(self) -> str:
        return display(self.location) if self.is_url else self.location

    def extracting(self, default: bool) -> bool:
        """Whether to unpack: `#extract=` if given, else `default` for archive names only."""
        if self.extract is not None:
            return self.extract
        return default and strip_archive_suffix(self.name) != self.name

    def target_name(self, extract: bool) -> str:
        """The entry this source becomes in the destination directory."""
        if self.name_given or not extract:
            return self.name
        return strip_archive_suffix(self.name)


def strip_archive_suffix(name: str) -> str:
    """`sample.war` -> `sample`, `app.tar.gz` -> `app`; other names unchanged."""
    lower = name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def display(url: str) -> str:
    """A URL safe to log: no user info, query values hidden (pre-signed URLs carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def check_name(name: str) -> str | None:
    """Why `name` cannot be an entry of the destination directory, or None."""
    if not name or name in (".", ".."):
        return "is empty"
    if "/" in name or "\0" in name:
        return "must not contain '/'"
    if name.startswith("."):
        return "must not start with '.' (reserved for warloader's temporary files)"
    return None


def parse(raw: str) -> Source:
    """Parse one item; never raises: a malformed item comes back with `problem` set."""
    body, _, fragment = raw.partition("#")
    problems: list[str] = []
    if body[:6].lower() == "oci://":
        return _oci(body[6:], fragment, problems)
    opts, sha, extract = _options(fragment, problems)
    is_url = bool(re.match(r"(?i)https?://", body))
    location, derived, userinfo = _location(body, is_url, problems)
    name = opts.get("name", derived)
    why = check_name(name)
    if why:
        hint = "" if "name" in opts else " (add #name=<file name>)"
        problems.append(f"destination name {name!r} {why}{hint}")
    return Source(
        location=location,
        is_url=is_url,
        sha256=sha,
        name=name,
        extract=extract,
        userinfo=userinfo,
        problem="; ".join(problems) or None,
        name_given="name" in opts,
    )


def _oci(body: str, fragment: str, problems: list[str]) -> Source:
    """An `oci://registry/repository:tag` (or `@sha256:<hex>`) source: a URL source whose
    manifest is resolved at load time; named after `#layer=` when that is a file name, else
    after the repository's last component."""
    opts, _, extract = _options(fragment, problems, ("name", "extract", "layer"))
    ref, why = parse_reference(body)
    if ref is None:
        problems.append(why or "malformed reference")
        return Source(f"oci://{body}", True, problem="; ".join(problems), oci=None)
    layer = opts.get("layer") or None
    ref = replace(ref, layer=layer)
    name = ref.repository.rsplit("/", 1)[-1]
    if layer and check_name(layer) is None:  # a title such as sample.war, not a media type
        name = layer
    name = opts.get("name", name)
    if why := check_name(name):
        problems.append(f"destination name {name!r} {why}")
    return Source(
        location=ref.location(),
        is_url=True,
        name=name,
        extract=extract,
        problem="; ".join(problems) or None,
        name_given="name" in opts,
        oci=ref,
    )


def _options(
    fragment: str, problems: list[str], known: tuple[str, ...] = ("sha256", "name", "extract")
) -> tuple[dict[str, str], str | None, bool | None]:
    opts: dict[str, str] = {}
    for key, value in parse_qsl(fragment, keep_blank_values=True):
        if key not in known:
            problems.append(f"unknown option {key!r} (expected {', '.join(known)})")
        opts[key] = value
    sha = opts.get("sha256")
    if sha is not None:
        sha = sha.lower()
        if not _HEX64.fullmatch(sha):
            problems.append("sha256 must be 64 hex digits")
    extract = None
    if "extract" in opts:
        extract = _BOOLS.get(opts["extract"].lower())
        if extract is None:
            problems.append("extract must be true or false")
    return opts, sha, extract


def _location(
    body: str, is_url: bool, problems: list[str]
) -> tuple[str, str, tuple[str, str] | None]:
    """(location without credentials, the name it suggests, user info)."""
    if not is_url:
        if not body.startswith("/"):
            problems.append("expected an absolute path or an http(s) URL")
        return body, posixpath.basename(posixpath.normpath(body)) if body else "", None
    try:
        parts = urlsplit(body)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        problems.append("expected an http(s) URL with a valid host and port")
        return "http://invalid/", "", None
    if not parts.hostname:
        problems.append("expected an http(s) URL with a host")
    userinfo = None
    if parts.username is not None:
        userinfo = (unquote(parts.username), unquote(parts.password or ""))
    netloc = parts.netloc.rpartition("@")[2]
    location = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))
    return location, unquote(posixpath.basename(parts.path)), userinfo
