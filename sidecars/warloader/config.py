"""warloader settings (`WARLOADER_*` variables or flags)."""

from __future__ import annotations

from dataclasses import dataclass

from sidecars.runtime import CommonConfig, setting
from sidecars.runtime.settings import boolean, listing


@dataclass(frozen=True, slots=True)
class Config(CommonConfig):
    sources: tuple[str, ...] = setting(
        "",
        "comma-separated paths or http(s) URLs, each optionally with #sha256=<hex>",
        listing(str),
        metavar="SOURCES",
    )
    dest: str = setting("/target", "the shared volume's directory to install into", metavar="DIR")
    extract: bool = setting(
        "false",
        "unpack .war/.zip/.tar.gz into a directory instead of copying",
        boolean,
        metavar="BOOL",
    )
    watch: bool = setting(
        "false",
        "stay running as a sidecar and install new versions as sources change",
        boolean,
        metavar="BOOL",
    )
