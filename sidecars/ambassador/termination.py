"""TLS termination on a listener (tcp and http mode): the app speaks TLS to the ambassador. The
server context is rebuilt when its files change (tls.Watched, as origination's), every
handshake has a deadline, and failed ones are counted by reason."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sidecars.ambassador.config import Config
from sidecars.ambassador.tls import Early, Watched, adopt, detail_of
from sidecars.runtime.memory import AfterBursts, forget

if TYPE_CHECKING:
    from sidecars.ambassador.metrics import Metrics

# The values of the `reason` label of ambassador_listener_tls_handshake_failures (bounded).
REASONS = (
    "timeout", "closed", "protocol", "client_refused", "no_certificate", "verify_failed",
    "expired", "other",
)  # fmt: skip
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
_SETTINGS = (
    "listen_tls_cert_file", "listen_tls_key_file", "listen_tls_client_ca_file",
    "listen_tls_min_version", "listen_tls_handshake_timeout", "file_interval",
)  # fmt: skip
P = TypeVar("P", bound=asyncio.BaseProtocol)


def reason_of(exc: BaseException) -> str:
    """Why a client's handshake failed, one of REASONS."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):  # the client's certificate
        return "expired" if exc.verify_code == _EXPIRED else "verify_failed"
    if isinstance(exc, ssl.SSLError):
        why = str(exc.reason or "")
        if why == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "no_certificate"
        if "ALERT" in why:  # the client refused the handshake: our certificate, mostly
            return "client_refused"
        if "VERSION" in why or "PROTOCOL" in why or why in ("HTTP_REQUEST", "NO_SHARED_CIPHER"):
            return "protocol"
        if "EOF" in why or isinstance(exc, ssl.SSLEOFError):
            return "closed"
        return "other"
    if isinstance(exc, (ConnectionError, EOFError)):
        return "closed"
    return "other"


def build(settings: Config) -> ssl.SSLContext:
    """The server context of `settings` (OSError, ssl.SSLError or ValueError when a file does
    not hold what it should)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[settings.listen_tls_min_version]
    ctx.load_cert_chain(settings.listen_tls_cert_file, settings.listen_tls_key_file)
    if settings.listen_tls_client_ca_file:
        ctx.load_verify_locations(cafile=settings.listen_tls_client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def termination_settings(settings: Config) -> tuple[object, ...]:
    """The settings a Termination is built from."""
    return tuple(getattr(settings, name) for name in _SETTINGS)


def problems(settings: Config, named: Callable[[str], str]) -> list[str]:
    """What makes the listener's TLS settings impossible, one line each (empty when fine or
    termination is off); `named` gives a setting's name as the user wrote it."""
    cert, key = settings.listen_tls_cert_file, settings.listen_tls_key_file
    if not cert and not key:
        if settings.listen_tls_client_ca_file:
            why = f"set but {named('listen_tls_cert_file')} is not"
            return [f"{named('listen_tls_client_ca_file')}: {why}"]
        return []
    if not cert or not key:
        both = f"{named('listen_tls_cert_file')} and {named('listen_tls_key_file')}"
        return [f"{both}: give both (TLS on the listener) or neither"]
    if settings.mode not in ("tcp", "http"):
        return [f"{named('listen_tls_cert_file')}: TLS on the listener is offered in tcp and http"
                " mode only"]  # fmt: skip
    names = ("listen_tls_cert_file", "listen_tls_key_file", "listen_tls_client_ca_file")
    files = ", ".join(named(n) for n in names)
    try:
        build(settings)
    except ssl.SSLError as exc:
        return [
            f"{files}: {exc.reason or exc} (expected PEM certificates and the certificate's key)"
        ]
    except (OSError, ValueError) as exc:
        return [f"{files}: {exc}"]
    return []


def terminates(settings: Config) -> bool:
    return bool(settings.listen_tls_cert_file)


