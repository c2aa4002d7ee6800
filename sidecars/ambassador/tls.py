"""TLS origination to members: the client context built from the settings and rebuilt when its
files change, TLS sessions kept for resumption, and handshake failures sorted by reason."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sidecars.ambassador.config import Config
from sidecars.ambassador.members import Member
from sidecars.runtime import resolver
from sidecars.runtime.memory import forget

# The values of the `reason` label of ambassador_upstream_tls_handshake_failures (bounded).
REASONS = ("verify_failed", "wrong_name", "expired", "timeout", "other")
_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
_WRONG_NAME = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_SETTINGS = (
    "tls", "tls_server_name", "tls_ca_file", "tls_verify", "tls_cert_file", "tls_key_file",
    "tls_min_version", "file_interval",
)  # fmt: skip
MAX_SESSIONS = 4096  # kept for resumption, by server name; emptied when full
# Taking a connection's session (SSLObject.session) costs about 0.1 ms: CPython copies it by
# encoding and decoding it, the member's certificate included. A connection that resumed gives
# its session at most this often per server name (servers' tickets resume more than once, as
# HAProxy's and nginx's do; one that did not resume always gives its own).
REFRESH_SECONDS = 1.0

P = TypeVar("P", bound=asyncio.BaseProtocol)
T = TypeVar("T")


class HandshakeError(ConnectionError):
    """The member accepted the connection but the TLS handshake failed; `reason` is one of
    REASONS. No errno: it is never mistaken for a shortage of descriptors here."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"TLS handshake failed ({reason}): {detail}")
        self.reason, self.detail = reason, detail


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _EXPIRED:
            return "expired"
        if exc.verify_code in _WRONG_NAME:
            return "wrong_name"
        return "verify_failed"
    return "other"


def detail_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc) or type(exc).__name__


class _Context(ssl.SSLContext):
    """A client context that offers the last session a server name gave, for resumption."""

    sessions: dict[str, ssl.SSLSession]
    taken: dict[str, float]  # when each name's session was last taken (monotonic seconds)

    def due(self, name: str) -> bool:
        """Whether a resumed connection to `name` should give its session (REFRESH_SECONDS)."""
        return time.monotonic() - self.taken.get(name, -REFRESH_SECONDS) >= REFRESH_SECONDS

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and server_hostname is not None:
            session = self.sessions.get(server_hostname)
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def build(settings: Config) -> _Context:
    """The client context of `settings` (OSError, ssl.SSLError or ValueError when a file does
    not hold what it should)."""
    ctx = _Context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.sessions, ctx.taken = {}, {}
    ctx.minimum_version = _VERSIONS[settings.tls_min_version]
    if settings.tls_verify:
        if settings.tls_ca_file:
            ctx.load_verify_locations(cafile=settings.tls_ca_file)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if settings.tls_cert_file:
        ctx.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return ctx


def tls_settings(settings: Config) -> tuple[object, ...]:
    """The settings an Origination is built from."""
    return tuple(getattr(settings, name) for name in _SETTINGS)


def problems(settings: Config, named: Callable[[str], str]) -> list[str]:
    """What makes the TLS settings impossible, one line each (empty when fine or TLS is off);
    `named` gives a setting's name as the user wrote it."""
    if not settings.tls:
        used = [
            name
            for name in ("tls_server_name", "tls_ca_file", "tls_cert_file", "tls_key_file")
            if getattr(settings, name)
        ]
        return [f"{named(name)}: set but {named('tls')} is off" for name in used]
    if settings.mode not in ("tcp", "http"):
        return [f"{named('tls')}: TLS to members is offered in tcp and http mode only"]
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        both = f"{named('tls_cert_file')} and {named('tls_key_file')}"
        return [f"{both}: give both (mTLS) or neither"]
    if settings.tls_ca_file and not settings.tls_verify:
        return [f"{named('tls_ca_file')}: set but {named('tls_verify')} is off"]
    files = f"{named('tls_ca_file')}, {named('tls_cert_file')}, {named('tls_key_file')}"
    try:
        build(settings)
    except ssl.SSLError as exc:
        why = exc.reason or exc
        return [f"{files}: {why} (expected PEM certificates and the certificate's key)"]
    except (OSError, ValueError) as exc:
        return [f"{files}: {exc}"]
    return []


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)  # follows a Secret volume's symlinks: a swap is a new inode
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class Watched(Generic[T]):
    """What `build` makes of some files, made again when they change. The files are looked at
    (stat) at most once per `interval`, when `current()` is asked; a rebuild that fails keeps the
    previous value and is logged once per change. Origination and termination both use it."""

    def __init__(
        self,
        files: tuple[str, ...],
        build: Callable[[], T],
        interval: float,
        log: logging.Logger,
        name: str,
    ) -> None:
        self.files = tuple(path for path in files if path)
        self.build, self.interval, self.log, self.name = build, interval, log, name
        self.stamp = _stamp(self.files)
        self.value = build()
        self.checked = time.monotonic()

    def current(self) -> T:
        now = time.monotonic()
        if self.files and now - self.checked >= self.interval:
            self.checked = now
            stamp = _stamp(self.files)
            if stamp != self.stamp:
                self.stamp = stamp  # a half-written pair is tried again at the next change
                try:
                    self.value = self.build()
                    self.log.info("TLS files re-read", extra={"listener": self.name})
                except (OSError, ssl.SSLError, ValueError) as exc:
                    self.log.warning(
                        "TLS files changed but cannot be used, the previous ones stay: %s",
                        detail_of(exc),
                        extra={"listener": self.name},
                    )
        return self.value


