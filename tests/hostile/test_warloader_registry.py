"""Hostile OCI registries: endless or oversized manifests, lying sizes and digests, an index,
absurd layers, token endpoints on the metadata service or another scheme, unusable tokens,
a blob redirected to link-local, a dripping manifest. Each ends with exit 3 (or 4) and one
clear line, in bounded time, and installs nothing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sidecars.warloader.errors import EXIT_DIGEST, EXIT_SOURCE
from tests.hostile.test_warloader_servers import load, loopback_only, one_error
from tests.warloader_support import artifact_server, run_loader, war_bytes

pytestmark = pytest.mark.integration
__all__ = ["loopback_only"]  # its autouse fixture: nothing connects off this machine

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WAR = war_bytes()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(layers: list[dict[str, Any]] | None = None, **extra: Any) -> bytes:
    if layers is None:
        layers = [
            {"mediaType": "application/vnd.example.war", "digest": digest(WAR), "size": len(WAR)}
        ]
    config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(b"{}"), "size": 2}
    doc = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers}
    return json.dumps({**doc, **extra}).encode()


def serve(body: bytes, content_type: str = MANIFEST, **headers: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type, **headers})

    return handler


class FakeRegistry:
    """A registry API on 127.0.0.1 whose manifest, blob and token answers each test sets;
    `paths` records what was asked."""

    def __init__(self) -> None:
        self.manifest: Handler = serve(manifest())
        self.blob: Handler = serve(WAR, "application/octet-stream")
        self.token: Handler = serve(b'{"token": "t"}', "application/json")
        self.paths: list[str] = []
        self.address = ""

    async def _route(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if "/manifests/" in request.path:
            return await self.manifest(request)
        if "/blobs/" in request.path:
            return await self.blob(request)
        if request.path == "/token":
            return await self.token(request)
        return web.Response(status=404)


@contextlib.asynccontextmanager
async def fake_registry() -> AsyncIterator[FakeRegistry]:
    reg = FakeRegistry()
    app = web.Application()
    app.router.add_get("/{tail:.*}", reg._route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reg.address = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield reg
    finally:
        await runner.cleanup()


async def pull(reg: FakeRegistry, dest: Path, ref: str = "apps/sample:1", **extra: str) -> str:
    """Load the artifact; one error line and its exit code, nothing installed (load checks)."""
    run = await load(f"oci://{reg.address}/{ref}#name=sample.war", dest, **extra)
    line = one_error(run)
    return f"{run.code} {line}"


async def test_an_endless_manifest_stops_at_the_limit(tmp_path: Path) -> None:
    """A chunked manifest that never ends is read to WARLOADER_MAX_MANIFEST_SIZE, no further."""

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": MANIFEST})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):
                await resp.write(b" " * 65536)
        return resp

    async with fake_registry() as reg:
        reg.manifest = endless
        said = await pull(reg, tmp_path / "d", WARLOADER_MAX_MANIFEST_SIZE="64KiB")
    assert said.startswith(f"{EXIT_SOURCE} ") and "manifest exceeds the limit of 65536" in said


async def test_an_announced_huge_manifest_is_refused_unread(tmp_path: Path) -> None:
    """A Content-Length over the limit is refused before the body is read."""
    async with fake_registry() as reg:
        reg.manifest = serve(b"{" + b" " * (5 << 20) + b"}")
        said = await pull(reg, tmp_path / "d")
    assert "manifest of 5242882 bytes is more than the limit of 4194304" in said
    assert not any("/blobs/" in p for p in reg.paths)


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "the manifest is not JSON"),
        (b"not json", "the manifest is not JSON"),
        (b'"a string"', "the manifest is not a JSON object"),
        (manifest(layers=[]), "the manifest has no layers"),
        (manifest(schemaVersion=1), "unsupported manifest type"),
        (manifest(manifests=[]), "is an image index"),
        (manifest([{"digest": "sha512:" + "a" * 128, "size": 1}]), "is not sha256:<64 hex"),
        (manifest([{"digest": "sha256:../../etc", "size": 1}]), "is not sha256:<64 hex"),
        (manifest([{"digest": digest(WAR), "size": -1}]), "has no valid size"),
        (manifest([{"digest": digest(WAR), "size": True}]), "has no valid size"),
        (manifest([{"digest": digest(WAR), "size": 1 << 62}]), "WARLOADER_MAX_DOWNLOAD_SIZE"),
        (manifest(["x"]), "a layer of the manifest is not an object"),
    ],
    ids=[
        "deeply-nested",
        "not-json",
        "not-an-object",
        "no-layers",
        "schema-1",
        "index",
        "sha512",
        "path-in-digest",
        "negative-size",
        "bool-size",
        "huge-size",
        "layer-not-object",
    ],
)
async def test_a_malformed_manifest_is_one_line(tmp_path: Path, body: bytes, expect: str) -> None:
    """Whatever the manifest holds, it ends with exit 3 and one line; no blob is fetched."""
    async with fake_registry() as reg:
        reg.manifest = serve(body)
        said = await pull(reg, tmp_path / "d")
    assert said.startswith(f"{EXIT_SOURCE} ") and expect in said, said
    assert not any("/blobs/" in p for p in reg.paths)


async def test_a_lying_content_digest_header_is_a_mismatch(tmp_path: Path) -> None:
    """By tag, a manifest whose bytes do not match the registry's own Docker-Content-Digest
    is refused (exit 4)."""
    async with fake_registry() as reg:
        reg.manifest = serve(manifest(), **{"Docker-Content-Digest": digest(b"other")})
        said = await pull(reg, tmp_path / "d")
    assert said.startswith(f"{EXIT_DIGEST} ") and "the registry says sha256:" in said


async def test_a_blob_longer_than_its_declared_size_is_refused(tmp_path: Path) -> None:
    """The layer declares fewer bytes than the blob served: never read past the declared size
    (exit 3); a blob of the declared size but other bytes: exit 4."""
    async with fake_registry() as reg:
        reg.blob = serve(WAR + b"tail" * 1000, "application/octet-stream")
        said = await pull(reg, tmp_path / "d")
        assert said.startswith(f"{EXIT_SOURCE} ") and f"more than the limit of {len(WAR)}" in said
        reg.blob = serve(bytes(len(WAR)), "application/octet-stream")
        said = await pull(reg, tmp_path / "e")
    assert said.startswith(f"{EXIT_DIGEST} ") and "nothing installed" in said


@pytest.mark.parametrize(
    ("challenge", "expect"),
    [
        ('Bearer realm="http://169.254.169.254/token",service="r"', "a link-local address"),
        ('Bearer realm="file:///etc/passwd"', "refused: expected an https URL"),
        ('Bearer service="r"', "unsupported challenge"),
        ("Negotiate abc", "unsupported challenge"),
        ("", "unsupported challenge (none)"),
        ("Basic realm=x", "asks for credentials"),
    ],
    ids=["metadata-realm", "file-realm", "no-realm", "negotiate", "none", "basic-no-file"],
)
async def test_a_hostile_challenge_is_refused(tmp_path: Path, challenge: str, expect: str) -> None:
    """A 401 naming the metadata service or a file as its token endpoint, or no usable
    scheme: refused before any connection there, exit 3, one line."""

    async def unauthorized(_: web.Request) -> web.StreamResponse:
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    async with fake_registry() as reg:
        reg.manifest = unauthorized
        said = await pull(reg, tmp_path / "d")
    assert said.startswith(f"{EXIT_SOURCE} ") and expect in said, said


@pytest.mark.parametrize(
    "answer",
    [
        b'{"token": "a\\r\\nX-Injected: 1"}',
        b'{"token": ""}',
        b"[1]",
        b'{"token": "' + b"t" * 9000 + b'"}',
    ],
    ids=["header-injection", "empty", "not-an-object", "too-long"],
)
async def test_an_unusable_token_is_refused(tmp_path: Path, answer: bytes) -> None:
    """The token endpoint answers something that is no token: exit 3, one line, no pull."""
    calls = 0

    async def challenged(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        realm = f"http://{request.host}/token"
        return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    async with fake_registry() as reg:
        reg.manifest = challenged
        reg.token = serve(answer, "application/json")
        said = await pull(reg, tmp_path / "d")
    assert said.startswith(f"{EXIT_SOURCE} ") and "holds no usable token" in said
    assert calls == 1


async def test_a_blob_redirected_to_the_metadata_service_is_refused(tmp_path: Path) -> None:
    """Registries redirect blobs to storage; one redirecting to 169.254.169.254 is refused
    before any connection (exit 3)."""

    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("http://169.254.169.254/latest/meta-data/")

    async with fake_registry() as reg:
        reg.blob = redirect
        said = await pull(reg, tmp_path / "d")
    assert said.startswith(f"{EXIT_SOURCE} ") and "link-local address: refused" in said


async def test_a_dripping_manifest_is_called_off_in_bounded_time(tmp_path: Path) -> None:
    """A manifest sent a byte every 100 ms never trips the idle timeout; each try is bounded
    by the min-rate window, so the load ends with exit 3 within the tries' windows."""

    async def drip(request: web.Request) -> web.StreamResponse:
        body = manifest()
        resp = web.StreamResponse(headers={"Content-Type": MANIFEST})
        resp.content_length = len(body)
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for i in range(len(body)):
                await resp.write(body[i : i + 1])
                await asyncio.sleep(0.1)
        return resp

    async with fake_registry() as reg:
        reg.manifest = drip
        started = time.monotonic()
        said = await pull(reg, tmp_path / "d", WARLOADER_DOWNLOAD_MIN_RATE_WINDOW="500ms")
    assert time.monotonic() - started < 10
    assert said.startswith(f"{EXIT_SOURCE} ") and "no manifest within 0.5s after 2 attempts" in said


