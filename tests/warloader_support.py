"""Test support for warloader: an artifact server with fault switches, archive builders,
in-process loader runs and a small tmpfs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from support.warloader import (  # noqa: F401 - the tests import them from here too
    Captured,
    Run,
    build,
    run_loader,
    war_bytes,
)
from tests.helpers import ROOT

# --- an artifact server with fault switches --------------------------------------------------


@dataclass
class Artifact:
    body: bytes
    etag: str | None = '"v1"'
    last_modified: str = field(default_factory=lambda: formatdate(usegmt=True))


@dataclass
class Faults:
    """Switches; the counters say how many of the next requests get the fault."""

    status: int = 0  # answer this status ...
    status_times: int = 0  # ... to this many requests (-1: all)
    drop_after: int = 0  # close the connection after this many body bytes ...
    drop_times: int = 0  # ... in this many responses
    delay: float = 0.0  # wait before answering ...
    delay_times: int = 0  # ... this many requests (-1: all)
    trickle: float = 0.0  # pause between 64 KiB pieces of the body
    drip: float = 0.0  # send the body one byte at a time, this long apart
    stall_after: int = 0  # send this many body bytes, then nothing until the client leaves ...
    stall_times: int = 0  # ... in this many responses
    chunked: bool = False  # no Content-Length: a chunked body
    ranges: bool = True  # honour Range requests
    token: str | None = None  # require this Authorization header value
    gather: int = 0  # hold each request until this many are in flight (10 s at most)


class ArtifactServer:
    """A real aiohttp server on 127.0.0.1 that serves artifacts with ETag, Last-Modified,
    conditional GETs, Range and If-Range, redirects, and switchable faults."""

    def __init__(self) -> None:
        self.files: dict[str, Artifact] = {}
        self.redirects: dict[str, str] = {}
        self.faults = Faults()
        self.requests: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self._streamed: dict[int, bool] = {}  # id(request): its status is counted already
        self.inflight = 0
        self.max_inflight = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._gathered = asyncio.Event()

    def put(self, path: str, body: bytes, etag: str | None = None) -> str:
        tag = etag if etag is not None else f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        self.files[path] = Artifact(body, tag or None)
        return f"{self.url}{path}"

    async def start(self, ssl_context: Any = None) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def get_paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    @staticmethod
    def _take(n: int) -> tuple[bool, int]:
        if n == -1:
            return True, -1
        return (n > 0), max(n - 1, 0)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"path": request.path, **dict(request.headers)})
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        if self.faults.gather:
            if self.inflight >= self.faults.gather:
                self._gathered.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._gathered.wait()
        try:
            resp = await self._answer(request)
        finally:
            self.inflight -= 1
            streamed = self._streamed.pop(id(request), False)
        if not streamed:
            self.statuses.append(resp.status)
        return resp

    @staticmethod
    async def _until_gone(request: web.Request) -> None:
        """Send nothing more until the client closes the connection (10 s at most)."""
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if request.transport is None or request.transport.is_closing():
                return
            await asyncio.sleep(0.01)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        f = self.faults
        hit, f.delay_times = self._take(f.delay_times)
        if hit and f.delay:
            await asyncio.sleep(f.delay)
        if f.token is not None and request.headers.get("Authorization") != f.token:
            return web.Response(status=401, text="unauthorized")
        hit, f.status_times = self._take(f.status_times)
        if hit and f.status:
            return web.Response(status=f.status, text="fault")
        if request.path in self.redirects:
            raise web.HTTPFound(self.redirects[request.path])
        art = self.files.get(request.path)
        if art is None:
            return web.Response(status=404, text="not found")
        headers = {"Last-Modified": art.last_modified, "Accept-Ranges": "bytes"}
        if art.etag:
            headers["ETag"] = art.etag
        if art.etag and request.headers.get("If-None-Match") == art.etag:
            return web.Response(status=304, headers=headers)
        start = 0
        rng = request.headers.get("Range", "")
        if_range = request.headers.get("If-Range")
        fresh = if_range in (None, art.etag, art.last_modified)
        if f.ranges and rng.startswith("bytes=") and fresh:
            start = int(rng[6:].split("-")[0])
        body = art.body[start:]
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(art.body) - 1}/{len(art.body)}"
        resp = web.StreamResponse(status=status, headers=headers)
        if f.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        await resp.prepare(request)
        # a streamed answer counts once its head is sent: the client may have read all of it
        # (and the test looked) before this handler returns
        self.statuses.append(status)
        self._streamed[id(request)] = True
        drop, f.drop_times = self._take(f.drop_times)
        stall, f.stall_times = self._take(f.stall_times)
        limit = f.drop_after if drop else len(body)
        sent = 0
        while sent < min(limit, len(body)):
            if stall and sent >= f.stall_after:
                await self._until_gone(request)
                return resp
            step = 1 if f.drip else 65536
            end = min(sent + step, limit, f.stall_after if stall else limit)
            piece = body[sent:end]
            await resp.write(piece)
            sent += len(piece)
            if f.trickle or f.drip:
                await asyncio.sleep(f.trickle or f.drip)
        if drop:
            assert request.transport is not None
            request.transport.close()  # the client sees the body end early
            return resp
        await resp.write_eof()
        return resp


@contextlib.asynccontextmanager
async def artifact_server(ssl_context: Any = None) -> AsyncIterator[ArtifactServer]:
    server = ArtifactServer()
    await server.start(ssl_context)
    try:
        yield server
    finally:
        await server.stop()


# --- archives ---------------------------------------------------------------------------------


def zip_with(entries: list[tuple[str, bytes, int]]) -> bytes:
    """A zip whose entries are (name, data, unix mode incl. type bits, 0 for a plain file)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def tar_with(members: list[tarfile.TarInfo | tuple[str, bytes]], gz: bool = True) -> bytes:
    """A tar(.gz) of plain files (name, data) and hand-made TarInfo members (links, devices)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def tar_link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def zip_bomb(unpacked: int = 64 << 20) -> bytes:
    """One entry of `unpacked` zero bytes: compresses about 1000:1."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("WEB-INF/lib/zeros.bin", "w", force_zip64=True) as out:
            chunk = bytes(1 << 20)
            for _ in range(unpacked >> 20):
                out.write(chunk)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(dest: Path) -> list[str]:
    """Temporary entries a load must never leave behind."""
    return sorted(p.name for p in dest.iterdir() if ".warloader-" in p.name)


