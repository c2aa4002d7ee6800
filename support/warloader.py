"""The warloader for the tests and the benchmark: a real WAR, one init-container pass run
in-process with its own logger and registry."""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

from sidecars.runtime import admin
from sidecars.runtime.admin import Readiness
from sidecars.runtime.lifecycle import Runtime
from sidecars.runtime.metrics import Registry
from sidecars.warloader.service import SIDECAR, Loader


def war_bytes(files: Mapping[str, bytes | str] | None = None, web_xml: str = "<web-app/>") -> bytes:
    """A real WAR: WEB-INF/web.xml plus `files`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("WEB-INF/web.xml", web_xml)
        for name, data in (files or {"index.jsp": "<p>hello</p>"}).items():
            zf.writestr(name, data)
    return buf.getvalue()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@dataclass
class Run:
    code: int
    logs: Captured
    registry: Registry
    ready: bool

    def errors(self) -> list[str]:
        return self.logs.messages(logging.ERROR)

    def outcomes(self) -> list[str]:
        return [getattr(r, "outcome", "") for r in self.logs.records if hasattr(r, "outcome")]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


_counter = 0


def build(env: Mapping[str, str]) -> tuple[Loader, Captured, Registry, Readiness]:
    """A Loader as the runtime would build it, with its own logger and registry."""
    global _counter
    _counter += 1
    config = SIDECAR.load_config([], {"WARLOADER_RETRY_DELAY": "10ms", **env})
    log = logging.getLogger(f"test.warloader.{_counter}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    captured = Captured()
    log.handlers[:] = [captured]
    registry = Registry()
    readiness = Readiness()
    rt = Runtime("warloader", log, registry, readiness, admin.build_app(readiness, registry))
    return Loader(config, rt), captured, registry, readiness


async def run_loader(env: Mapping[str, str], stopping: asyncio.Event | None = None) -> Run:
    """Run one init-container pass in-process and return its exit code and logs."""
    loader, captured, registry, readiness = build(env)
    code = await loader.run(stopping or asyncio.Event())
    return Run(code, captured, registry, readiness.ready)
