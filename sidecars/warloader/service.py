"""warloader assembly: settings -> installer, metrics and progress, wired into the runtime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sidecars.runtime import ConfigError, Runtime, Sidecar
from sidecars.runtime.tasks import spawn
from sidecars.warloader.config import Config
from sidecars.warloader.errors import EXIT_FAILURE, EXIT_OK, LoadError, SourceConfigError
from sidecars.warloader.sources import Source
from sidecars.warloader.telemetry import Metrics, ProgressLog

if TYPE_CHECKING:
    import aiohttp

    from sidecars.warloader.install import Installer, Outcome, Plan
    from sidecars.warloader.registry import Registry


class Loader:
    """Installs every source once (init container: then exits with the outcome's code);
    with --watch keeps installing new versions until SIGTERM."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        self.config, self.rt, self.log = config, rt, rt.log
        self.sources = config.sources
        _validate(config)
        self.metrics = Metrics(rt.registry)
        self.progress = ProgressLog(rt.log, config.progress_interval)

    async def run(self, stopping: asyncio.Event) -> int:
        if not self.sources:
            self.log.info("no sources configured: nothing to install")
            self.rt.readiness.set(True)
            if self.config.watch:
                await stopping.wait()
            return EXIT_OK
        self.plan = _plan(self.config)
        from sidecars.warloader.install import Installer  # only with sources (hashlib, ctypes)

        done = asyncio.Event()
        async with self._session() as session:
            progress = spawn("progress log", self.progress.run(done), finite=True)
            try:
                installer = Installer(self.plan, session, self._auth, self.log)
                if session is not None and any(s.oci for s in self.sources):
                    installer.registry = self._registry(session)
                return await self._serve(installer, stopping)
            finally:
                done.set()
                await asyncio.gather(progress, return_exceptions=True)

    async def _serve(self, installer: Installer, stopping: asyncio.Event) -> int:
        first = asyncio.ensure_future(self.load_all(installer))
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not first.done():
            first.cancel()
            await asyncio.wait([first])
            self.log.error("stopped before every source was installed; nothing partial is left")
            return EXIT_FAILURE
        code = first.result()
        if code != EXIT_OK or not self.config.watch:
            return code
        self.rt.readiness.set(True)
        from sidecars.warloader import watch  # only in sidecar mode

        await watch.run(self, installer, stopping)
        return EXIT_OK

    async def load_all(self, installer: Installer) -> int:
        """Load every source, `concurrency` at a time; the exit code of the first failure in
        the configured order, or 0."""
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(src: Source) -> int:
            async with gate:
                return await self.load_one(installer, src)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(src)) for src in self.sources]
        codes = [t.result() for t in tasks]
        failed = [c for c in codes if c != EXIT_OK]
        if not failed:
            self.log.info("all sources in place", extra={"sources": len(codes)})
            self.rt.readiness.set(True)
        return failed[0] if failed else EXIT_OK

    async def load_one(self, installer: Installer, src: Source, quiet: bool = False) -> int:
        """Install one source; log one line (the outcome or the error); return its exit code."""
        from sidecars.warloader.copier import Progress

        name = installer.target(src)
        progress = Progress(str(src))
        self.progress.active.add(progress)
        try:
            outcome = await installer.install(src, progress)
        except LoadError as exc:
            self.metrics.artifacts.labels(exc.kind).inc()
            self.log.error(
                "%s: %s: %s",
                name,
                exc.kind.replace("_", " "),
                exc,
                extra={"artifact": name, "error": exc.kind, "exit_code": exc.exit_code},
            )
            return exc.exit_code
        except Exception:
            self.metrics.artifacts.labels("failure").inc()
            self.log.exception("%s: unexpected failure", name, extra={"artifact": name})
            return EXIT_FAILURE
        finally:
            self.progress.active.discard(progress)
            self.metrics.bytes.inc(max(progress.done, 0))
        self._record(outcome, quiet)
        return EXIT_OK

    def _record(self, o: Outcome, quiet: bool) -> None:
        self.metrics.artifacts.labels(o.action).inc()
        self.metrics.seconds.observe(o.seconds)
        if o.action == "installed":
            self.metrics.last_install.set_to_current_time()
        level = 10 if quiet and o.action == "unchanged" else 20
        self.log.log(
            level,
            "%s %s (%s)",
            o.action,
            o.name,
            o.why,
            extra={
                "artifact": o.name,
                "source": o.source,
                "outcome": o.action,
                "sha256": o.sha256 or None,
                "bytes": o.size,
                "seconds": round(o.seconds, 3),
                "rate": round(o.size / o.seconds) if o.seconds > 0 and o.size else None,
            },
        )

    def _auth(self, src: Source) -> Mapping[str, str]:
        """Headers for a download; secret files are read on every use (rotation)."""
        from sidecars.warloader.remote import basic

        if src.userinfo:
            return {"Authorization": basic(*src.userinfo)}
        if self.config.basic_auth_file:
            user, _, password = _secret(self.config.basic_auth_file, "basic_auth").partition(":")
            return {"Authorization": basic(user, password)}
        if self.config.bearer_token_file:
            token = _secret(self.config.bearer_token_file, "bearer_token")
            if not token.isascii() or not token.isprintable() or " " in token:
                raise SourceConfigError(
                    f"the bearer_token file {self.config.bearer_token_file} must hold one "
                    "token: printable ASCII, no spaces or line breaks"
                )
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _registry(self, session: aiohttp.ClientSession) -> Registry:
        from sidecars.warloader.oci import LOOPBACK
        from sidecars.warloader.registry import Registry  # only with oci:// sources

        c = self.config
        if remote := [r for r in c.plain_http_registries if r != LOOPBACK]:
            self.log.warning(
                "plain http to registries %s (WARLOADER_PLAIN_HTTP_REGISTRIES)", ", ".join(remote)
            )
        return Registry(
            session,
            self.plan.http,
            c.plain_http_registries,
            c.max_manifest_size,
            self._registry_auth,
        )

    def _registry_auth(self) -> tuple[str, str] | None:
        """user:password for registries, read on every use (rotation); None: anonymous."""
        if not self.config.registry_auth_file:
            return None
        user, _, password = _secret(self.config.registry_auth_file, "registry_auth").partition(":")
        return user, password

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession | None]:
        """An HTTP client only when a URL source is configured: a path-only init container
        never imports aiohttp (about 16 MiB of memory and 0.15 s of start-up)."""
        if not any(s.is_url for s in self.sources):
            yield None
            return
        from sidecars.warloader.fetch import client_session

        if not self.config.tls_verify:
            self.log.warning("TLS certificate verification is off (WARLOADER_TLS_VERIFY=false)")
        c = self.config
        async with client_session(c.ca_file, c.tls_verify, c.timeout, c.concurrency) as session:
            yield session


