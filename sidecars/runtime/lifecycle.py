"""Run a sidecar: settings, logging, admin server, signals, and a drain bounded in time."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, Protocol, TypeVar

from sidecars import __version__
from sidecars.runtime import admin, checks, logs, tasks
from sidecars.runtime.metrics import Gauge, ProcessCollector, Registry
from sidecars.runtime.settings import (
    EXIT_CONFIG,
    ConfigError,
    boolean,
    build_parser,
    choice,
    duration,
    host_port,
    load,
    redacted,
    setting,
    unknown_variables,
    verify,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_FORCED = 130


@dataclass(frozen=True, slots=True)
class CommonConfig:
    """Settings every sidecar has; each sidecar's config class extends this one."""

    log_level: str = setting(
        "info",
        "minimum level of the JSON log lines on stderr",
        choice("debug", "info", "warning", "error"),
        metavar="LEVEL",
    )
    admin_addr: tuple[str, int] = setting(
        "0.0.0.0:9180",
        "address of the admin server (/healthz, /readyz, /metrics)",
        host_port("0.0.0.0"),
        metavar="HOST:PORT",
        check=checks.local_address,
    )
    shutdown_timeout: float = setting(
        "20s",
        "longest graceful drain after SIGTERM (keep it below the pod's grace period)",
        duration(0.0, 3600.0),
        metavar="DURATION",
    )
    stall_timeout: float = setting(
        "60s",
        "/healthz fails when a supervised loop made no progress for this long beyond its period",
        duration(0.1, 86400.0),
        metavar="DURATION",
    )
    metrics_created: bool = setting(
        "false",
        "also export the _created series (start time) of each counter and histogram",
        boolean,
        metavar="BOOL",
    )


@dataclass(slots=True)
class Runtime:
    """What the runtime hands a sidecar: its logger, metrics registry, readiness and admin app."""

    name: str
    log: logging.Logger
    registry: Registry
    readiness: admin.Readiness
    admin_app: admin.AdminApp


class Service(Protocol):
    """A sidecar's job. `run` returns an exit code: on its own (an init container is done) or
    once `stopping` is set and the drain has finished."""

    async def run(self, stopping: asyncio.Event) -> int: ...


C = TypeVar("C", bound=CommonConfig)


@dataclass(frozen=True)
class Sidecar(Generic[C]):
    """Ties a sidecar's name, settings and service together; `main()` is its entry point."""

    name: str
    summary: str
    config: type[C]
    admin_port: int
    build: Callable[[C, Runtime], Service]
    defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.name.upper()

    def load_config(self, argv: Sequence[str], env: Mapping[str, str]) -> C:
        return load(self.config, self.prefix, argv, env, self._defaults())

    def _defaults(self) -> dict[str, str]:
        return {"admin_addr": f"0.0.0.0:{self.admin_port}", **self.defaults}

    def main(
        self, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> NoReturn:
        _hold_early_signals()
        argv = list(sys.argv[1:] if argv is None else argv)
        env = os.environ if env is None else env
        if "-h" in argv or "--help" in argv:
            parser = build_parser(
                self.config, f"sidecar-{self.name}", self.prefix, self.summary, self._defaults()
            )
            parser.print_help()
            raise SystemExit(EXIT_OK)
        if "--version" in argv:
            print(f"sidecar-{self.name} {__version__}")
            raise SystemExit(EXIT_OK)
        try:
            config = self.load_config(argv, env)
            problems = verify(config, self.prefix)
            if problems:
                raise ConfigError(problems)
        except ConfigError as exc:
            for problem in exc.problems:
                sys.stderr.write(f"{self.name}: bad setting {problem}\n")
            raise SystemExit(EXIT_CONFIG) from None
        log = logs.setup(self.name, config.log_level)
        for var in unknown_variables(self.config, self.prefix, env):
            log.warning("unknown setting %s ignored (typo?)", var)
        raise SystemExit(_run_loop(self, config, log))


_early: list[int] = []


def _hold_early_signals() -> None:
    """Until the loop's handlers take over, remember SIGTERM/SIGINT instead of dying: a pod
    stopped while its sidecar starts still gets a clean exit 0."""

    def remember(signum: int, _frame: object) -> None:
        _early.append(signum)
        if len(_early) > 1:
            os._exit(EXIT_FORCED)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, remember)


