"""The runtime's URL parser: what a request is built from (host, port, Host header, target)."""

from __future__ import annotations

import pytest

from sidecars.runtime.urls import is_path, parse_http_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "host", "port", "authority", "target"),
    [
        ("http://es:9200", "es", 9200, "es:9200", "/"),
        ("https://ES.example/prefix/", "es.example", 443, "es.example", "/prefix/"),
        ("http://127.0.0.1:80/m?a=1&b=%2F", "127.0.0.1", 80, "127.0.0.1", "/m?a=1&b=%2F"),
        ("  http://[::1]:8080/x%20y  ", "::1", 8080, "[::1]:8080", "/x%20y"),
        ("HTTPS://[fe80::1]/", "fe80::1", 443, "[fe80::1]", "/"),
    ],
)
def test_accepted_urls_give_what_the_request_is_built_from(
    url: str, host: str, port: int, authority: str, target: str
) -> None:
    parts = parse_http_url(url)
    assert (parts.host, parts.port, parts.authority, parts.target) == (
        host, port, authority, target
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/",
        "http:/h",
        "http://",
        "http://:80/",
        "http://h:65536/",
        "http://h:80x/",
        "http://h/%4",
        "http://h/%g0",
        "http://h/é",
        "http://h/?a b",
        "http://h/\ta",
        "http://[::1/",
        "http://[::1]x/",
    ],
)
def test_refused_urls_say_why(url: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_http_url(url)


def test_paths() -> None:
    assert is_path("/") and is_path("/a/b%41;v=1")
    assert not is_path("a") and not is_path("/a?b") and not is_path("/a\x7f")
