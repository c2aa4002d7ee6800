"""docker/push signs each image and attests its CycloneDX SBOM with a cosign key pair;
docker/verify accepts what was signed and refuses, with one line, what was not (a re-tagged
or changed image, another key). Against a real registry on 127.0.0.1 (plain http)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.e2e.conftest import PREFIX, ROOT, SIDECARS, Images, docker
from tests.helpers import GO_TOOLS, free_port, go_tool, http_get
from tests.registry_support import local_registry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

COSIGN = GO_TOOLS / "cosign"
PASSWORD = "test-password"


@dataclass
class Signed:
    target: str  # registry/prefix the images were pushed under
    version: str
    public_key: Path
    work: Path


def key_pair(directory: Path) -> Path:
    """`cosign generate-key-pair` in `directory`; returns the public key's path."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(COSIGN), "generate-key-pair"],
        cwd=directory,
        env={**os.environ, "COSIGN_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return directory / "cosign.pub"


def verify(public_key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "docker" / "verify"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COSIGN_PUBLIC_KEY": str(public_key)},
        stdin=subprocess.DEVNULL,
    )


def push(target: str, key: Path, password: str) -> subprocess.CompletedProcess[str]:
    """docker/push of the four sidecar images (not pause) to `target`, signed with `key`."""
    return subprocess.run(
        [str(ROOT / "docker" / "push")],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "REGISTRY": target,
            "IMAGE_PREFIX": PREFIX,
            "PUSH_PAUSE": "0",
            "COSIGN_KEY": str(key),
            "COSIGN_PASSWORD": password,
        },
        stdin=subprocess.DEVNULL,
    )


def refused(result: subprocess.CompletedProcess[str], why: str) -> None:
    """docker/verify exited 1 with one stderr line that says `why`."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], result.stderr


@pytest.fixture(scope="module")
def signed(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    """The four sidecar images pushed by docker/push to a fresh registry, signed with a new
    key pair (COSIGN_KEY, COSIGN_PASSWORD)."""
    go_tool("cosign")
    work = tmp_path_factory.mktemp("supply-chain")
    public_key = key_pair(work / "keys")
    with local_registry(work) as address:
        target = f"{address}/{images.prefix}"
        result = push(target, work / "keys" / "cosign.key", PASSWORD)
        try:
            assert result.returncode == 0, result.stderr
            for name in SIDECARS:
                assert f"signed {target}/{name}@sha256:" in result.stderr, result.stderr
            yield Signed(target, images.version, public_key, work)
        finally:
            refs = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", target + "/*")
            for ref in refs.stdout.split():
                docker("rmi", ref, check=False)


def test_signed_images_verify(signed: Signed) -> None:
    """Every pushed sidecar image has a signature and an SBOM attestation by the key."""
    refs = [f"{signed.target}/{name}:{signed.version}" for name in SIDECARS]
    result = verify(signed.public_key, *refs)
    assert result.returncode == 0, result.stderr
    for ref in refs:
        assert "signature and SBOM" in result.stdout and ref.rsplit(":", 1)[0] in result.stdout


def test_pulled_image_verifies_by_its_digest(signed: Signed) -> None:
    """A pulled image is checked at the digest it was pulled by."""
    ref = f"{signed.target}/adapter:{signed.version}"
    docker("rmi", ref)
    docker("pull", "-q", ref, timeout=300)
    digest = docker("image", "inspect", "-f", "{{index .RepoDigests 0}}", ref).stdout.strip()
    result = verify(signed.public_key, ref)
    assert result.returncode == 0, result.stderr
    assert digest in result.stdout


def test_local_image_not_pulled_is_refused(signed: Signed) -> None:
    """A local image is checked only by the digest it was pulled by: the built image's own
    name (whose digests name other repositories) is refused, not matched to another's."""
    refused(
        verify(signed.public_key, f"{PREFIX}/logshipper:{signed.version}"),
        "not pulled from a registry",
    )