async def test_a_manifest_not_matching_its_pinned_digest_is_refused(tmp_path: Path) -> None:
    """Pinned by @sha256, a manifest of other bytes (and no Docker-Content-Digest to give it
    away) is refused (exit 4) before any blob is fetched."""
    async with fake_registry() as reg:
        said = await pull(reg, tmp_path / "d", ref=f"apps/sample@{digest(b'the pinned one')}")
    assert said.startswith(f"{EXIT_DIGEST} ") and "the manifest's digest is sha256:" in said
    assert not any("/blobs/" in p for p in reg.paths)


async def test_a_blob_redirected_to_storage_gets_no_registry_token(tmp_path: Path) -> None:
    """Registries redirect blob fetches to their storage: the redirect is followed, but the
    registry's token is not sent to the storage (another origin), which sees no
    Authorization; the blob is still checked against its digest."""

    async def challenged(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") == "Bearer registry-token":
            return await serve(manifest())(request)
        realm = f"http://{request.host}/token"
        return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    async with fake_registry() as reg, artifact_server() as storage:
        url = storage.put("/bucket/blob", WAR)
        reg.manifest = challenged
        reg.token = serve(b'{"token": "registry-token"}', "application/json")

        async def redirect(request: web.Request) -> web.StreamResponse:
            assert request.headers.get("Authorization") == "Bearer registry-token"
            raise web.HTTPTemporaryRedirect(url)

        reg.blob = redirect
        dest = tmp_path / "d"
        source = f"oci://{reg.address}/apps/sample:1#name=sample.war"
        run = await run_loader({"WARLOADER_SOURCES": source, "WARLOADER_DEST": str(dest)})
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == WAR
    assert [r["path"] for r in storage.requests] == ["/bucket/blob"]
    assert "Authorization" not in storage.requests[0]
