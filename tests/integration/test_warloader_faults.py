"""warloader under faults: a full or read-only destination, kill -9 mid-install, and the real
`python -m sidecars.warloader` process in init and --watch modes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecars.warloader.errors import EXIT_CONFIG, EXIT_DEST, EXIT_DIGEST
from tests.helpers import SidecarProcess, free_port, http_get, run_sidecar
from tests.warloader_support import (
    artifact_server,
    leftovers,
    remount_readonly,
    run_loader,
    sha256,
    tmpfs,
    war_bytes,
)

pytestmark = pytest.mark.integration


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll `check` on the loop (servers in this loop keep serving) until true or deadline."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true within {within}s")
        await asyncio.sleep(0.01)


def big_war(tag: str, size: int = 2 << 20) -> bytes:
    return war_bytes({"tag.txt": tag, "WEB-INF/lib/blob.bin": os.urandom(size)})


async def test_full_destination_exits_6_and_keeps_the_old_version(tmp_path: Path) -> None:
    src = tmp_path / "sample.war"
    with tmpfs("1m") as dest:
        src.write_bytes(war_bytes({"tag.txt": "v1"}))
        env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
        assert (await run_loader(env)).code == 0
        src.write_bytes(big_war("v2"))
        run = await run_loader(env)
        assert run.code == EXIT_DEST
        [line] = run.errors()
        assert line.startswith("sample.war: destination not writable: cannot write")
        assert line.endswith("No space left on device")
        with zipfile.ZipFile(dest / "sample.war") as zf:
            assert zf.read("tag.txt") == b"v1"
        assert leftovers(dest) == []
        extracting = await run_loader({**env, "WARLOADER_EXTRACT": "true"})
        assert extracting.code == EXIT_DEST
        assert not (dest / "sample").exists() and leftovers(dest) == []


async def test_full_destination_during_a_download(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", big_war("v2"))
        with tmpfs("1m") as dest:
            run = await run_loader({"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest)})
            assert run.code == EXIT_DEST, run.errors()
            assert "No space left on device" in run.errors()[0]
            assert leftovers(dest) == [] and not (dest / "sample.war").exists()
            assert len(srv.requests) == 1  # a full disk is not retried


async def test_read_only_destination_exits_6(tmp_path: Path) -> None:
    src = tmp_path / "sample.war"
    src.write_bytes(war_bytes({"tag.txt": "v2"}))
    with tmpfs("1m") as dest:
        (dest / "sample.war").write_bytes(b"old")
        remount_readonly(dest)
        run = await run_loader({"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)})
        assert run.code == EXIT_DEST
        assert run.errors()[0].endswith("Read-only file system")
        assert (dest / "sample.war").read_bytes() == b"old"


def spawn(env: dict[str, str], *args: str) -> SidecarProcess:
    return SidecarProcess(
        "warloader", {"WARLOADER_ADMIN_ADDR": f"127.0.0.1:{free_port()}", **env}, args
    )


async def test_kill_9_during_a_download_leaves_the_old_version_and_resumes(
    tmp_path: Path,
) -> None:
    v1, v2 = big_war("v1", 1 << 20), big_war("v2", 3 << 20)
    async with artifact_server() as srv:
        url = srv.put("/sample.war", v1)
        env = {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(tmp_path)}
        assert (await run_loader(env)).code == 0
        srv.put("/sample.war", v2)
        srv.faults.trickle = 0.02
        part = tmp_path / ".sample.war.warloader-partial"
        with spawn({**env, "WARLOADER_SOURCES": f"{url}#sha256={sha256(v2)}"}) as proc:
            await until(lambda: part.exists() and part.stat().st_size > 0, 30, "partial data")
            proc.proc.kill()
            await asyncio.to_thread(proc.proc.wait, 10)
            assert proc.proc.returncode == -signal.SIGKILL
        assert (tmp_path / "sample.war").read_bytes() == v1  # old, whole
        have = part.stat().st_size
        assert 0 < have < len(v2)
        srv.faults.trickle = 0
        again = await run_loader({**env, "WARLOADER_SOURCES": f"{url}#sha256={sha256(v2)}"})
        assert again.code == 0 and again.outcomes() == ["installed"], again.errors()
        assert srv.requests[-1]["Range"] == f"bytes={have}-"  # the restart resumed
        assert srv.statuses[-1] == 206
        assert (tmp_path / "sample.war").read_bytes() == v2
        assert leftovers(tmp_path) == []


async def test_kill_9_during_a_file_copy_leaves_the_old_version(tmp_path: Path) -> None:
    src = tmp_path / "image" / "big.bin"
    src.parent.mkdir()
    src.write_bytes(b"old version")
    dest = tmp_path / "shared"
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest)}
    assert (await run_loader(env)).code == 0
    digest = await asyncio.to_thread(write_big, src, 128)  # copy, hash and fsync take a while
    pinned = {**env, "WARLOADER_SOURCES": f"{src}#sha256={digest}"}
    caught = False
    for _ in range(3):  # each try kills the loader as soon as its temp file has data
        with spawn(pinned) as proc:

            def copying() -> bool:
                temps = list(dest.glob(".big.bin.warloader-tmp-*"))
                return any(t.stat().st_size > 0 for t in temps if t.exists())

            await until(lambda: proc.proc.poll() is not None or copying(), 30, "copy started")
            caught = proc.proc.poll() is None
            proc.proc.kill()
            await asyncio.to_thread(proc.proc.wait, 10)
        if caught:
            break
    assert caught, "the loader finished every time before it could be killed mid-copy"
    assert (dest / "big.bin").read_bytes() == b"old version"  # old, whole
    again = await run_loader(pinned)
    assert again.outcomes() == ["installed"], again.errors()
    assert await asyncio.to_thread(sha256, (dest / "big.bin").read_bytes()) == digest
    assert leftovers(dest) == []


def write_big(path: Path, mib: int) -> str:
    """`mib` MiB of incompressible bytes; returns their sha256."""
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(mib):
            piece = i.to_bytes(4, "big") + block[4:]
            f.write(piece)
            h.update(piece)
    return h.hexdigest()


async def test_kill_9_during_extraction_leaves_old_or_new_tree(tmp_path: Path) -> None:
    def war(tag: str) -> bytes:
        return war_bytes({f"static/f{i:04d}.txt": f"{tag}-{i}" * 50 for i in range(1500)})

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    src = tmp_path / "sample.war"
    dest = tmp_path / "webapps"
    env = {"WARLOADER_SOURCES": str(src), "WARLOADER_DEST": str(dest), "WARLOADER_EXTRACT": "1"}
    src.write_bytes(war("old"))
    assert (await run_loader(env)).code == 0
    old = tree(dest / "sample")
    src.write_bytes(war("new"))
    with spawn(env) as proc:
        await until(
            lambda: proc.proc.poll() is not None or any(dest.glob(".sample.warloader-stage-*")),
            30,
            "staging started",
        )
        proc.proc.kill()
        await asyncio.to_thread(proc.proc.wait, 10)
    now = tree(dest / "sample")
    assert now == old or now == tree_of_new(src), "a mix of old and new is visible"
    assert (await run_loader(env)).code == 0
    assert tree(dest / "sample") == tree_of_new(src) and leftovers(dest) == []


def tree_of_new(src: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(src) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


async def test_subprocess_init_mode_exit_codes(tmp_path: Path) -> None:
    src = tmp_path / "sample.war"
    src.write_bytes(war_bytes())
    dest = tmp_path / "dest"
    env = {"WARLOADER_ADMIN_ADDR": "127.0.0.1:0", "WARLOADER_DEST": str(dest)}
    ok = await asyncio.to_thread(
        run_sidecar,
        "warloader",
        (),
        {**env, "WARLOADER_SOURCES": f"{src}#sha256={sha256(src.read_bytes())}"},
    )
    assert ok.returncode == 0, ok.stderr
    assert (dest / "sample.war").read_bytes() == src.read_bytes()
    bad = await asyncio.to_thread(
        run_sidecar, "warloader", (), {**env, "WARLOADER_SOURCES": f"{src}#sha256={'1' * 64}"}
    )
    assert bad.returncode == EXIT_DIGEST
    errors = [json.loads(x) for x in bad.stderr.splitlines() if '"level": "error"' in x]
    assert [e["error"] for e in errors] == ["digest_mismatch"]
    conf = await asyncio.to_thread(run_sidecar, "warloader", ("--sources", "relative.war"), env)
    assert conf.returncode == EXIT_CONFIG
    assert [x for x in conf.stderr.splitlines() if not x.startswith("{")] == [
        "warloader: bad setting WARLOADER_SOURCES item 1 (relative.war): "
        "expected an absolute path or an http(s) URL"
    ]


async def test_subprocess_watch_mode_follows_changes_and_drains_on_sigterm(
    tmp_path: Path,
) -> None:
    src = tmp_path / "image" / "sample.war"
    src.parent.mkdir()
    src.write_bytes(war_bytes({"tag.txt": "v1"}))
    dest = tmp_path / "webapps"
    async with artifact_server() as srv:
        url = srv.put("/other.war", war_bytes({"tag.txt": "u1"}))
        port = free_port()
        env = {
            "WARLOADER_SOURCES": f"{src},{url}",
            "WARLOADER_DEST": str(dest),
            "WARLOADER_POLL_INTERVAL": "200ms",
            "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{port}",
        }
        with SidecarProcess("warloader", env, ["--watch", "true"]) as proc:
            await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{port}/readyz")
            assert (dest / "sample.war").read_bytes() == src.read_bytes()

            v2 = war_bytes({"tag.txt": "v2"})
            staged = src.with_suffix(".tmp")
            staged.write_bytes(v2)
            staged.rename(src)  # how images and ConfigMaps replace files: atomically
            await until(lambda: (dest / "sample.war").read_bytes() == v2, 20, "v2 installed")

            u2 = war_bytes({"tag.txt": "u2"})
            srv.put("/other.war", u2)
            await until(lambda: (dest / "other.war").read_bytes() == u2, 20, "u2 installed")
            await until(lambda: 304 in srv.statuses, 20, "a conditional poll answered 304")
            installed = b'warloader_artifacts_total{outcome="installed"} 4.0'

            def metrics() -> bytes:
                status, body = http_get(f"http://127.0.0.1:{port}/metrics")
                assert status == 200
                return body

            # counted once the install is done, just after its file is in place
            await until(lambda: installed in metrics(), 10, "four installs counted")

            code = await asyncio.to_thread(proc.terminate, signal.SIGTERM)
            assert code == 0, proc.stderr()
            messages = [line["msg"] for line in proc.log_lines()]
            assert "watching sources for changes" in messages and messages[-1] == "stopped"
