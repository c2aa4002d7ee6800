"""An elastic_transport node over asyncio streams: HTTP/1.1 keep-alive, TLS, gzip, no aiohttp."""

from __future__ import annotations

import asyncio
import gzip
import os
import ssl
import sys
import time
import zlib
from typing import Any, ClassVar

from sidecars.runtime.http.client import Client, ClientError, ConnectError

# elastic_transport imports aiohttp and requests (when installed) for node classes we do not
# use: ~10 MiB of RSS and ~100 ms of start time for aiohttp, ~40 ms of CPU for requests.
# Hide them during that import only, so that the library's optional-dependency checks simply
# find them missing; anything importing them later gets them.
_hide = [name for name in ("aiohttp", "requests") if name not in sys.modules]
for _name in _hide:
    sys.modules[_name] = None  # type: ignore[assignment]
try:
    from elastic_transport import (
        ApiResponseMeta,
        AsyncTransport,
        BaseAsyncNode,
        ConnectionError,
        ConnectionTimeout,
        HttpHeaders,
        NodeConfig,
        SerializationError,
        Serializer,
        TlsError,
        TransportError,
    )
    from elastic_transport._node._base import (
        DEFAULT_CA_CERTS,
        NodeApiResponse,
        ssl_context_from_node_config,
    )
    from elastic_transport.client_utils import DEFAULT, DefaultType
finally:
    for _name in _hide:
        del sys.modules[_name]

__all__ = [
    "AsyncTransport",
    "ConnectionError",
    "ConnectionTimeout",
    "HttpHeaders",
    "NodeConfig",
    "PassThrough",
    "SerializationError",
    "StreamNode",
    "TlsError",
    "TransportError",
]

_MAX_BODY = 64 << 20  # an answer larger than this is not a bulk answer to a bounded request


class PassThrough(Serializer):
    """Bodies stay bytes both ways: requests are serialized already (NDJSON built by the
    shipper), and answers are parsed only when, and as far as, they need to be."""

    mimetype: ClassVar[str] = "application/json"

    def loads(self, data: bytes) -> Any:
        return data

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        raise SerializationError(f"expected a serialized body, not {type(data).__name__}")


def _ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The TLS context the library's own nodes would build from the same node config."""
    if config.scheme != "https":
        return None
    ctx = ssl_context_from_node_config(config)
    if config.ssl_context is not None:
        return ctx
    ca_certs = DEFAULT_CA_CERTS if config.ca_certs is None else config.ca_certs
    if config.verify_certs and not ca_certs:
        raise ValueError("no CA certificates to verify the server with")
    if ca_certs is not None and config.verify_certs:
        if os.path.isdir(ca_certs):
            ctx.load_verify_locations(capath=ca_certs)
        else:
            ctx.load_verify_locations(cafile=ca_certs)
    if config.client_cert:
        ctx.load_cert_chain(config.client_cert, config.client_key)
    return ctx


class StreamNode(BaseAsyncNode):
    """One Elasticsearch node: a small pool of keep-alive HTTP/1.1 connections of the runtime's
    HTTP client. The transport above it (node pool, failover, dead-node backoff) comes from
    elastic_transport; errors are mapped to the library's ConnectionError / ConnectionTimeout
    / TlsError like its nodes do."""

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self._limit = asyncio.Semaphore(max(1, config.connections_per_node))
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        self._host_header = host if self.port == default else f"{host}:{self.port}"
        self._client = Client(
            self.host,
            self.port,
            ssl_context=_ssl_context(config),
            server_hostname=self.host,
            keep=max(1, config.connections_per_node),
            authority=self._host_header,
        )

    async def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        timeout = self.config.request_timeout if request_timeout is DEFAULT else request_timeout
        head = self._headers.copy()
        if headers:
            head.update(headers)
        if body and self._http_compress:
            body = gzip.compress(body, compresslevel=1)
            head["content-encoding"] = "gzip"
        request = self._request(method, target, head, body or b"")
        start = time.monotonic()
        try:
            async with self._limit, asyncio.timeout(timeout):
                # a pooled connection the node had closed is given up and the request sent
                # again: the node never read it
                answer = await self._client.request(method.encode(), request)
                data = await answer.read(_MAX_BODY)
            rh = HttpHeaders(answer.headers)
            if (rh.get("content-encoding") or "").lower() == "gzip":
                data = _gunzip(data)
        except TimeoutError as exc:
            raise ConnectionTimeout("connection timed out during request", errors=(exc,)) from None
        except ConnectError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError | ssl.CertificateError):
                raise TlsError(str(cause), errors=(cause,)) from None
            raise ConnectionError(str(exc), errors=(exc,)) from None
        except (ClientError, ValueError, zlib.error) as exc:
            text = str(exc) or type(exc).__name__
            raise ConnectionError(text, errors=(exc,)) from None
        meta = ApiResponseMeta(
            node=self.config,
            duration=time.monotonic() - start,
            http_version="1.1",
            status=answer.status,
            headers=rh,
        )
        return NodeApiResponse(meta, data)

    def _request(
        self, method: str, target: str, head: HttpHeaders, body: bytes
    ) -> tuple[bytes, bytes]:
        """The request's head and its body, written one after the other: a bulk body of a
        MiB is not copied once more behind its head."""
        lines = [f"{method} {self.path_prefix}{target} HTTP/1.1", f"host: {self._host_header}"]
        lines += [f"{k}: {v}" for k, v in head.items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body

    async def close(self) -> None:  # type: ignore[override]
        await self._client.close()


def _gunzip(data: bytes) -> bytes:
    """A gzip body, inflated to at most _MAX_BODY bytes (a small answer can expand enormously)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, _MAX_BODY + 1)
    if len(out) > _MAX_BODY or inflater.unconsumed_tail:
        raise ValueError("answer larger than 64 MiB once inflated")
    if not inflater.eof:
        raise ValueError("truncated gzip answer")
    return out
