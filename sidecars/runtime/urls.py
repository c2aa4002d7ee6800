"""http(s) URLs from settings, checked strictly: what a request line and a Host header are
built from must not carry a space, a control character or anything else that would change
the request's framing (RFC 3986 characters only). Not urllib.parse: it imports ipaddress
(0.5 MiB together), strips tabs and line breaks silently and accepts spaces."""

from __future__ import annotations

import socket

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_HOST = _UNRESERVED  # a reg-name: no percent-encoding in a host we resolve
_PATH = _UNRESERVED + "!$&'()*+,;=:@/"  # pchar and "/" (RFC 3986), "%" checked apart
_QUERY = _PATH + "?"
_HEX = "0123456789ABCDEFabcdef"
_TCHAR = _UNRESERVED + "!#$%&'*+^`|"  # a header name's characters (RFC 9110 token)


def _made_of(text: str, allowed: str, percent: bool = False) -> bool:
    """Whether `text` holds only `allowed` characters (and, with `percent`, %XX escapes).
    str.strip, not a regular expression: the module stays small in every sidecar."""
    if not percent:
        return not text.strip(allowed)
    first, *escaped = text.split("%")
    return not first.strip(allowed) and all(
        len(part) >= 2 and not part[:2].strip(_HEX) and not part[2:].strip(allowed)
        for part in escaped
    )


class HttpUrl:
    """The parts of a checked URL."""

    __slots__ = ("scheme", "host", "port", "path", "query", "userinfo")

    def __init__(
        self, scheme: str, host: str, port: int, path: str, query: str, userinfo: bool
    ) -> None:
        self.scheme = scheme  # "http" or "https"
        self.host = host  # lower case; an IPv6 address without its brackets
        self.port = port  # the scheme's default when the URL has none
        self.path = path  # "" or starting with "/"
        self.query = query  # without its "?"
        self.userinfo = userinfo  # whether `user:password@` was given

    @property
    def authority(self) -> str:
        """The Host header's value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def target(self) -> str:
        """The request target: the path ("/" when empty) and the query."""
        return (self.path or "/") + (f"?{self.query}" if self.query else "")


def parse_http_url(raw: str) -> HttpUrl:
    """An absolute http:// or https:// URL; ValueError naming what is wrong. A fragment is
    refused (it is never sent), as is a port outside 1-65535."""
    value = raw.strip()
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    if "#" in rest:
        raise ValueError("expected no #fragment in the URL")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    path = slash + path
    userinfo, at, authority = authority.rpartition("@")
    if authority.startswith("["):
        host, bracket, port_text = authority[1:].partition("]")
        if not bracket or port_text[:1] not in ("", ":") or not _ipv6(host):
            raise ValueError("expected an IPv6 address in [brackets] as the URL's host")
        port_text = port_text[1:]
    else:
        host, colon, port_text = authority.partition(":")
        if not host or not _made_of(host, _HOST):
            raise ValueError(f"expected a host name or address in the URL, got {host[:100]!r}")
        if colon and not port_text:
            raise ValueError("expected a port number after ':' in the URL")
    if not port_text:
        port = 443 if scheme == "https" else 80
    elif port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536:
        port = int(port_text)
    else:
        got = port_text[:20]
        raise ValueError(f"expected a port number from 1 to 65535 in the URL, got {got!r}")
    if not _made_of(path, _PATH, percent=True):
        raise ValueError(
            "expected the URL's path to hold only URL characters (spaces and control "
            "characters percent-encoded)"
        )
    if not _made_of(query, _QUERY, percent=True):
        raise ValueError(
            "expected the URL's query to hold only URL characters (spaces and control "
            "characters percent-encoded)"
        )
    return HttpUrl(scheme, host.lower(), port, path, query, bool(at))


def is_path(text: str) -> bool:
    """Whether `text` is an absolute path of URL characters only (no query)."""
    return text.startswith("/") and _made_of(text, _PATH, percent=True)


def is_target(text: str) -> bool:
    """Whether `text` is an origin-form request target: an absolute path, maybe a query."""
    path, _, query = text.partition("?")
    return is_path(path) and _made_of(query, _QUERY, percent=True)


def is_host(text: str) -> bool:
    """Whether `text` is a DNS name or an IP address (IPv6 without brackets)."""
    return (0 < len(text) <= 253 and _made_of(text, _HOST)) or _ipv6(text)


def is_header_name(text: str) -> bool:
    return bool(text) and _made_of(text, _TCHAR)


def _ipv6(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True
