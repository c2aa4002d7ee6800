"""Resolve an oci:// source to the blob to download: the registry's auth challenge (Basic, or
Bearer through its token endpoint), the manifest (bounded in size and time, digest checked),
the layer. Uses the loader's one HTTP session; the blob itself goes through fetch.download."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from sidecars.runtime import Backoff
from sidecars.warloader import oci, redirects
from sidecars.warloader.errors import DigestMismatch, SourceError
from sidecars.warloader.fetch import NOT_RETRYABLE, RETRY_STATUSES, describe
from sidecars.warloader.remote import HttpPolicy, basic

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

MAX_TOKEN_RESPONSE = 64 << 10
_ACCEPT = ", ".join(oci.MANIFESTS + oci.INDEXES)
_PARAM = re.compile(r'\s*([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")


@dataclass(frozen=True, slots=True)
class Blob:
    """What to download: the layer's URL, its descriptor, the headers the registry wants."""

    url: str
    layer: oci.Layer
    headers: Mapping[str, str]
    manifest_digest: str


@dataclass(slots=True)
class _Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class Registry:
    """Talks to OCI registries for the loader: one per run, sharing its HTTP session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: HttpPolicy,
        plain_http: tuple[str, ...],
        max_manifest: int,
        credentials: Callable[[], tuple[str, str] | None],
    ) -> None:
        self.session, self.policy, self.plain_http = session, policy, plain_http
        self.max_manifest, self.credentials = max_manifest, credentials

    async def resolve(self, ref: oci.Reference, label: str) -> Blob:
        """The manifest of `ref` (its digest checked when pinned) and the layer to install."""
        base = ref.base(self.plain_http)
        url = f"{base}/manifests/{ref.ref}"
        headers: dict[str, str] = {"Accept": _ACCEPT}
        got = await self._get(url, headers, self.max_manifest, "manifest", label)
        if got.status == 401:
            auth = await self._authorize(ref, got.headers.get("WWW-Authenticate", ""), label)
            headers.update(auth)
            got = await self._get(url, headers, self.max_manifest, "manifest", label)
        _check(got.status, label, ref)
        digest = "sha256:" + hashlib.sha256(got.body).hexdigest()
        if ref.digest and digest != ref.digest:
            raise DigestMismatch(f"{label}: the manifest's digest is {digest}; nothing installed")
        served = got.headers.get("Docker-Content-Digest", "")
        if served.startswith("sha256:") and served != digest:
            raise DigestMismatch(
                f"{label}: the manifest's digest is {digest}, the registry says {served[:80]}; "
                "nothing installed"
            )
        content_type = got.headers.get("Content-Type", "")
        layer = oci.choose(oci.parse_manifest(got.body, content_type, label), ref.layer, label)
        if layer.size > self.policy.max_size:
            raise SourceError(
                f"{label}: layer {layer.digest} of {layer.size} bytes is more than the limit "
                f"of {self.policy.max_size} (WARLOADER_MAX_DOWNLOAD_SIZE)"
            )
        auth_only = {k: v for k, v in headers.items() if k == "Authorization"}
        return Blob(f"{base}/blobs/{layer.digest}", layer, auth_only, digest)

    async def _authorize(self, ref: oci.Reference, challenge: str, label: str) -> dict[str, str]:
        """Answer the registry's 401: Basic with the credentials file, or Bearer with a token
        from the realm it names (anonymous when there are no credentials)."""
        scheme, _, rest = challenge.strip().partition(" ")
        params = {m.group(1).lower(): m.group(2) or m.group(3) for m in _PARAM.finditer(rest)}
        creds = self.credentials()
        if scheme.lower() == "basic":
            if creds is None:
                raise SourceError(
                    f"{label}: the registry asks for credentials (HTTP 401): set "
                    "WARLOADER_REGISTRY_AUTH_FILE"
                )
            return {"Authorization": basic(*creds)}
        if scheme.lower() != "bearer" or not params.get("realm"):
            shown = challenge[:80] or "none"
            raise SourceError(f"{label}: HTTP 401 with an unsupported challenge ({shown})")
        realm = params["realm"]
        if not re.match(r"https?://", realm) or (
            realm.startswith("http:") and not ref.plain_http(self.plain_http)
        ):
            raise SourceError(
                f"{label}: token endpoint {realm[:120]!r} refused: expected an https URL"
            )
        await redirects.check(ref.host, realm)
        query = {"scope": params.get("scope") or f"repository:{ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": basic(*creds)} if creds else {}
        url = str(URL(realm).update_query(query))
        got = await self._get(url, headers, MAX_TOKEN_RESPONSE, "token response", label)
        if got.status != 200:
            hint = " (check WARLOADER_REGISTRY_AUTH_FILE)" if got.status in (401, 403) else ""
            raise SourceError(f"{label}: the token endpoint answered HTTP {got.status}{hint}")
        return {"Authorization": f"Bearer {_token(got.body, label)}"}

    async def _get(
        self, url: str, headers: Mapping[str, str], limit: int, what: str, label: str
    ) -> _Answer:
        """GET a small document, retrying transient failures; each try bounded in time (the
        min-rate window, or the download deadline when there is no rate rule)."""
        backoff = Backoff(base=self.policy.retry_delay, cap=30.0)
        bound = self.policy.rate_window if self.policy.min_rate > 0 else self.policy.deadline
        for attempt in range(1, self.policy.attempts + 1):
            try:
                async with asyncio.timeout(bound):
                    got = await self._once(url, headers, limit, what)
                if got.status not in RETRY_STATUSES:
                    return got
                why = f"HTTP {got.status}"
            except TimeoutError:
                why = f"no {what} within {bound:g}s"
            except NOT_RETRYABLE as exc:
                raise SourceError(f"cannot fetch the {what} of {label}: {describe(exc)}") from None
            except (aiohttp.ClientError, ConnectionError) as exc:
                why = describe(exc)
            if attempt == self.policy.attempts:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise SourceError(f"cannot fetch the {what} of {label}: {why}{tries}")
            await asyncio.sleep(backoff.next_delay())
        raise AssertionError("unreachable")

    async def _once(self, url: str, headers: Mapping[str, str], limit: int, what: str) -> _Answer:
        async with self.session.get(url, headers=headers, trace_request_ctx=url) as resp:
            if resp.status != 200:
                return _Answer(resp.status, resp.headers, b"")
            if resp.content_length is not None and resp.content_length > limit:
                raise SourceError(
                    f"{what} of {resp.content_length} bytes is more than the limit of {limit}"
                    + (" (WARLOADER_MAX_MANIFEST_SIZE)" if what == "manifest" else "")
                )
            body = bytearray()
            async for chunk in resp.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise SourceError(f"{what} exceeds the limit of {limit} bytes")
            return _Answer(resp.status, resp.headers, bytes(body))


def _check(status: int, label: str, ref: oci.Reference) -> None:
    if status == 200:
        return
    if status == 404:
        raise SourceError(f"{label}: not found (HTTP 404: no such repository or {_kind(ref)})")
    if status in (401, 403):
        raise SourceError(
            f"{label}: the registry refused us (HTTP {status}): check WARLOADER_REGISTRY_AUTH_FILE"
        )
    raise SourceError(f"{label}: the registry answered HTTP {status}")


def _kind(ref: oci.Reference) -> str:
    return "manifest digest" if ref.digest else f"tag {ref.tag!r}"


def _token(body: bytes, label: str) -> str:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise SourceError(f"{label}: the token endpoint's answer holds no usable token")
    return token
