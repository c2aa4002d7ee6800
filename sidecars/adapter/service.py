"""adapter assembly: settings -> service wired into the shared runtime."""

from __future__ import annotations

import asyncio
import ssl

from sidecars.adapter import rules as rules_mod
from sidecars.adapter import server
from sidecars.adapter.appclient import AppClient, AuthFile, CredentialError
from sidecars.adapter.config import Config
from sidecars.adapter.forward import Forwarder
from sidecars.adapter.health import Answer, HealthFromMetrics, Target
from sidecars.adapter.metrics import AdapterMetrics
from sidecars.adapter.reverse import HealthProbe, Probe, ProbeCollector
from sidecars.adapter.singleflight import SingleFlight
from sidecars.runtime import ConfigError, Runtime, Sidecar
from sidecars.runtime.http.server import Route, Server
from sidecars.runtime.urls import parse_http_url

Flights = list[SingleFlight[Answer] | SingleFlight[Probe]]


def _check(config: Config) -> list[rules_mod.Rule]:
    """Cross-field validation and the rules; ConfigError lists every problem."""
    problems: list[str] = []
    rules: list[rules_mod.Rule] = []
    try:
        rules = rules_mod.load(config.rules)
    except rules_mod.RuleError as exc:
        shown = config.rules if len(config.rules) <= 60 else config.rules[:57] + "..."
        problems.append(f"ADAPTER_RULES={shown!r}: {exc}")
    own = {"health-from-metrics": config.health_path, "metrics-from-health": config.metrics_path}
    served = [p for p, _ in config.paths]
    for path in sorted({p for p in served if served.count(p) > 1 or p == own.get(config.mode)}):
        problems.append(f"ADAPTER_PATHS={path!r}: this path is already served")
    if config.mode == "paths" and not config.paths:
        problems.append("ADAPTER_PATHS='': expected at least one /path=/app/path in paths mode")
    if rules and config.mode != "health-from-metrics":
        problems.append(f"ADAPTER_RULES: rules need mode health-from-metrics, not {config.mode}")
    if problems:
        raise ConfigError(problems)
    return rules


def _client(config: Config) -> AppClient:
    """The client to the app; ConfigError when the CA or auth file is unusable."""
    problems: list[str] = []
    auth = None
    if config.auth_file:
        auth = AuthFile(config.auth_file)
        try:
            auth.read()
        except CredentialError as exc:
            problems.append(f"ADAPTER_AUTH_FILE={config.auth_file!r}: {exc}")
    try:
        client = AppClient(config.target, ca_file=config.ca_file, auth=auth)
    except (ssl.SSLError, OSError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        problems.append(f"ADAPTER_CA_FILE={config.ca_file!r}: cannot load it as PEM CAs: {why}")
    if config.ca_file and not config.target.startswith("https://"):
        problems.append(f"ADAPTER_CA_FILE={config.ca_file!r}: needs an https:// ADAPTER_TARGET")
    if problems:
        raise ConfigError(problems)
    return client


class Adapter:
    """Serves the translated endpoint and the mapped paths on ADAPTER_LISTEN."""

    def __init__(self, config: Config, rt: Runtime) -> None:
        self.config, self.rt = config, rt
        self.rules = _check(config)
        self.metrics = AdapterMetrics(rt.registry)
        self.app_client = _client(config)

    async def run(self, stopping: asyncio.Event) -> int:
        cfg = self.config
        routes, flights = self._routes()
        count = self.metrics.requests
        srv = Server(
            routes, self.rt.log, lambda route, code: count.labels(route, code).inc(), "adapter"
        )
        try:
            try:
                await srv.start(*cfg.listen)
            except OSError as exc:
                self.rt.log.error("cannot listen on %s:%d: %s", *cfg.listen, exc.strerror)
                return 1
            listen = f"{cfg.listen[0]}:{cfg.listen[1]}"
            self.rt.log.info("serving", extra={"listen": listen, "mode": cfg.mode})
            self.rt.readiness.set(True)
            await stopping.wait()
        finally:
            await srv.stop()
            for flight in flights:
                await flight.close()
            await self.app_client.close()
        return 0

    def _routes(self) -> tuple[dict[str, Route], Flights]:
        cfg, metrics = self.config, self.metrics
        routes: dict[str, Route] = {}
        flights: Flights = []
        on_app = parse_http_url(cfg.target).target
        if cfg.mode == "health-from-metrics":
            target = Target(on_app, cfg.timeout, cfg.max_bytes)
            evaluator = rules_mod.Evaluator(self.rules)
            health = HealthFromMetrics(self.app_client, target, evaluator, metrics, self.rt.log)
            answers = SingleFlight(health.scrape, cfg.cache)
            flights.append(answers)
            routes[cfg.health_path] = server.HealthRoute(answers, metrics)
        elif cfg.mode == "metrics-from-health":
            probe = HealthProbe(self.app_client, on_app, cfg.timeout, cfg.max_bytes, metrics)
            probes = SingleFlight(probe.probe, cfg.cache)
            flights.append(probes)
            collector = ProbeCollector(cfg.metric_prefix)
            routes[cfg.metrics_path] = server.MetricsRoute(probes, collector, metrics)
        for served, mapped in cfg.paths:
            forwarder = Forwarder(self.app_client, mapped, cfg.timeout, cfg.max_bytes)
            routes[served] = server.ForwardRoute(forwarder, metrics)
        return routes, flights


SIDECAR = Sidecar(
    name="adapter",
    summary="Serve /health for a monitoring system from the app's /metrics, and the reverse.",
    config=Config,
    admin_port=9183,
    build=Adapter,
)
