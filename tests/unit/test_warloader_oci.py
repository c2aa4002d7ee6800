"""oci:// sources: the reference grammar, the destination name, the scheme a registry is
reached by, and the settings' one-line refusals."""

from __future__ import annotations

import pytest

from sidecars.runtime import ConfigError
from sidecars.warloader.sources import parse
from support.warloader import build

pytestmark = pytest.mark.unit
HEX = "ab" * 32


def test_references_by_tag_and_digest() -> None:
    """Registry host[:port], a lower-case repository path, then a tag (default latest) or a
    sha256 manifest digest; the name is the repository's last component unless given."""
    src = parse("oci://registry.example.org/apps/sample:1.4#name=sample.war")
    assert src.problem is None and src.is_url and src.oci is not None
    assert (src.oci.registry, src.oci.repository, src.oci.tag) == (
        "registry.example.org",
        "apps/sample",
        "1.4",
    )
    assert src.name == "sample.war" and str(src) == "oci://registry.example.org/apps/sample:1.4"
    pinned = parse(f"oci://127.0.0.1:5000/apps/sample@sha256:{HEX}")
    assert pinned.oci is not None and pinned.oci.digest == f"sha256:{HEX}"
    assert pinned.oci.ref == f"sha256:{HEX}" and pinned.name == "sample"
    latest = parse("OCI://[::1]:5000/sample")
    assert latest.oci is not None and latest.oci.tag == "latest" and latest.oci.host == "::1"
    titled = parse("oci://r.example/apps/bundle:2#layer=site.tar.gz&extract=true")
    assert titled.name == "site.tar.gz" and titled.target_name(True) == "site"
    typed = parse("oci://r.example/apps/notes:2#layer=text/plain")
    assert typed.name == "notes" and typed.oci is not None and typed.oci.layer == "text/plain"


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ("oci://registry.example.org", "expected oci://<registry>/<repository>:<tag>"),
        ("oci://u:p@r.example/a:1", "credentials do not go in the source"),
        ("oci://r.example/Apps:1", "is not a valid repository name"),
        ("oci://r.example/a:b:c", "is not a valid repository name"),
        ("oci://r.example/a:" + "t" * 200, "is not a valid tag"),
        ("oci://r.example/a@sha256:abc", "is not sha256:<64 lower-case hex digits>"),
        ("oci://r.example/a@sha512:" + "a" * 128, "is not sha256:"),
        ("oci://r.example:99999/a", "has an invalid port"),
        ("oci://bad_host!/a", "is not a host[:port]"),
        (f"oci://r.example/a:1#sha256={HEX}", "unknown option 'sha256'"),
        ("oci://r.example/a:1#name=.hidden", "must not start with '.'"),
    ],
)
def test_malformed_references_are_one_line(raw: str, expect: str) -> None:
    problem = parse(raw).problem
    assert problem is not None and expect in problem and "\n" not in problem


def test_https_unless_listed_for_plain_http() -> None:
    """Registries are reached over https; plain http only for those listed, `loopback` (the
    default) standing for every loopback one."""

    def base(raw: str, listed: tuple[str, ...] = ("loopback",)) -> str:
        ref = parse(raw).oci
        assert ref is not None
        return ref.base(listed)

    assert base("oci://registry.example.org/a:1") == "https://registry.example.org/v2/a"
    assert base("oci://10.0.0.5:5000/a:1") == "https://10.0.0.5:5000/v2/a"
    assert base("oci://127.0.0.2:5000/a/b:1") == "http://127.0.0.2:5000/v2/a/b"
    assert base("oci://localhost:5000/a:1") == "http://localhost:5000/v2/a"
    assert base("oci://[::1]:5000/a:1") == "http://[::1]:5000/v2/a"
    assert base("oci://10.0.0.5:5000/a:1", ("10.0.0.5:5000",)) == "http://10.0.0.5:5000/v2/a"
    assert base("oci://reg.lan/a:1", ("reg.lan",)) == "http://reg.lan/v2/a"
    assert base("oci://127.0.0.2:5000/a:1", ()) == "https://127.0.0.2:5000/v2/a"
    assert base("oci://localhost/a:1", ("reg.lan",)) == "https://localhost/v2/a"


def test_a_malformed_oci_source_is_a_config_error() -> None:
    """A bad reference exits 2 at start with one line naming the item."""
    env = {"WARLOADER_SOURCES": "oci://r.example/A:1", "WARLOADER_DEST": "/tmp/x"}
    with pytest.raises(ConfigError) as err:
        build(env)
    [line] = err.value.problems
    assert line.startswith("WARLOADER_SOURCES item 1 (oci://r.example/A:1): repository 'A'")
