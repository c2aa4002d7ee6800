"""warloader settings and source items: parsing, validation, redaction, README table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sidecars.runtime import ConfigError
from sidecars.runtime.settings import env_name, flag_name, redacted, specs
from sidecars.warloader.config import Config, octal_mode, owner
from sidecars.warloader.fsops import Modes
from sidecars.warloader.service import SIDECAR
from sidecars.warloader.sources import display, parse, strip_archive_suffix

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HEX = "a" * 64


def test_defaults() -> None:
    config = SIDECAR.load_config([], {})
    assert config.sources == () and config.dest == "/target" and not config.extract
    assert config.admin_addr == ("0.0.0.0", 9184)
    assert (config.file_mode, config.dir_mode, config.owner) == (0o644, 0o755, (-1, -1))


@pytest.mark.parametrize(
    "raw, location, is_url, sha, name, extract",
    [
        ("/a/sample.war", "/a/sample.war", False, None, "sample.war", None),
        (f"/a/s.war#sha256={HEX.upper()}", "/a/s.war", False, HEX, "s.war", None),
        ("/a/s.war#name=ROOT.war&extract=no", "/a/s.war", False, None, "ROOT.war", False),
        ("/conf/dir/", "/conf/dir/", False, None, "dir", None),
        ("https://h:8443/x/app%201.war?v=1", "https://h:8443/x/app%201.war?v=1", True, None,
         "app 1.war", None),
        ("HTTP://u:p@h/x.tgz#extract=1", "http://h/x.tgz", True, None, "x.tgz", True),
    ],
)  # fmt: skip
def test_parse_source(
    raw: str, location: str, is_url: bool, sha: str | None, name: str, extract: bool | None
) -> None:
    src = parse(raw)
    assert src.problem is None
    assert (src.location, src.is_url, src.sha256, src.name, src.extract) == (
        location,
        is_url,
        sha,
        name,
        extract,
    )


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("sample.war", "expected an absolute path"),
        ("/a/s.war#sha256=xyz", "sha256 must be 64 hex digits"),
        ("/a/s.war#md5=1", "unknown option 'md5'"),
        ("/a/s.war#extract=maybe", "extract must be true or false"),
        ("/a/s.war#name=../x", "must not contain '/'"),
        ("/a/s.war#name=.hidden", "must not start with '.'"),
        ("https://h/", "destination name '' is empty (add #name=<file name>)"),
        ("http:///x.war", "expected an http(s) URL with a host"),
        ("http://h:99999/x.war", "expected an http(s) URL with a valid host and port"),
        ("http://[::1/x.war", "expected an http(s) URL with a valid host and port"),
    ],
)
def test_parse_source_problems(raw: str, problem: str) -> None:
    assert problem in (parse(raw).problem or "")


def test_urls_are_redacted_for_logs() -> None:
    raw = "https://user:hunter2@h.example/a.war?X-Amz-Signature=abc&v=2"
    src = parse(raw)
    assert src.userinfo == ("user", "hunter2")
    assert str(src) == "https://h.example/a.war?X-Amz-Signature=***&v=***"
    # the startup line logs the effective settings this way (runtime: json with default=str)
    config = SIDECAR.load_config([], {"WARLOADER_SOURCES": raw})
    logged = json.dumps(redacted(config), default=str)
    assert "hunter2" not in logged and "abc" not in logged and "h.example/a.war" in logged
    assert display("http://[::1]:81/x") == "http://[::1]:81/x"


def test_extract_names() -> None:
    assert strip_archive_suffix("sample.war") == "sample"
    assert strip_archive_suffix("site.TAR.GZ") == "site"
    assert strip_archive_suffix(".war") == ".war"
    for name in ("site.tar.bz2", "site.tbz2", "site.tar.xz", "site.txz", "site.tgz", "site.jar"):
        assert strip_archive_suffix(name) == "site"
    assert parse("/a/sample.war").target_name(True) == "sample"
    assert parse("/a/sample.war#name=app").target_name(True) == "app"
    assert parse("/a/sample.war").target_name(False) == "sample.war"


def test_mode_and_owner_parsers() -> None:
    assert octal_mode("0640") == 0o640 and octal_mode("755") == 0o755
    for bad in ["4755", "0o644", "rw-r--r--", "999"]:
        with pytest.raises(ValueError):
            octal_mode(bad)
    assert owner("") == (-1, -1) and owner("1000") == (1000, -1)
    assert owner("1000:2000") == (1000, 2000) and owner(":2000") == (-1, 2000)
    with pytest.raises(ValueError):
        owner("tomcat")
    assert Modes(0o640).for_file(0o755) == 0o750
    assert Modes(0o644).for_file(0o4644) == 0o644


def test_settings_errors_name_setting_value_and_rule() -> None:
    with pytest.raises(ConfigError) as err:
        SIDECAR.load_config([], {"WARLOADER_FILE_MODE": "4755", "WARLOADER_OWNER": "x"})
    assert sorted(err.value.problems) == [
        "WARLOADER_FILE_MODE='4755': expected an octal mode such as 0644 "
        "(no setuid, setgid or sticky bits)",
        "WARLOADER_OWNER='x': expected a numeric uid[:gid], :gid or nothing",
    ]


def test_readme_table_matches_the_settings() -> None:
    readme = (ROOT / "sidecars/warloader/README.md").read_text()
    rows = re.findall(
        r"^\| `(WARLOADER_\w+)` \| `(--[\w-]+)` \| `([^`]*)` \| (.+) \|$", readme, re.M
    )
    defaults = SIDECAR._defaults()
    expected = [
        (env_name("WARLOADER", n), flag_name(n), defaults.get(n, s.default), s.help)
        for n, s in specs(Config)
    ]
    assert rows == expected


def test_extract_applies_to_archive_names_unless_forced() -> None:
    assert parse("/a/sample.war").extracting(True)
    assert not parse("/a/app.properties").extracting(True)
    assert not parse("/conf/dir").extracting(True)
    assert parse("/a/blob#extract=true").extracting(False)
    assert not parse("/a/sample.war#extract=false").extracting(True)
    assert not parse("/a/sample.war").extracting(False)
