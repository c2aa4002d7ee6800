"""The admin/adapter server's request head: a Request or BadRequest (4xx/5xx); a request's
method is a token and its path and Accept hold no CR or LF."""

from __future__ import annotations

from tests.fuzz import http_parsers as http

from ._common import parsed

MAX_LEN = 4096


def fuzz(data: bytes) -> None:
    request = parsed(http.parse_admin_head, http.ADMIN_ERRORS, data)
    if request is None:
        return
    assert request.method.isascii() and request.method.strip() == request.method
    assert "\r" not in request.path and "\n" not in request.path, request.path
    assert "\r" not in request.accept and "\n" not in request.accept, request.accept
    encoding = request.accept_encoding
    assert "\r" not in encoding and "\n" not in encoding, encoding