class Termination:
    """TLS from the app to one listener."""

    def __init__(self, settings: Config, log: logging.Logger, name: str, metrics: Metrics) -> None:
        self.settings, self.name = settings, name
        self.failures = metrics.client_tls_failures
        self.passed = metrics.client_tls_handshakes.labels(name)
        files = (
            settings.listen_tls_cert_file,
            settings.listen_tls_key_file,
            settings.listen_tls_client_ca_file,
        )
        self.watched = Watched(files, lambda: build(settings), settings.file_interval, log, name)
        self.log = log
        self.bursts = AfterBursts(log)

    async def accept(
        self, raw: asyncio.Transport, hold: Holding, factory: Callable[[], P]
    ) -> tuple[asyncio.Transport, P] | None:
        """The server side of the handshake on `raw` (its protocol `hold`), within the
        handshake timeout; then `factory`'s protocol gets the TLS transport. None when it
        failed: counted, logged at debug, `raw` aborted."""
        self.bursts.started()
        try:
            return await self._handshake(raw, hold, factory)
        finally:
            self.bursts.done()

    async def _handshake(
        self, raw: asyncio.Transport, hold: Holding, factory: Callable[[], P]
    ) -> tuple[asyncio.Transport, P] | None:
        loop = asyncio.get_running_loop()
        limit = self.settings.listen_tls_handshake_timeout
        if hold.lost or raw.is_closing():
            self.failures.labels(self.name, "closed").inc()
            return None
        early = Early()
        shake = loop.create_task(
            loop.start_tls(
                raw,
                early,
                self.watched.current(),
                server_side=True,
                ssl_handshake_timeout=limit + 1.0,  # ours comes first, as a TimeoutError
            )
        )
        # uvloop may start reading after connection_made, whose pause then does nothing: what
        # reached `hold` before start_tls took the transport over goes to the TLS layer first
        # (see _feed: it runs once start_tls's own first callbacks have)
        loop.call_soon(loop.call_soon, _feed, raw, hold)
        try:
            async with asyncio.timeout(limit):
                transport = await shake
        except (OSError, TimeoutError, EOFError) as exc:
            raw.abort()
            reason = reason_of(exc)
            self.failures.labels(self.name, reason).inc()
            self.log.debug(
                "client TLS handshake failed (%s): %s",
                reason,
                detail_of(exc),
                extra={"listener": self.name},
            )
            forget(exc)  # its frames hold `shake`, which holds it: a cycle of buffers
            return None
        except BaseException:
            raw.abort()
            raise
        if transport is None:  # the loop gave no transport: the connection is gone
            raw.abort()
            self.failures.labels(self.name, "closed").inc()
            return None
        self.passed.inc()
        return transport, adopt(transport, early, factory)


MAX_HELD = 64 * 1024  # bytes of a client read before its handshake began, at most


class Holding(asyncio.Protocol):
    """A client before its handshake: reading paused, what was read anyway kept for the TLS
    layer (bounded: a client sending more than a ClientHello before any answer is cut)."""

    def __init__(self) -> None:
        self.held = bytearray()
        self.lost = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.held += data
        if len(self.held) > MAX_HELD and self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _feed(raw: asyncio.Transport, hold: Holding) -> None:
    """Give what `hold` read to the protocol now reading `raw` (the loop's TLS layer, a
    buffered protocol in both asyncio and uvloop). Runs right after start_tls's own first
    callbacks, before the loop polls for more input."""
    data, hold.held = bytes(hold.held), bytearray()
    if not data or raw.is_closing() or raw.get_protocol() is hold:
        return
    proto: Any = raw.get_protocol()
    if hasattr(proto, "get_buffer"):  # uvloop's does not subclass asyncio.BufferedProtocol
        view = memoryview(data)
        while view:
            buf = memoryview(proto.get_buffer(len(view)))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            proto.buffer_updated(n)
            view = view[n:]
    else:
        proto.data_received(data)
