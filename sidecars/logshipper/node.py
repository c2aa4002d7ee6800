"""One Elasticsearch node over the runtime's HTTP client: HTTP/1.1 keep-alive, TLS, gzip."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecars.runtime.http.client import Client, ClientError, ConnectError

_MAX_BODY = 64 << 20  # an answer larger than this is not a bulk answer to a bounded request


class TransportError(Exception):
    """No usable answer from a node: no connection, a dropped one, a malformed answer."""


class NodeDown(TransportError):
    """The node could not be reached (refused, unreachable, TLS) or did not answer in time."""


class ConnectionTimeout(NodeDown):
    """No whole answer within the request timeout."""


class TlsError(NodeDown):
    """The TLS handshake or the server's certificate failed."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class NodeConfig:
    scheme: str
    host: str
    port: int
    path_prefix: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    request_timeout: float = 10.0
    http_compress: bool = False  # gzip request bodies
    connections: int = 1  # requests at once (and idle connections kept)
    ssl_context: ssl.SSLContext | None = None  # https only


def tls_context(
    host: str, *, verify: bool, ca_file: str = "", client_cert: str = "", client_key: str = ""
) -> ssl.SSLContext:
    """TLS 1.2 or later; the server verified against `ca_file` (a file or a directory) and
    the system's CA bundle, its name checked unless `host` is an IP address. OSError or
    ValueError when a file is unusable."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.check_hostname = not _is_ip(host)
        if ca_file and os.path.isdir(ca_file):
            ctx.load_verify_locations(capath=ca_file)
        elif ca_file:
            ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key or None)
    return ctx


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


class Node:
    """One Elasticsearch node: up to `connections` requests at once over keep-alive HTTP/1.1
    connections of the runtime's client. Every failure to get a whole, well-formed answer
    raises TransportError (ConnectionTimeout, TlsError)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._limit = asyncio.Semaphore(max(1, config.connections))
        host = f"[{config.host}]" if ":" in config.host else config.host
        default = 443 if config.scheme == "https" else 80
        self._host_header = host if config.port == default else f"{host}:{config.port}"
        self.url = f"{config.scheme}://{self._host_header}{config.path_prefix}"
        self._headers = {k.lower(): v for k, v in config.headers.items()}
        self._client = Client(
            config.host,
            config.port,
            ssl_context=config.ssl_context if config.scheme == "https" else None,
            server_hostname=config.host,
            keep=max(1, config.connections),
            authority=self._host_header,
        )

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        head = self._headers.copy()
        if headers:
            head.update({k.lower(): v for k, v in headers.items()})
        if body and self.config.http_compress:
            body = zlib.compress(body, 1, wbits=31)  # gzip framing
            head["content-encoding"] = "gzip"
        wire = self._request(method, target, head, body or b"")
        try:
            async with self._limit, asyncio.timeout(self.config.request_timeout):
                # a pooled connection the node had closed is given up and the request sent
                # again: the node never read it
                answer = await self._client.request(method.encode(), wire)
                data = await answer.read(_MAX_BODY)
            if answer.headers.get("content-encoding", "").lower() == "gzip":
                data = _gunzip(data)
        except TimeoutError:
            raise ConnectionTimeout(
                f"{self.url}: no answer within {self.config.request_timeout:g}s"
            ) from None
        except ConnectError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError | ssl.CertificateError):
                raise TlsError(str(exc)) from None
            raise NodeDown(str(exc)) from None
        except (ClientError, ValueError, zlib.error) as exc:
            raise TransportError(f"{self.url}: {exc or type(exc).__name__}") from None
        return Response(answer.status, answer.headers, data)

    def _request(
        self, method: str, target: str, head: dict[str, str], body: bytes
    ) -> tuple[bytes, bytes]:
        """The request's head and its body, written one after the other: a bulk body of a
        MiB is not copied once more behind its head."""
        lines = [
            f"{method} {self.config.path_prefix}{target} HTTP/1.1",
            f"host: {self._host_header}",
        ]
        lines += [f"{k}: {v}" for k, v in head.items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body

    async def close(self) -> None:
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
