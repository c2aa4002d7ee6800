"""A real OCI registry for the tests: Debian's docker-registry (CNCF distribution) on a free
127.0.0.1 port with its own storage and config (anonymous, htpasswd basic auth, or Bearer
tokens from the small token server below), and a pusher that uploads artifacts the way oras
does (a blob per file, an OCI image manifest with the title annotation)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from yarl import URL

from support.process import free_port, http_get, stop_process, wait_until

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
WAR_TYPE = "application/vnd.example.war"


@contextlib.contextmanager
def local_registry(
    work: Path, auth: str = "", tls: tuple[Path, Path] | None = None
) -> Iterator[str]:
    """Run docker-registry on 127.0.0.1 with storage under `work`, `auth` (a YAML `auth:`
    block, indented by two spaces, or nothing: anonymous) and, with `tls` (certificate, key
    files), https only; yields `127.0.0.1:<port>`."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (scripts/setup installs it)")
    port = free_port()
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'registry-data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + (f"auth:\n{auth}" if auth else "")
    )
    with (work / "registry.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_until(
                lambda: _answering(port, tls is not None),
                timeout=20.0,
                what="docker-registry answering /v2/",
            )
            yield f"127.0.0.1:{port}"
        finally:
            stop_process(proc)


def _answering(port: int, tls: bool) -> bool:
    if not tls:
        return http_get(f"http://127.0.0.1:{port}/v2/", timeout=1.0)[0] in (200, 401)
    with socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True


def tls_files(work: Path) -> tuple[trustme.CA, tuple[Path, Path]]:
    """A test CA and a certificate for 127.0.0.1 it signed: (the CA, (cert file, key file))."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = work / "registry-cert.pem", work / "registry-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca, (cert_file, key_file)


def htpasswd(work: Path, user: str, password: str) -> str:
    """An htpasswd file (bcrypt, as the registry requires) and the `auth:` block using it."""
    line = subprocess.run(
        ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    path = work / "htpasswd"
    path.write_text(line + "\n")
    return f"  htpasswd:\n    realm: test-registry\n    path: {path}\n"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pusher:
    """Pushes blobs and manifests to `registry` with `headers` (auth), over plain http or,
    with a TLS context for the session, https."""

    session: aiohttp.ClientSession
    registry: str
    headers: Mapping[str, str]
    scheme: str = "http"

    async def blob(self, repo: str, data: bytes) -> str:
        """A monolithic upload: POST for a session, PUT the bytes with their digest."""
        digest = sha256_digest(data)
        start = f"{self.scheme}://{self.registry}/v2/{repo}/blobs/uploads/"
        async with self.session.post(start, headers=self.headers) as resp:
            assert resp.status == 202, (resp.status, await resp.text())
            location = resp.headers["Location"]
        url = URL(start).join(URL(location)).update_query(digest=digest)
        headers = {**self.headers, "Content-Type": "application/octet-stream"}
        async with self.session.put(url, data=data, headers=headers) as resp:
            assert resp.status == 201, (resp.status, await resp.text())
        return digest

    async def manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        url = f"{self.scheme}://{self.registry}/v2/{repo}/manifests/{ref}"
        headers = {**self.headers, "Content-Type": media_type}
        async with self.session.put(url, data=body, headers=headers) as resp:
            assert resp.status == 201, (resp.status, await resp.text())
        return sha256_digest(body)

    async def artifact(
        self,
        repo: str,
        tag: str,
        files: Sequence[tuple[str, bytes, str]],
        annotations: Mapping[str, str] | None = None,
    ) -> tuple[str, bytes]:
        """Push (title, data, media type) layers as one artifact tagged `tag`, as
        `oras push` does; (the manifest's digest, the manifest)."""
        config = b"{}"
        layers: list[dict[str, Any]] = []
        for title, data, media in files:
            digest = await self.blob(repo, data)
            layers.append(
                {
                    "mediaType": media,
                    "digest": digest,
                    "size": len(data),
                    "annotations": {"org.opencontainers.image.title": title},
                }
            )
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": WAR_TYPE,
            "config": {
                "mediaType": EMPTY_CONFIG,
                "digest": await self.blob(repo, config),
                "size": len(config),
            },
            "layers": layers,
            "annotations": dict(annotations or {"org.opencontainers.image.created": "now"}),
        }
        body = json.dumps(doc).encode()
        return await self.manifest(repo, tag, body, OCI_MANIFEST), body


@contextlib.asynccontextmanager
async def pusher(
    registry: str, headers: Mapping[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Pusher]:
    connector = aiohttp.TCPConnector(ssl=tls if tls is not None else True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Pusher(session, registry, headers or {}, "https" if tls else "http")


# --- a token server for the registry's Bearer flow -------------------------------------------


class TokenServer:
    """A small token service (the registry cannot issue tokens itself: distribution expects an
    external one). It answers `GET /token?service=..&scope=..` with a JWT the registry trusts
    (ES256, signed by a self-signed certificate given to the registry as its
    rootcertbundle), granting the asked actions to `user`:`password` and only `pull` to
    anonymous callers. `requests` records (scope, user or '') of each call."""

    SERVICE = "test-registry"
    ISSUER = "test-token-server"

    def __init__(self, work: Path, user: str, password: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.user, self.password = user, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.ISSUER)])
        now = time.time()
        import datetime as dt

        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = work / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def auth_block(self) -> str:
        return (
            f"  token:\n    realm: {self.url}/token\n    service: {self.SERVICE}\n"
            f"    issuer: {self.ISSUER}\n    rootcertbundle: {self.bundle}\n"
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def token(self, scope: str, user: str) -> str:
        """A signed JWT granting `scope`'s actions (only pull without a user)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for item in scope.split(" "):
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = actions.split(",") if user else [a for a in actions.split(",") if a == "pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": self.ISSUER,
            "sub": user,
            "aud": self.SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(now) + scope,
            "access": access,
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def _token(self, request: web.Request) -> web.Response:
        user = ""
        given = request.headers.get("Authorization", "")
        if given:
            expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if given != expected:
                return web.Response(status=401, text="bad credentials")
            user = self.user
        scope = request.query.get("scope", "")
        self.requests.append((scope, user))
        if request.query.get("service") != self.SERVICE:
            return web.Response(status=400, text="unknown service")
        return web.json_response({"token": self.token(scope, user)})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.asynccontextmanager
async def token_server(work: Path, user: str, password: str) -> AsyncIterator[TokenServer]:
    server = TokenServer(work, user, password)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