def test_retagged_unsigned_image_is_refused(signed: Signed) -> None:
    """The signed image re-tagged into another repository, and a changed image (one label
    more) pushed under the signed repository, are refused: no signature for them."""
    source = f"{signed.target}/logshipper:{signed.version}"
    copy = f"{signed.target}/copied:{signed.version}"
    docker("tag", source, copy)
    docker("push", "-q", copy, timeout=300)
    refused(verify(signed.public_key, copy), "no valid signature")

    changed = f"{signed.target}/logshipper:changed"
    build = subprocess.run(
        ["docker", "build", "-q", "-t", changed, "-"],
        input=f"FROM {source}\nLABEL changed=yes\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert build.returncode == 0, build.stderr
    docker("push", "-q", changed, timeout=300)
    refused(verify(signed.public_key, changed), "no valid signature")


def test_other_key_is_refused(signed: Signed) -> None:
    """A signature by another key does not count."""
    other = key_pair(signed.work / "other-keys")
    refused(verify(other, f"{signed.target}/warloader:{signed.version}"), "no valid signature")


def test_signature_without_sbom_is_refused(signed: Signed) -> None:
    """A signed image without the SBOM attestation is refused (the SBOM is part of the check)."""
    ref = f"{signed.target}/nosbom:{signed.version}"
    docker("tag", f"{signed.target}/ambassador:{signed.version}", ref)
    docker("push", "-q", ref, timeout=300)
    digests = docker("image", "inspect", "-f", '{{join .RepoDigests " "}}', ref).stdout.split()
    digest = next(d for d in digests if d.startswith(f"{signed.target}/nosbom@"))
    subprocess.run(
        [str(COSIGN), "sign", "--key", str(signed.work / "keys" / "cosign.key"),
         "--tlog-upload=false", "--yes", "--allow-http-registry", "--allow-insecure-registry",
         digest],
        env={**os.environ, "COSIGN_PASSWORD": PASSWORD},
        check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    refused(verify(signed.public_key, ref), "no CycloneDX SBOM attestation")


def test_sbom_lists_python_and_debian_packages(signed: Signed) -> None:
    """The verified SBOM is valid CycloneDX 1.5 (the schema, strict) and lists the sidecar's
    Python packages at the pinned versions and the Debian package of the interpreter (from the
    base's dpkg database), with purls."""
    out = signed.work / "logshipper.cdx.json"
    result = verify(signed.public_key, "--sbom", str(out), f"{signed.target}/logshipper:latest")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert error is None, error
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert bom["metadata"]["component"]["version"] == signed.version
    purls = {c["purl"] for c in bom["components"]}
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name in ("uvloop", "orjson", "httptools", "aiohttp"):
        version = pins.get(name) or pins[name.replace("-", "_")]
        assert f"pkg:pypi/{name}@{version.strip()}" in purls, sorted(purls)
    # the sidecars' metrics are their own: prometheus-client is a test dependency only
    assert not [p for p in purls if p.startswith("pkg:pypi/prometheus-client@")]
    assert f"pkg:pypi/sidecars@{signed.version}" in purls
    debian = {c["name"]: c for c in bom["components"] if c["purl"].startswith("pkg:deb/")}
    assert "python3.11-minimal" in debian, sorted(debian)
    assert {"libc6", "libssl3", "libpython3.11-stdlib"} <= set(debian), sorted(debian)
    interpreter = debian["python3.11-minimal"]
    assert interpreter["version"].startswith("3.11.")
    assert "distro=debian-12" in interpreter["purl"]


def test_push_with_a_wrong_password_pushes_nothing(signed: Signed) -> None:
    """A key that does not open with COSIGN_PASSWORD: exit 2 with one line, before any push."""
    address = signed.target.split("/")[0]
    key = signed.work / "keys" / "cosign.key"
    result = push(f"{address}/wrong-password", key, "not-" + PASSWORD)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"docker/push: cannot read the key COSIGN_KEY={key} with COSIGN_PASSWORD"
    ]
    catalog = http_get(f"http://{address}/v2/_catalog", timeout=5.0)[1]
    assert b"wrong-password" not in catalog


def test_unreachable_registry_is_not_a_missing_signature(signed: Signed) -> None:
    """A registry that does not answer is reported as such, not as an unsigned image."""
    result = verify(signed.public_key, f"127.0.0.1:{free_port()}/x/y:1")
    refused(result, "cannot check the signature")


def test_verify_usage_errors(tmp_path: Path) -> None:
    """No key, or an unreadable one: exit 2 with one line naming COSIGN_PUBLIC_KEY."""
    for key in ("", str(tmp_path / "missing.pub")):
        result = verify(Path(key) if key else Path(), "127.0.0.1:1/x:1")
        if not key:
            env = {k: v for k, v in os.environ.items() if k != "COSIGN_PUBLIC_KEY"}
            result = subprocess.run(
                [str(ROOT / "docker" / "verify"), "127.0.0.1:1/x:1"],
                capture_output=True, text=True, timeout=30, env=env,
            )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "COSIGN_PUBLIC_KEY" in lines[0], result.stderr
