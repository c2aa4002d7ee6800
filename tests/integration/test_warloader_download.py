"""warloader against a real HTTP server on loopback: resume, retries, faults, auth, TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest
import trustme

from sidecars.warloader.errors import EXIT_CONFIG, EXIT_DIGEST, EXIT_SOURCE
from tests.helpers import run_sidecar
from tests.warloader_support import artifact_server, leftovers, run_loader, sha256, war_bytes

pytestmark = pytest.mark.integration

BIG = war_bytes({"big.bin": os.urandom(3 << 20)})
SMALL = war_bytes()


def env_for(url: str, dest: Path, **extra: str) -> dict[str, str]:
    return {"WARLOADER_SOURCES": url, "WARLOADER_DEST": str(dest), **extra}


async def test_download_then_conditional_get_is_a_no_op(tmp_path: Path) -> None:
    war = war_bytes()
    async with artifact_server() as srv:
        url = srv.put("/apps/sample.war", war)
        first = await run_loader(env_for(url, tmp_path))
        assert first.code == 0, first.errors()
        assert (tmp_path / "sample.war").read_bytes() == war
        before = os.stat(tmp_path / "sample.war")
        second = await run_loader(env_for(url, tmp_path))
        assert second.code == 0
        assert second.outcomes() == ["unchanged"]
        assert srv.statuses == [200, 304]
        assert srv.requests[1]["If-None-Match"] == srv.files["/apps/sample.war"].etag
        after = os.stat(tmp_path / "sample.war")
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        srv.put("/apps/sample.war", war_bytes({"index.jsp": "v2"}))
        third = await run_loader(env_for(url, tmp_path))
        assert third.outcomes() == ["installed"]


async def test_pinned_digest_needs_no_request_the_second_time(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", BIG) + f"#sha256={sha256(BIG)}"
        assert (await run_loader(env_for(url, tmp_path))).code == 0
        assert (await run_loader(env_for(url, tmp_path))).outcomes() == ["unchanged"]
        assert len(srv.requests) == 1


async def test_digest_mismatch_from_a_url_installs_nothing(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", BIG) + f"#sha256={'ab' * 32}"
        run = await run_loader(env_for(url, tmp_path))
    assert run.code == EXIT_DIGEST
    assert not (tmp_path / "sample.war").exists() and leftovers(tmp_path) == []


async def test_dropped_connection_resumes_with_range(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.drop_after, srv.faults.drop_times = 1 << 20, 2
        srv.faults.trickle = 0.005  # aiohttp discards bytes still buffered when a drop is seen
        url = srv.put("/sample.war", BIG) + f"#sha256={sha256(BIG)}"
        run = await run_loader(env_for(url, tmp_path))
        assert run.code == 0, run.errors()
        assert (tmp_path / "sample.war").read_bytes() == BIG
        starts = [r.get("Range") for r in srv.requests]
        assert srv.statuses == [200, 206, 206], (starts, len(BIG))
        assert starts[0] is None and starts[1].startswith("bytes=") and starts[1] != "bytes=0-"
        assert srv.requests[1]["If-Range"] == srv.files["/sample.war"].etag
        assert any("retrying" in m for m in run.logs.messages())


async def test_without_range_support_a_retry_starts_over(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.ranges = False
        srv.faults.drop_after, srv.faults.drop_times = 1 << 20, 1
        url = srv.put("/sample.war", BIG) + f"#sha256={sha256(BIG)}"
        run = await run_loader(env_for(url, tmp_path))
        assert run.code == 0, run.errors()
        assert srv.statuses == [200, 200]
        assert (tmp_path / "sample.war").read_bytes() == BIG


async def test_changed_file_while_resuming_is_not_spliced(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.drop_after, srv.faults.drop_times = 1 << 20, 1
        url = srv.put("/sample.war", BIG)
        new = war_bytes({"new.bin": os.urandom(2 << 20)})
        # a new version appears between the drop and the retry: If-Range makes it a full 200
        orig = srv._answer

        async def swap_then_answer(request):  # type: ignore[no-untyped-def]
            if len(srv.requests) == 2:
                srv.put("/sample.war", new)
            return await orig(request)

        srv._answer = swap_then_answer  # type: ignore[method-assign]
        run = await run_loader(env_for(url, tmp_path))
        assert run.code == 0, run.errors()
        assert srv.statuses == [200, 200]
        assert (tmp_path / "sample.war").read_bytes() == new


async def test_404_fails_at_once_with_exit_3(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        run = await run_loader(env_for(f"{srv.url}/missing.war", tmp_path))
        assert run.code == EXIT_SOURCE
        assert len(srv.requests) == 1
        assert run.errors() == [
            f"missing.war: source unavailable: cannot download {srv.url}/missing.war: "
            "HTTP 404 Not Found"
        ]


async def test_500_is_retried_with_backoff_then_gives_up(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.status, srv.faults.status_times = 500, -1
        url = srv.put("/sample.war", SMALL)
        run = await run_loader(env_for(url, tmp_path, WARLOADER_MAX_ATTEMPTS="3"))
        assert run.code == EXIT_SOURCE
        assert len(srv.requests) == 3
        assert run.errors()[0].endswith("HTTP 500 Internal Server Error after 3 attempts")
        assert leftovers(tmp_path) == []


async def test_transient_500_then_success(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.status, srv.faults.status_times = 503, 2
        url = srv.put("/sample.war", SMALL)
        run = await run_loader(env_for(url, tmp_path))
        assert run.code == 0
        assert srv.statuses == [503, 503, 200]


async def test_slow_server_times_out_then_recovers_or_gives_up(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", SMALL)
        srv.faults.delay, srv.faults.delay_times = 1.0, 1
        ok = await run_loader(env_for(url, tmp_path, WARLOADER_TIMEOUT="200ms"))
        assert ok.code == 0, ok.errors()
        assert any("timed out" in m for m in ok.logs.messages())
        srv.faults.delay_times = -1
        url2 = srv.put("/other.war", SMALL)
        bad = await run_loader(
            env_for(url2, tmp_path, WARLOADER_TIMEOUT="100ms", WARLOADER_MAX_ATTEMPTS="2")
        )
        assert bad.code == EXIT_SOURCE
        assert bad.errors()[0].endswith("timed out after 2 attempts")


async def test_size_limit(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", BIG)
        run = await run_loader(env_for(url, tmp_path, WARLOADER_MAX_DOWNLOAD_SIZE="1MiB"))
        assert run.code == EXIT_SOURCE
        assert "more than the limit of 1048576" in run.errors()[0]
        assert len(srv.requests) == 1 and leftovers(tmp_path) == []


async def test_redirects_are_followed(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.put("/v2/sample.war", SMALL)
        srv.redirects["/latest/sample.war"] = "/v2/sample.war"
        run = await run_loader(env_for(f"{srv.url}/latest/sample.war", tmp_path))
        assert run.code == 0
        assert (tmp_path / "sample.war").read_bytes() == SMALL


async def test_credentials_are_not_sent_to_another_origin_on_redirect(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    async with artifact_server() as origin, artifact_server() as elsewhere:
        target = elsewhere.put("/sample.war", SMALL)
        origin.redirects["/sample.war"] = target  # another port: another origin
        env = env_for(f"{origin.url}/sample.war", tmp_path, WARLOADER_BEARER_TOKEN_FILE=str(token))
        run = await run_loader(env)
        assert run.code == 0, run.errors()
        assert origin.requests[0]["Authorization"] == "Bearer s3cret-token"
        assert "Authorization" not in elsewhere.requests[0]
        assert (tmp_path / "sample.war").read_bytes() == SMALL


async def test_bearer_and_basic_auth_and_secrets_stay_out_of_logs(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    dest = tmp_path / "dest"
    async with artifact_server() as srv:
        url = srv.put("/sample.war", SMALL)
        srv.faults.token = "Bearer s3cret-token"
        denied = await run_loader(env_for(url, dest))
        assert denied.code == EXIT_SOURCE and "HTTP 401" in denied.errors()[0]
        ok = await run_loader(env_for(url, dest, WARLOADER_BEARER_TOKEN_FILE=str(token)))
        assert ok.code == 0, ok.errors()
        srv.faults.token = "Basic dXNlcjpwQHNz"  # user:p@ss
        basic_url = url.replace("http://", "http://user:p%40ss@").replace(
            "sample.war", "sample.war#name=other.war"
        )
        ok2 = await run_loader(env_for(basic_url, dest))
        assert ok2.code == 0, ok2.errors()
        for record in ok.logs.records + ok2.logs.records:
            text = record.getMessage() + str(vars(record))
            assert "s3cret" not in text and "p@ss" not in text and "p%40ss" not in text


async def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    dest = tmp_path / "dest"
    async with artifact_server(server_ctx) as srv:
        url = srv.put("/sample.war", SMALL)
        untrusted = await run_loader(env_for(url, dest))
        assert untrusted.code == EXIT_SOURCE
        assert "TLS certificate not trusted" in untrusted.errors()[0]
        trusted = await run_loader(env_for(url, dest, WARLOADER_CA_FILE=str(ca_file)))
        assert trusted.code == 0, trusted.errors()
        assert (dest / "sample.war").read_bytes() == SMALL
        (dest / ".sample.war.warloader.json").unlink()  # forget it: download again
        unverified = await run_loader(env_for(url, dest, WARLOADER_TLS_VERIFY="false"))
        assert unverified.code == 0, unverified.errors()
        assert any("verification is off" in m for m in unverified.logs.messages())


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "garbage"])
async def test_an_unusable_ca_file_is_a_configuration_error(
    tmp_path: Path, content: str | None
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    env = {
        "WARLOADER_SOURCES": "https://127.0.0.1:1/sample.war",
        "WARLOADER_DEST": str(tmp_path / "dest"),
        "WARLOADER_CA_FILE": str(ca_file),
        "WARLOADER_ADMIN_ADDR": "127.0.0.1:0",
    }
    done = await asyncio.to_thread(run_sidecar, "warloader", (), env)
    assert done.returncode == EXIT_CONFIG
    [line] = [x for x in done.stderr.splitlines() if not x.startswith("{")]
    assert line.startswith(f"warloader: bad setting WARLOADER_CA_FILE={str(ca_file)!r}: ")
    missing = "expected a readable file (No such file or directory)"  # checked before loading
    assert line.endswith(("expected a PEM CA bundle", missing)) and "Traceback" not in done.stderr


async def test_sources_load_concurrently_and_the_limit_holds(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.delay, srv.faults.delay_times = 0.05, -1
        urls = ",".join(srv.put(f"/a{i}.war", war_bytes({"i": str(i)})) for i in range(1, 5))
        run = await run_loader(env_for(urls, tmp_path / "one", WARLOADER_CONCURRENCY="1"))
        assert run.code == 0 and srv.max_inflight == 1
        # the server holds each request until four are in flight: only concurrent loads get there
        srv.faults.gather = 4
        run = await run_loader(env_for(urls, tmp_path / "four", WARLOADER_CONCURRENCY="4"))
        assert run.code == 0 and srv.max_inflight == 4
        assert sorted(p.name for p in (tmp_path / "four").glob("a*.war")) == [
            f"a{i}.war" for i in range(1, 5)
        ]


async def test_progress_is_logged_for_long_loads(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        srv.faults.trickle = 0.03
        url = srv.put("/sample.bin", os.urandom(1 << 20))
        run = await run_loader(env_for(url, tmp_path, WARLOADER_PROGRESS_INTERVAL="100ms"))
        assert run.code == 0
        lines = [r for r in run.logs.records if r.getMessage().startswith("loading ")]
        assert lines, run.logs.messages()
        # lines may come before the response headers (total unknown); later ones carry it all
        assert any(r.__dict__["total"] == 1 << 20 and r.__dict__["rate"] > 0 for r in lines)


async def test_sigterm_during_an_init_load_stops_cleanly_without_partial_files(
    tmp_path: Path,
) -> None:
    async with artifact_server() as srv:
        srv.faults.trickle = 0.02
        url = srv.put("/sample.war", BIG)
        stopping = asyncio.Event()

        part = tmp_path / ".sample.war.warloader-partial"

        def started() -> bool:
            return part.exists() and part.stat().st_size > 0

        async def stop_when_started() -> None:
            deadline = asyncio.get_running_loop().time() + 30
            while not started():
                assert asyncio.get_running_loop().time() < deadline, "download never started"
                await asyncio.sleep(0.01)
            stopping.set()

        stopper = asyncio.create_task(stop_when_started())
        run = await run_loader(env_for(url, tmp_path), stopping)
        await stopper
        assert run.code == 1
        assert run.errors() == [
            "stopped before every source was installed; nothing partial is left"
        ]
        assert not (tmp_path / "sample.war").exists()
        # only the partial download and its record stay, for the next run to resume
        assert leftovers(tmp_path) == [part.name, part.name + ".json"]