def _plan(c: Config) -> Plan:
    from sidecars.warloader.fsops import Modes
    from sidecars.warloader.install import Plan
    from sidecars.warloader.remote import HttpPolicy
    from sidecars.warloader.safety import Limits

    uid, gid = c.owner
    return Plan(
        dest=Path(c.dest),
        extract=c.extract,
        modes=Modes(c.file_mode, c.dir_mode, uid, gid),
        limits=Limits(c.max_extract_size, c.max_extract_files, c.max_extract_ratio),
        http=HttpPolicy(
            c.max_download_size,
            c.max_attempts,
            c.retry_delay,
            c.download_min_rate,
            c.download_min_rate_window,
            c.download_deadline,
        ),
    )


def _validate(config: Config) -> None:
    problems = []
    names: dict[str, int] = {}
    for i, src in enumerate(config.sources, 1):
        if src.problem:
            problems.append(f"WARLOADER_SOURCES item {i} ({src}): {src.problem}")
            continue
        name = src.target_name(src.extracting(config.extract))
        if name in names:
            problems.append(
                f"WARLOADER_SOURCES item {i} ({src}): installs as {name!r} like item {names[name]}"
                " (add #name=<entry name>)"
            )
        names[name] = i
    if not config.dest.startswith("/"):
        problems.append(f"WARLOADER_DEST={config.dest!r}: expected an absolute path")
    if config.ca_file and (why := _ca_problem(config.ca_file)):
        problems.append(f"WARLOADER_CA_FILE={config.ca_file!r}: {why}; expected a PEM CA bundle")
    if problems:
        raise ConfigError(problems)


def _ca_problem(path: str) -> str | None:
    """Why the CA bundle at `path` cannot be used, or None."""
    import ssl  # only with a CA file

    try:
        ssl.create_default_context(cafile=path)
    except OSError as exc:  # ssl.SSLError is an OSError too
        return getattr(exc, "reason", None) or exc.strerror or str(exc)
    return None


def _secret(path: str, what: str) -> str:
    from sidecars.runtime.documents import read_bounded  # only with secret files (yaml inside)

    try:  # bounded, and a FIFO swapped in must not block the loop
        return read_bounded(path).decode("utf-8").strip()
    except (ValueError, UnicodeDecodeError) as exc:
        why = str(exc).removeprefix("cannot read: ")
        raise SourceConfigError(f"cannot read the {what} file {path}: {why}") from None


SIDECAR = Sidecar(
    name="warloader",
    summary="Install artifacts (e.g. a WAR) into the pod's shared volume, atomically and verified.",
    config=Config,
    admin_port=9184,
    build=Loader,
)
