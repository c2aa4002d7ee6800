"""A metrics page in the format and encoding the scraper asks for, negotiated by
prometheus_client as its own handler does: OpenMetrics for `Accept: application/openmetrics-text`,
the Prometheus text format otherwise, gzip for `Accept-Encoding: gzip`."""

from __future__ import annotations

import gzip
from collections.abc import Callable

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

Encoder = Callable[[Collector], bytes]


def encoder_for(accept: str) -> tuple[Encoder, str]:
    """The encoder and Content-Type for an Accept header."""
    try:
        return choose_encoder(accept)
    except (TypeError, ValueError):  # a version it cannot compare (`version=x`): the default
        return choose_encoder("")


def render(
    registry: Collector, accept: str, accept_encoding: str
) -> tuple[bytes, list[tuple[str, str]]]:
    """The page's body and its headers (Content-Type, Vary, Content-Encoding when gzipped)."""
    encode, content_type = encoder_for(accept)
    body = encode(registry)
    headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    return body, headers
