"""TLS peers for the ambassador's tests, with certificates made by the tests (trustme): a Python
TLS echo server (for fault shapes and client certificates), nginx and redis-server with TLS."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from tests.helpers import free_port


def write_leaf(cert: trustme.LeafCert, directory: Path, stem: str) -> tuple[str, str]:
    """The certificate chain and the key of `cert` as PEM files; returns their paths."""
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    return str(crt), str(key)


def expired(ca: trustme.CA, *names: str) -> trustme.LeafCert:
    now = datetime.datetime.now(datetime.UTC)
    return ca.issue_cert(
        *names,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )


@dataclass
class EchoServer:
    """An asyncio TLS server on 127.0.0.1 echoing what it reads (after `banner`); with
    `client_ca` it requires a client certificate from that CA and records each one's common
    name."""

    cert: trustme.LeafCert
    client_ca: trustme.CA | None = None
    banner: bytes = b""  # sent first, as servers that speak first (SMTP, IMAP) do
    port: int = 0  # 0: a free one; a server started again on its old port forgets its sessions
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
    server: asyncio.Server | None = None
    clients: list[str] = field(default_factory=list)
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> EchoServer:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        if self.client_ca is not None:
            self.client_ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.maximum_version = self.max_version
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        names = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
        self.clients.append(names[0] if names else "")
        self.open.add(writer)
        try:
            writer.write(self.banner)
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.open.discard(writer)
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.open):
                writer.close()
            await self.server.wait_closed()


class Nginx:
    """Debian's nginx serving HTTPS on a free loopback port, answering `nginx-tls` to every GET
    (with `client_ca`, only to clients with a certificate from that CA)."""

    def __init__(self, directory: Path, crt: str, key: str, client_ca: str = "") -> None:
        self.port = free_port()
        self.dir = directory
        verify = f"ssl_client_certificate {client_ca}; ssl_verify_client on;" if client_ca else ""
        conf = directory / "nginx.conf"
        conf.write_text(
            f"""daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {directory};
    proxy_temp_path {directory};
    fastcgi_temp_path {directory};
    uwsgi_temp_path {directory};
    scgi_temp_path {directory};
    server {{
        listen 127.0.0.1:{self.port} ssl;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_session_cache shared:tls:1m;
        {verify}
        location / {{ return 200 "nginx-tls\\n"; }}
    }}
}}
"""
        )
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        await _port_open(self.port, self.proc, "nginx")

    def stop(self) -> None:
        _stop(self.proc)


class TlsRedis:
    """Debian's redis-server with only a TLS port on loopback (no client certificate asked)."""

    def __init__(self, crt: str, key: str, ca: str) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                crt,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                ca,
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        await _port_open(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        _stop(self.proc)


async def _port_open(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if proc.poll() is not None or loop.time() > deadline:
                raise AssertionError(f"{what} did not start") from None
            await asyncio.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
