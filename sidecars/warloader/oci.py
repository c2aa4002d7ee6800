"""OCI references (`oci://registry/repository:tag` or `@sha256:<hex>`) and manifests: plain
data and parsing, no HTTP client."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sidecars.warloader.errors import SourceError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
TITLE = "org.opencontainers.image.title"

# The grammar of distribution's reference package (lower-case path components; a tag of at
# most 128 word characters, dots and dashes).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_REGISTRY = re.compile(
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?)+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    """Where an artifact lives: `registry` (host[:port]), `repository`, and a `tag` or a
    manifest `digest` (`sha256:<hex>`); `layer` picks one of several layers."""

    registry: str
    host: str  # the registry's host name or address, without brackets or port
    repository: str
    tag: str | None = None
    digest: str | None = None
    layer: str | None = None

    @property
    def ref(self) -> str:
        """The manifest's tag or digest, as the registry API takes it."""
        return self.digest or self.tag or "latest"

    def location(self) -> str:
        at = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"oci://{self.registry}/{self.repository}{at}"

    def plain_http(self, listed: tuple[str, ...]) -> bool:
        """Whether `listed` (host[:port] entries; `loopback` for every loopback registry)
        says this registry is reached over plain http."""
        if self.registry in listed or self.host in listed:
            return True
        return LOOPBACK in listed and is_loopback(self.host)

    def base(self, plain_http: tuple[str, ...]) -> str:
        """The registry API's base URL for this repository."""
        scheme = "http" if self.plain_http(plain_http) else "https"
        return f"{scheme}://{self.registry}/v2/{self.repository}"


LOOPBACK = "loopback"


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_reference(body: str) -> tuple[Reference | None, str | None]:
    """`registry/repository:tag` or `registry/repository@sha256:<hex>` (after `oci://`):
    (the reference, None) or (None, why it is malformed)."""
    registry, slash, rest = body.partition("/")
    if "@" in registry:
        return None, "credentials do not go in the source: use WARLOADER_REGISTRY_AUTH_FILE"
    if not _REGISTRY.fullmatch(registry):
        return None, f"registry {registry!r} is not a host[:port]"
    if not slash or not rest:
        return None, "expected oci://<registry>/<repository>:<tag> or @sha256:<digest>"
    try:
        parts = urlsplit("//" + registry)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None, f"registry {registry!r} has an invalid port"
    host = parts.hostname or ""
    tag = digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            return None, f"digest {digest!r} is not sha256:<64 lower-case hex digits>"
    else:
        last = rest.rfind(":")
        if last > rest.rfind("/"):
            rest, tag = rest[:last], rest[last + 1 :]
            if not _TAG.fullmatch(tag):
                return None, f"tag {tag!r} is not a valid tag"
        else:
            tag = "latest"
    if not _REPOSITORY.fullmatch(rest):
        return None, f"repository {rest!r} is not a valid repository name (lower case)"
    return Reference(registry, host, rest, tag, digest), None


@dataclass(frozen=True, slots=True)
class Layer:
    """The descriptor of the blob to install."""

    media_type: str
    digest: str
    size: int
    title: str | None


def parse_manifest(body: bytes, content_type: str, what: str) -> list[Layer]:
    """The layers of an image manifest (OCI or Docker v2 schema 2); an index or manifest list,
    or anything else, is refused with one line."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise SourceError(f"{what}: the manifest is not JSON") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{what}: the manifest is not a JSON object")
    media = doc.get("mediaType") or content_type.split(";")[0].strip()
    if media in INDEXES or "manifests" in doc:
        raise SourceError(
            f"{what} is an image index (a list of manifests, e.g. one per platform): pin one "
            "of its manifests with @sha256:<digest>"
        )
    if media not in MANIFESTS or doc.get("schemaVersion") != 2:
        raise SourceError(f"{what}: unsupported manifest type {str(media)[:80]!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SourceError(f"{what}: the manifest has no layers")
    return [_layer(item, what) for item in layers]


def _layer(item: Any, what: str) -> Layer:
    if not isinstance(item, dict):
        raise SourceError(f"{what}: a layer of the manifest is not an object")
    digest, size, media = item.get("digest"), item.get("size"), item.get("mediaType")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise SourceError(
            f"{what}: layer digest {str(digest)[:80]!r} is not sha256:<64 hex digits>"
        )
    if type(size) is not int or size < 0:
        raise SourceError(f"{what}: layer {digest} has no valid size")
    annotations = item.get("annotations")
    title = annotations.get(TITLE) if isinstance(annotations, dict) else None
    return Layer(
        media if isinstance(media, str) else "",
        digest,
        size,
        title if isinstance(title, str) else None,
    )


def choose(layers: list[Layer], wanted: str | None, what: str) -> Layer:
    """The artifact's single layer, or the one whose title or media type is `wanted`."""
    if wanted is None:
        if len(layers) == 1:
            return layers[0]
        raise SourceError(
            f"{what} has {len(layers)} layers: choose one with #layer=<title or media type>"
        )
    found = [x for x in layers if wanted in (x.title, x.media_type)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourceError(f"{what}: no layer titled or of media type {wanted!r}")
    raise SourceError(f"{what}: {len(found)} layers match {wanted!r}: name one by its title")