class Origination:
    """TLS to the members of one listener; new connections use the files as they are now
    (see Watched), open ones keep theirs."""

    def __init__(self, settings: Config, log: logging.Logger, name: str) -> None:
        self.settings = settings
        files = (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
        self.watched = Watched(files, lambda: build(settings), settings.file_interval, log, name)

    def current(self) -> _Context:
        return self.watched.current()

    def server_name(self, member: Member) -> str:
        return self.settings.tls_server_name or member.host

    async def connect(
        self, factory: Callable[[], P], member: Member, limit: float
    ) -> tuple[asyncio.Transport, P]:
        """Connect to `member` and do the TLS handshake, both within `limit` seconds. A failed
        connect raises OSError or TimeoutError; a failed handshake is counted on the member and
        raised as HandshakeError. `factory`'s protocol is made after the handshake, given the TLS
        transport and whatever came after the handshake."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        async with asyncio.timeout_at(deadline):
            raw, _ = await resolver.connect(asyncio.Protocol, member.host, member.port)
        ctx, name = self.current(), self.server_name(member)
        early = Early()
        try:
            async with asyncio.timeout_at(deadline):
                transport = await loop.start_tls(raw, early, ctx, server_hostname=name)
        except (OSError, TimeoutError) as exc:
            raw.abort()
            reason, detail = reason_of(exc), detail_of(exc)
            failed(member, reason, detail)
            forget(exc)  # chained to the error below; its frames would hold the SSL buffers
            raise HandshakeError(reason, detail) from None
        except BaseException:
            raw.abort()
            raise
        assert transport is not None
        passed(member, transport, name)
        return transport, adopt(transport, early, factory)


def adopt(transport: asyncio.Transport, early: Early, factory: Callable[[], P]) -> P:
    """Give a transport fresh from its handshake to `factory`'s protocol, with what came
    after the handshake."""
    proto = factory()
    proto.connection_made(transport)
    transport.set_protocol(proto)
    early.hand_over(proto)
    return proto


class Early(asyncio.Protocol):
    """What a member sends between the end of the handshake and the hand-over to the real
    protocol (the loop may deliver it before the awaiting coroutine runs), passed on in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> bool:
        self.events.append(("eof", None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))

    def hand_over(self, proto: asyncio.BaseProtocol) -> None:
        for kind, value in self.events:
            if kind == "data":
                cast(asyncio.Protocol, proto).data_received(value)
            elif kind == "eof":
                cast(asyncio.Protocol, proto).eof_received()
            else:
                proto.connection_lost(value)
        self.events.clear()


def failed(member: Member, reason: str, detail: str) -> None:
    member.tls_failures[reason] += 1
    member.tls_error = f"{reason}: {detail}"


def passed(member: Member, transport: asyncio.BaseTransport, name: str) -> None:
    member.tls_error = ""
    member.tls_handshakes += 1
    sslobj: Any = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return
    if sslobj.session_reused:
        member.tls_resumed += 1
        return  # its session is the one offered (TLS 1.3: new tickets come later, at the end)
    if sslobj.version() != "TLSv1.3":  # a TLS 1.3 ticket comes after the handshake: at the end
        remember(sslobj, name)


def remember(sslobj: Any, name: str) -> None:
    """Keep the session of a connection for the next one to the same server name."""
    try:
        session, ctx = sslobj.session, sslobj.context
    except (AttributeError, ValueError):
        return
    if session is not None and isinstance(ctx, _Context):
        if len(ctx.sessions) >= MAX_SESSIONS and name not in ctx.sessions:
            ctx.sessions.clear()
            ctx.taken.clear()
        ctx.sessions[name] = session
        ctx.taken[name] = time.monotonic()


def remember_transport(transport: asyncio.BaseTransport | None) -> None:
    """At a connection's end (TLS 1.3 tickets come after the handshake): keep its session,
    unless it resumed one that is still fresh (see REFRESH_SECONDS)."""
    if transport is None:
        return
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None or not sslobj.server_hostname:
        return
    name, ctx = sslobj.server_hostname, sslobj.context
    if sslobj.session_reused and isinstance(ctx, _Context) and not ctx.due(name):
        return
    remember(sslobj, name)
