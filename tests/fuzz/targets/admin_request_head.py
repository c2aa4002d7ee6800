"""The admin/adapter server's request head: a Request or BadRequest (4xx/5xx); a request's
method is a token and its path and Accept hold no CR or LF."""

from __future__ import annotations

from tests.fuzz import http_parsers as http

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    try:
        request = http.parse_admin_head(data)
    except http.ADMIN_ERRORS as exc:
        assert 400 <= getattr(exc, "status", 400) <= 505, exc
        return
    assert request.method.isascii() and request.method.strip() == request.method
    assert "\r" not in request.path and "\n" not in request.path, request.path
    assert "\r" not in request.accept and "\n" not in request.accept, request.accept