# --- a small tmpfs (needs root and mount permission) -----------------------------------------


@contextlib.contextmanager
def tmpfs(size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of `size` for the test; skip when mounting is not permitted here."""
    where = Path(tempfile.mkdtemp(prefix="warloader-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
        where.rmdir()


def remount_readonly(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


# --- the real process, with its peak memory ---------------------------------------------------


@dataclass
class Measured:
    code: int
    stderr: str
    max_rss_mib: float
    seconds: float

    def errors(self) -> list[str]:
        """The `msg` of each error line."""
        lines = [json.loads(x) for x in self.stderr.splitlines() if x.startswith("{")]
        return [x["msg"] for x in lines if x.get("level") == "error"]


def run_measured(env: Mapping[str, str], timeout: float = 60.0) -> Measured:
    """Run `python -m sidecars.warloader` to completion under /usr/bin/time: its exit code,
    stderr, peak RSS (of the loader alone: a child forked from this test process would count
    our pages until its exec) and wall time. Killed (and failing) after `timeout`."""
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("needs /usr/bin/time (Debian package time) to measure the peak RSS")
    full = {k: v for k, v in os.environ.items() if not k.startswith("WARLOADER_")}
    full.update({"WARLOADER_ADMIN_ADDR": "127.0.0.1:0", **env})
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as peak:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", peak.name, sys.executable, "-m"]
        started = time.monotonic()
        proc = subprocess.Popen([*cmd, "sidecars.warloader"], env=full, cwd=ROOT, stderr=err)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"warloader did not exit within {timeout}s")
        seconds = time.monotonic() - started
        err.seek(0)
        text = err.read().decode(errors="replace")
        kib = int(peak.read().split()[-1])
    return Measured(code, text, kib / 1024, seconds)
