"""warloader against a real OCI registry (Debian's docker-registry on loopback): artifacts the
test pushes as oras does, by tag and by digest, tampering, unknown tags, limits, an index, the
registry's auth flows, and --watch following a moved tag."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecars.warloader.errors import EXIT_DIGEST, EXIT_SOURCE
from tests.integration.test_warloader_faults import until
from tests.registry_support import (
    WAR_TYPE,
    htpasswd,
    local_registry,
    pusher,
    tls_files,
    token_server,
)
from tests.warloader_support import Run, leftovers, run_loader, sha256, war_bytes

pytestmark = pytest.mark.integration

INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """An anonymous registry of this test's own."""
    with local_registry(tmp_path) as address:
        yield address


def env_for(source: str, dest: Path, **extra: str) -> dict[str, str]:
    return {"WARLOADER_SOURCES": source, "WARLOADER_DEST": str(dest), **extra}


def one_error(run: Run) -> str:
    [line] = run.errors()
    assert "\n" not in line and len(line) < 400, line
    return line


def blob_file(tmp_path: Path, digest: str) -> Path:
    """Where the registry's filesystem storage keeps a blob."""
    hexa = digest.removeprefix("sha256:")
    return tmp_path / f"registry-data/docker/registry/v2/blobs/sha256/{hexa[:2]}/{hexa}/data"


async def test_by_tag_then_unchanged_then_a_moved_tag_installs(
    registry: str, tmp_path: Path
) -> None:
    """A WAR pushed as a single-layer artifact installs from its tag; a second run resolves the
    tag again and, the layer's digest being the installed one, downloads nothing; a tag moved
    to new content installs that."""
    dest = tmp_path / "webapps"
    v1, v2 = war_bytes({"v.txt": "1"}), war_bytes({"v.txt": "2"})
    source = f"oci://{registry}/apps/sample:1.0#name=sample.war"
    async with pusher(registry) as push:
        await push.artifact("apps/sample", "1.0", [("sample.war", v1, WAR_TYPE)])
        first = await run_loader(env_for(source, dest))
        assert first.code == 0, first.errors()
        assert (dest / "sample.war").read_bytes() == v1
        second = await run_loader(env_for(source, dest))
        assert second.code == 0 and second.outcomes() == ["unchanged"]
        assert "layer digest already installed" in second.logs.messages()[-2]
        await push.artifact("apps/sample", "1.0", [("sample.war", v2, WAR_TYPE)])
        third = await run_loader(env_for(source, dest))
    assert third.code == 0 and third.outcomes() == ["installed"], third.errors()
    assert (dest / "sample.war").read_bytes() == v2
    record = json.loads((dest / ".sample.war.warloader.json").read_text())
    assert record["sha256"] == sha256(v2)