def _run_loop(sidecar: Sidecar[Any], config: CommonConfig, log: logging.Logger) -> int:
    try:
        import uvloop

        return int(uvloop.run(_serve(sidecar, config, log)))
    except ImportError:
        return asyncio.run(_serve(sidecar, config, log))


async def _serve(sidecar: Sidecar[Any], config: CommonConfig, log: logging.Logger) -> int:
    registry = Registry(created=config.metrics_created)
    registry.register(ProcessCollector())
    info = Gauge(
        f"{sidecar.name}_build_info", "Version of this sidecar", ["version"], registry=registry
    )
    info.labels(__version__).set(1)
    readiness = admin.Readiness()
    supervisor = tasks.Supervisor(log, config.stall_timeout)
    tasks.install(supervisor)
    app = admin.build_app(readiness, registry, supervisor.stalled)
    rt = Runtime(sidecar.name, log, registry, readiness, app)
    try:
        service = sidecar.build(config, rt)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{sidecar.name}: bad setting {problem}\n")
        return EXIT_CONFIG
    # after the checks that need the service (its files, its listeners): a bad setting is the
    # only line
    log.info("starting", extra={"version": __version__, "config": redacted(config)})
    host, port = config.admin_addr
    try:
        runner = await admin.start(rt.admin_app, host, port)
    except OSError as exc:
        log.error("cannot serve the admin address %s:%d: %s", host, port, exc.strerror)
        return EXIT_FAILURE
    tasks.spawn("log summaries", _report_suppressed())
    try:
        return await _supervise(service, config.shutdown_timeout, readiness, log, supervisor)
    finally:
        await runner.cleanup()


async def _report_suppressed() -> None:
    while True:
        await asyncio.sleep(2.5)
        logs.flush()


async def _supervise(
    service: Service,
    drain_seconds: float,
    readiness: admin.Readiness,
    log: logging.Logger,
    supervisor: tasks.Supervisor | None = None,
) -> int:
    supervisor = supervisor or tasks.Supervisor(log, 60.0)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stopping.is_set():
            log.warning("second %s: exiting now without draining", name)
            os._exit(EXIT_FORCED)
        log.info("%s received: draining for at most %.1fs", name, drain_seconds)
        readiness.set(False, "shutting down")
        supervisor.closing = True
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    if _early:
        on_signal(_early[0])
    task = asyncio.create_task(service.run(stopping))
    stop_wait = asyncio.create_task(stopping.wait())
    died = asyncio.create_task(supervisor.failed.wait())
    try:
        await asyncio.wait({task, stop_wait, died}, return_when=asyncio.FIRST_COMPLETED)
        if supervisor.failure is not None:
            # logged by the supervisor; let the service unwind (bounded), then exit 1
            readiness.set(False, f"background task {supervisor.failure}")
            supervisor.closing = True
            task.cancel()
            await asyncio.wait({task}, timeout=drain_seconds)
            if task.done() and not task.cancelled():
                task.exception()  # seen: the first failure is the one that counts
            return EXIT_FAILURE
        if not task.done():
            try:
                async with asyncio.timeout(drain_seconds):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                log.error("drain did not finish within %.1fs: exiting", drain_seconds)
                return EXIT_FAILURE
        code = task.result()
    except Exception as exc:
        log.error("sidecar failed: %s", tasks.describe(exc))
        log.debug("traceback of the failure", exc_info=exc)
        return EXIT_FAILURE
    finally:
        supervisor.closing = True
        stop_wait.cancel()
        died.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        logs.flush(everything=True)
    log.info("stopped", extra={"exit_code": code})
    return code
