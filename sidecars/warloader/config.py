"""warloader settings (`WARLOADER_*` variables or flags)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.checks import readable_file
from sidecars.runtime.settings import boolean, duration, integer, listing, size
from sidecars.warloader.sources import Source, parse


def octal_mode(raw: str) -> int:
    """A permission mode in octal such as 0644 or 755; no setuid/setgid/sticky bits."""
    if not re.fullmatch(r"\s*0?[0-7]{3}\s*", raw):
        raise ValueError("expected an octal mode such as 0644 (no setuid, setgid or sticky bits)")
    return int(raw.strip(), 8)


def owner(raw: str) -> tuple[int, int]:
    """`uid`, `uid:gid` or `:gid` (numeric); empty leaves the owner as it is, (-1, -1)."""
    m = re.fullmatch(r"\s*(\d*)(?::(\d*))?\s*", raw)
    if not m:
        raise ValueError("expected a numeric uid[:gid], :gid or nothing")
    uid, gid = m.group(1), m.group(2)
    return (int(uid) if uid else -1, int(gid) if gid else -1)


def optional_path(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith("/"):
        raise ValueError("expected an absolute path")
    return value


_sources: Callable[[str], tuple[Source, ...]] = listing(parse)


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    sources: tuple[Source, ...] = setting(
        "",
        "comma-separated absolute paths (file or directory), http(s) URLs or "
        "oci://registry/repository:tag (or @sha256:<digest>) references, each optionally "
        "followed by #sha256=<hex> (not oci), &name=<entry name>, &extract=true or false, "
        "&layer=<title or media type> (oci)",
        _sources,
        metavar="SOURCES",
    )
    dest: str = setting("/target", "the shared volume's directory to install into", metavar="DIR")
    extract: bool = setting(
        "false",
        "unpack sources named *.war/.zip/.jar/.ear/.tar/.tar.gz/.tgz/.tar.bz2/.tar.xz into a "
        "directory instead of copying them",
        boolean,
        metavar="BOOL",
    )
    watch: bool = setting(
        "false",
        "stay running as a sidecar and install new versions as sources change",
        boolean,
        metavar="BOOL",
    )
    concurrency: int = setting(
        "4", "how many sources are loaded at the same time", integer(1, 64), metavar="N"
    )
    max_attempts: int = setting(
        "5", "tries per download before giving up (exit 3)", integer(1, 100), metavar="N"
    )
    retry_delay: float = setting(
        "1s",
        "first delay between download tries; doubles each time (jittered, at most 30s)",
        duration(0.0, 300.0),
        metavar="DURATION",
    )
    timeout: float = setting(
        "30s",
        "longest wait to connect or for the next bytes of a download",
        duration(0.001, 3600.0),
        metavar="DURATION",
    )
    download_min_rate: int = setting(
        "1KiB",
        "slowest download accepted, in bytes per second over each "
        "WARLOADER_DOWNLOAD_MIN_RATE_WINDOW (slower tries are retried; 0 turns it off)",
        size(0),
        metavar="SIZE",
    )
    download_min_rate_window: float = setting(
        "30s",
        "the window over which WARLOADER_DOWNLOAD_MIN_RATE is measured",
        duration(0.05, 3600.0),
        metavar="DURATION",
    )
    download_deadline: float = setting(
        "1h",
        "longest time for one source's download, retries included (exit 3 beyond it)",
        duration(0.05, 7 * 86400.0),
        metavar="DURATION",
    )
    max_download_size: int = setting(
        "4GiB", "largest download accepted (exit 3 beyond it)", size(1), metavar="SIZE"
    )
    bearer_token_file: str = setting(
        "",
        "file holding a bearer token sent to URL sources (re-read for every download)",
        optional_path,
        metavar="FILE",
        check=readable_file,
    )
    basic_auth_file: str = setting(
        "",
        "file holding user:password for HTTP basic auth to URL sources (re-read on use)",
        optional_path,
        metavar="FILE",
        check=readable_file,
    )
    registry_auth_file: str = setting(
        "",
        "file holding user:password for oci:// registries (Basic, or for their token "
        "endpoint; re-read on use); anonymous when empty",
        optional_path,
        metavar="FILE",
        check=readable_file,
    )
    plain_http_registries: tuple[str, ...] = setting(
        "loopback",
        "comma-separated oci:// registries (host[:port]) reached over plain http instead of "
        "verified https; `loopback` stands for every loopback registry; empty: https for all",
        listing(str.lower),
        metavar="HOSTS",
    )
    max_manifest_size: int = setting(
        "4MiB",
        "largest OCI manifest accepted (exit 3 beyond it)",
        size(256, 64 << 20),
        metavar="SIZE",
    )
    ca_file: str = setting(
        "",
        "PEM bundle of CAs trusted for https sources (default: the system's)",
        optional_path,
        metavar="FILE",
        check=readable_file,
    )
    tls_verify: bool = setting(
        "true", "verify https certificates (turn off only for testing)", boolean, metavar="BOOL"
    )
    max_extract_size: int = setting(
        "4GiB", "largest total an archive may unpack to (exit 5 beyond it)", size(1), metavar="SIZE"
    )
    max_extract_files: int = setting(
        "100000", "most entries an archive may hold (exit 5 beyond it)", integer(1), metavar="N"
    )
    max_extract_ratio: int = setting(
        "200",
        "largest unpacked/packed size ratio once past 1 MiB (zip bombs; exit 5 beyond it)",
        integer(1),
        metavar="N",
    )
    owner: tuple[int, int] = setting(
        "",
        "numeric uid[:gid] given to installed files (needs CAP_CHOWN); empty keeps ours",
        owner,
        metavar="UID:GID",
    )
    file_mode: int = setting(
        "0644",
        "mode of installed files (execute bits added where the source had them)",
        octal_mode,
        metavar="MODE",
    )
    dir_mode: int = setting("0755", "mode of installed directories", octal_mode, metavar="MODE")
    progress_interval: float = setting(
        "5s",
        "how often a running load logs its progress (bytes, rate)",
        duration(0.1, 3600.0),
        metavar="DURATION",
    )
    poll_interval: float = setting(
        "30s",
        "with --watch: how often URL (ETag/Last-Modified) and path sources are checked",
        duration(0.05, 86400.0),
        metavar="DURATION",
    )