async def test_artifacts_pushed_by_oras_install(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the oras client pushes installs: a WAR file (a layer titled with its file name,
    picked and named by #layer=) and a directory (a tar+gzip layer, unpacked with
    extract=true)."""
    import oras.client

    dest = tmp_path / "webapps"
    war = war_bytes({"v.txt": "oras"})
    (tmp_path / "sample.war").write_bytes(war)
    (tmp_path / "static" / "css").mkdir(parents=True)
    (tmp_path / "static" / "css" / "site.css").write_text("body {}")
    monkeypatch.chdir(tmp_path)  # oras titles each layer with the path as given
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    for target, files in [("apps/sample:1.0", ["sample.war"]), ("apps/static:1.0", ["static"])]:
        pushed = await asyncio.to_thread(client.push, target=f"{registry}/{target}", files=files)
        assert pushed.status_code == 201
    base = f"oci://{registry}/apps"
    run = await run_loader(
        env_for(f"{base}/sample:1.0#layer=sample.war,{base}/static:1.0#extract=true", dest)
    )
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == war
    assert (dest / "static" / "static" / "css" / "site.css").read_text() == "body {}"


async def test_by_digest_needs_no_request_once_installed(tmp_path: Path) -> None:
    """`@sha256:<manifest digest>` installs the layer (named after #layer=, its title); once
    installed, a restart does not even ask the registry: it is stopped by then."""
    dest = tmp_path / "webapps"
    war = war_bytes()
    with local_registry(tmp_path) as registry:
        async with pusher(registry) as push:
            digest, _ = await push.artifact("apps/sample", "1.0", [("sample.war", war, WAR_TYPE)])
        source = f"oci://{registry}/apps/sample@{digest}#layer=sample.war"
        first = await run_loader(env_for(source, dest))
        assert first.code == 0, first.errors()
        assert (dest / "sample.war").read_bytes() == war
    second = await run_loader(env_for(source, dest, WARLOADER_MAX_ATTEMPTS="1"))
    assert second.code == 0 and second.outcomes() == ["unchanged"], second.errors()
    assert "pinned manifest already installed" in second.logs.messages()[-2]


async def test_tampered_blob_is_refused_and_nothing_installed(
    registry: str, tmp_path: Path
) -> None:
    """A blob whose bytes no longer match its digest (changed in the registry's storage) is
    refused with one line, exit 4; nothing is installed and nothing is left behind."""
    dest = tmp_path / "webapps"
    war = war_bytes()
    async with pusher(registry) as push:
        await push.artifact("apps/sample", "1.0", [("sample.war", war, WAR_TYPE)])
    data = blob_file(tmp_path, "sha256:" + sha256(war))
    data.write_bytes(war[:-1] + bytes([war[-1] ^ 1]))
    run = await run_loader(env_for(f"oci://{registry}/apps/sample:1.0#name=sample.war", dest))
    assert run.code == EXIT_DIGEST
    assert "sha256 is" in one_error(run) and "nothing installed" in one_error(run)
    assert not (dest / "sample.war").exists() and leftovers(dest) == []


async def test_tampered_manifest_pinned_by_digest_is_refused(registry: str, tmp_path: Path) -> None:
    """A manifest pinned by digest whose served bytes do not hash to it is refused (exit 4)."""
    dest = tmp_path / "webapps"
    async with pusher(registry) as push:
        digest, body = await push.artifact(
            "apps/sample", "1.0", [("sample.war", war_bytes(), WAR_TYPE)]
        )
    blob_file(tmp_path, digest).write_bytes(body.replace(b'"now"', b'"NOW"'))
    run = await run_loader(env_for(f"oci://{registry}/apps/sample@{digest}#name=s.war", dest))
    assert run.code == EXIT_DIGEST
    assert "the manifest's digest is sha256:" in one_error(run)
    assert not (dest / "s.war").exists() and leftovers(dest) == []


async def test_unknown_tag_and_repository_are_one_line_each(registry: str, tmp_path: Path) -> None:
    """An unknown tag, and an unknown repository, end with exit 3 and one line naming it."""
    dest = tmp_path / "webapps"
    async with pusher(registry) as push:
        await push.artifact("apps/sample", "1.0", [("sample.war", war_bytes(), WAR_TYPE)])
    for ref, said in [("apps/sample:2.0", "tag '2.0'"), ("apps/nothing:1.0", "tag '1.0'")]:
        run = await run_loader(env_for(f"oci://{registry}/{ref}#name=sample.war", dest))
        assert run.code == EXIT_SOURCE
        line = one_error(run)
        assert "not found (HTTP 404" in line and said in line, line
        assert not (dest / "sample.war").exists()


async def test_manifest_over_the_limit_is_refused(registry: str, tmp_path: Path) -> None:
    """A manifest larger than WARLOADER_MAX_MANIFEST_SIZE is refused unread (exit 3)."""
    dest = tmp_path / "webapps"
    async with pusher(registry) as push:
        await push.artifact(
            "apps/sample",
            "1.0",
            [("sample.war", war_bytes(), WAR_TYPE)],
            annotations={"padding": "x" * 4096},
        )
    source = f"oci://{registry}/apps/sample:1.0#name=sample.war"
    run = await run_loader(env_for(source, dest, WARLOADER_MAX_MANIFEST_SIZE="2KiB"))
    assert run.code == EXIT_SOURCE
    assert "more than the limit of 2048 (WARLOADER_MAX_MANIFEST_SIZE)" in one_error(run)
    assert not (dest / "sample.war").exists()


async def test_index_is_refused_and_its_manifest_by_digest_installs(
    registry: str, tmp_path: Path
) -> None:
    """An image index (manifest list) is refused with one line telling to pin one of its
    manifests; the manifest it lists, pinned by digest, installs."""
    dest = tmp_path / "webapps"
    war = war_bytes()
    async with pusher(registry) as push:
        digest, body = await push.artifact("apps/sample", "1.0", [("sample.war", war, WAR_TYPE)])
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": len(body),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
        await push.manifest("apps/sample", "multi", json.dumps(index).encode(), INDEX)
    run = await run_loader(env_for(f"oci://{registry}/apps/sample:multi#name=sample.war", dest))
    assert run.code == EXIT_SOURCE
    assert "is an image index" in one_error(run) and "@sha256:<digest>" in one_error(run)
    pinned = await run_loader(env_for(f"oci://{registry}/apps/sample@{digest}#name=x.war", dest))
    assert pinned.code == 0 and (dest / "x.war").read_bytes() == war


async def test_several_layers_need_a_choice(registry: str, tmp_path: Path) -> None:
    """An artifact of several layers needs #layer= (its title or media type); with it, that
    layer installs (under its title), and unpacks when it is an archive and extraction is on."""
    dest = tmp_path / "webapps"
    war, notes = war_bytes({"v.txt": "w"}), b"release notes"
    async with pusher(registry) as push:
        await push.artifact(
            "apps/sample", "1.0", [("sample.war", war, WAR_TYPE), ("NOTES", notes, "text/plain")]
        )
    base = f"oci://{registry}/apps/sample:1.0"
    run = await run_loader(env_for(f"{base}#name=sample.war", dest))
    assert run.code == EXIT_SOURCE and "has 2 layers: choose one with #layer=" in one_error(run)
    run = await run_loader(env_for(f"{base}#layer=text/plain&name=NOTES", dest))
    assert run.code == 0 and (dest / "NOTES").read_bytes() == notes
    run = await run_loader(env_for(f"{base}#layer=sample.war", dest, WARLOADER_EXTRACT="true"))
    assert run.code == 0, run.errors()
    assert (dest / "sample" / "v.txt").read_text() == "w"


async def test_htpasswd_registry_needs_the_credentials_file(tmp_path: Path) -> None:
    """A registry with basic auth: without WARLOADER_REGISTRY_AUTH_FILE one line asks for it
    (exit 3), with a wrong password one line says it was refused; with the right one the
    artifact installs; the password is never logged."""
    dest = tmp_path / "webapps"
    war = war_bytes()
    auth = htpasswd(tmp_path, "puller", "s3cret-pw")
    creds = tmp_path / "registry-auth"
    creds.write_text("puller:s3cret-pw\n")
    with local_registry(tmp_path, auth) as registry:
        basic = {"Authorization": "Basic cHVsbGVyOnMzY3JldC1wdw=="}
        async with pusher(registry, basic) as push:
            await push.artifact("apps/sample", "1.0", [("sample.war", war, WAR_TYPE)])
        source = f"oci://{registry}/apps/sample:1.0#name=sample.war"
        run = await run_loader(env_for(source, dest))
        assert run.code == EXIT_SOURCE
        assert "asks for credentials" in one_error(run)
        wrong = tmp_path / "wrong-auth"
        wrong.write_text("puller:not-it")
        run = await run_loader(env_for(source, dest, WARLOADER_REGISTRY_AUTH_FILE=str(wrong)))
        assert run.code == EXIT_SOURCE
        assert "refused us (HTTP 401): check WARLOADER_REGISTRY_AUTH_FILE" in one_error(run)
        run = await run_loader(env_for(source, dest, WARLOADER_REGISTRY_AUTH_FILE=str(creds)))
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == war
    assert not any("s3cret" in m for m in run.logs.messages())


async def test_bearer_token_flow_with_and_without_credentials(tmp_path: Path) -> None:
    """A registry with token auth: the loader follows WWW-Authenticate Bearer to the token
    endpoint (realm, service, scope), with the credentials file when given and anonymously
    otherwise, and pulls with the token it gets."""
    dest = tmp_path / "webapps"
    war = war_bytes()
    creds = tmp_path / "registry-auth"
    creds.write_text("pusher:tok-pw")
    async with token_server(tmp_path, "pusher", "tok-pw") as tokens:
        with local_registry(tmp_path, tokens.auth_block()) as registry:
            scope = "repository:apps/sample:pull,push"
            bearer = {"Authorization": f"Bearer {tokens.token(scope, 'pusher')}"}
            async with pusher(registry, bearer) as push:
                await push.artifact("apps/sample", "1.0", [("sample.war", war, WAR_TYPE)])
            source = f"oci://{registry}/apps/sample:1.0#name=sample.war"
            run = await run_loader(env_for(source, dest, WARLOADER_REGISTRY_AUTH_FILE=str(creds)))
            assert run.code == 0, run.errors()
            assert tokens.requests == [("repository:apps/sample:pull", "pusher")]
            anonymous = await run_loader(env_for(f"{source}&name=anon.war", dest))
            assert anonymous.code == 0, anonymous.errors()
            assert tokens.requests[-1] == ("repository:apps/sample:pull", "")
    assert (dest / "sample.war").read_bytes() == war == (dest / "anon.war").read_bytes()


async def test_https_registry_is_verified(tmp_path: Path) -> None:
    """A registry serving https only: with WARLOADER_PLAIN_HTTP_REGISTRIES empty the loader
    speaks https, verified: a certificate of an unknown CA is refused (exit 3, one line), the
    test CA in WARLOADER_CA_FILE makes it install. By default a loopback registry is reached
    over plain http, which this one refuses: one line, exit 3."""
    dest = tmp_path / "webapps"
    war = war_bytes()
    ca, files = tls_files(tmp_path)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    with local_registry(tmp_path, tls=files) as registry:
        async with pusher(registry, tls=trust) as push:
            await push.artifact("apps/sample", "1.0", [("sample.war", war, WAR_TYPE)])
        source = f"oci://{registry}/apps/sample:1.0#name=sample.war"
        https = {"WARLOADER_PLAIN_HTTP_REGISTRIES": "", "WARLOADER_MAX_ATTEMPTS": "1"}
        untrusted = await run_loader(env_for(source, dest, **https))
        assert untrusted.code == EXIT_SOURCE
        assert "TLS certificate not trusted" in one_error(untrusted)
        plain = await run_loader(env_for(source, dest, WARLOADER_MAX_ATTEMPTS="1"))
        assert plain.code == EXIT_SOURCE and "HTTP 400" in one_error(plain)
        assert not (dest / "sample.war").exists()
        run = await run_loader(env_for(source, dest, WARLOADER_CA_FILE=str(ca_file), **https))
    assert run.code == 0, run.errors()
    assert (dest / "sample.war").read_bytes() == war


async def test_watch_mode_follows_a_moved_tag(registry: str, tmp_path: Path) -> None:
    """With --watch the tag is resolved again every poll: pushing new content under it
    installs that while the loader runs."""
    dest = tmp_path / "webapps"
    v1, v2 = war_bytes({"v.txt": "1"}), war_bytes({"v.txt": "2"})
    async with pusher(registry) as push:
        await push.artifact("apps/sample", "live", [("sample.war", v1, WAR_TYPE)])
        stopping = asyncio.Event()
        env = env_for(
            f"oci://{registry}/apps/sample:live#name=sample.war",
            dest,
            WARLOADER_WATCH="true",
            WARLOADER_POLL_INTERVAL="100ms",
        )
        task = asyncio.ensure_future(run_loader(env, stopping))
        try:
            target = dest / "sample.war"
            await until(lambda: target.exists() and target.read_bytes() == v1, 20, "v1 in")
            await push.artifact("apps/sample", "live", [("sample.war", v2, WAR_TYPE)])
            record = dest / ".sample.war.warloader.json"
            await until(lambda: sha256(v2) in record.read_text(), 20, "v2 recorded")
            assert target.read_bytes() == v2
        finally:
            stopping.set()
            async with asyncio.timeout(20):
                run = await task
    assert run.code == 0, run.errors()
