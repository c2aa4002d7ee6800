"""Rule 5: a background task that dies takes the sidecar down (exit 1, one line naming the task
and the error, no traceback), and a stalled loop turns /healthz to 503 naming it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sidecars.runtime import tasks
from tests.helpers import ROOT, free_port, http_get, stop_process, wait_until

pytestmark = pytest.mark.integration

FAULTY = Path(__file__).with_name("faulty_sidecar.py")


class Faulty:
    """tests/hostile/faulty_sidecar.py as a real process: a sidecar with one armed fault."""

    def __init__(self, fault: str, tmp: Path, env: Mapping[str, str]) -> None:
        name = fault.split(":")[0]
        self.trigger = tmp / "trigger"
        self.admin = free_port()
        self.err = tmp / "stderr.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith(name.upper() + "_")}
        full.update(env)
        full[f"{name.upper()}_ADMIN_ADDR"] = f"127.0.0.1:{self.admin}"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAULTY), fault, str(self.trigger)],
                env=full,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin}{path}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.err.read_text()
            return http_get(self.url("/readyz"), timeout=1.0)[0] == 200

        wait_until(ready, 20, "sidecar ready")
        assert http_get(self.url("/healthz"))[0] == 200

    def arm(self) -> float:
        self.trigger.touch()
        return time.monotonic()

    def lines(self) -> list[dict[str, Any]]:
        text = self.err.read_text(errors="replace")
        return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[list[Faulty]]:
    started: list[Faulty] = []
    yield started
    for f in started:
        stop_process(f.proc)


def _dies(f: Faulty, task: str, within: float) -> None:
    """Exit 1 within `within` s of arming, one error line naming `task` and the error."""
    armed = f.arm()
    code = f.proc.wait(timeout=within + 10)
    took = time.monotonic() - armed
    text = f.err.read_text(errors="replace")
    assert code == 1, text
    assert took < within, f"exited {took:.1f}s after the fault"
    assert "Traceback" not in text
    errors = [x for x in f.lines() if x["level"] == "error"]
    assert len(errors) == 1, text
    assert errors[0]["msg"].startswith(f"background task {task} died: ValueError: injected")
    assert errors[0]["task"] == task


@pytest.fixture
def member() -> Iterator[int]:
    """A port on which a member accepts connections (TCP health checks pass): accepted and
    closed by a thread, so that the checks (ten a second) never fill the listen backlog."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    def accept() -> None:
        with contextlib.suppress(OSError):  # the fixture closed the socket
            while True:
                sock.accept()[0].close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(5)


def _ambassador(tmp_path: Path, fault: str, faulty: list[Faulty], member: int) -> Faulty:
    env = {
        "AMBASSADOR_LISTEN": f"127.0.0.1:{free_port()}",
        "AMBASSADOR_UPSTREAMS": f"127.0.0.1:{member}",
        "AMBASSADOR_HEALTH_INTERVAL": "100ms",
        "AMBASSADOR_HEALTH_TIMEOUT": "100ms",
        "AMBASSADOR_STALL_TIMEOUT": "1s",
    }
    f = Faulty(fault, tmp_path, env)
    faulty.append(f)
    f.wait_ready()
    return f


def test_ambassador_dies_when_its_health_checker_dies(
    tmp_path: Path, faulty: list[Faulty], member: int
) -> None:
    """The health checker raising: the ambassador exits 1 within 3 s, naming the task."""
    f = _ambassador(tmp_path, "ambassador:health-raises", faulty, member)
    _dies(f, "health checks of listener default", within=3.0)


def test_logshipper_dies_when_its_reader_dies(tmp_path: Path, faulty: list[Faulty]) -> None:
    """The reader loop raising: the logshipper exits 1 within 3 s, naming the reader."""
    f = _logshipper(tmp_path, "logshipper:reader-raises", faulty)
    _dies(f, "reader", within=3.0)


def test_warloader_watch_dies_on_an_unexpected_error(tmp_path: Path, faulty: list[Faulty]) -> None:
    """--watch: handling a file event fails unexpectedly; the warloader exits 1 within 5 s
    instead of going on without watching."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.txt").write_bytes(b"v1")
    dest = tmp_path / "dest"
    dest.mkdir()
    env = {
        "WARLOADER_SOURCES": str(src / "app.txt"),
        "WARLOADER_DEST": str(dest),
        "WARLOADER_WATCH": "true",
    }
    f = Faulty("warloader:watch-raises", tmp_path, env)
    faulty.append(f)
    f.wait_ready()
    wait_until(lambda: (dest / "app.txt").exists(), 10, "first install")
    f.trigger.touch()

    def changed() -> bool:
        (src / "app.txt").write_bytes(b"v2")
        return f.proc.poll() is not None

    start = time.monotonic()
    wait_until(changed, 10, "warloader exited", every=0.5)
    assert f.proc.returncode == 1
    assert time.monotonic() - start < 5
    text = f.err.read_text(errors="replace")
    assert "Traceback" not in text
    errors = [x for x in f.lines() if x["level"] == "error"]
    assert len(errors) == 1 and errors[0]["task"] == "file watch", text


def _logshipper(tmp_path: Path, fault: str, faulty: list[Faulty]) -> Faulty:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        "LOGSHIPPER_PATHS": str(logs / "*.log"),
        "LOGSHIPPER_STATE_DIR": str(tmp_path / "state"),
        "LOGSHIPPER_ES_HOSTS": f"http://127.0.0.1:{free_port()}",
        "LOGSHIPPER_POLL_INTERVAL": "100ms",
        "LOGSHIPPER_STALL_TIMEOUT": "1s",
    }
    f = Faulty(fault, tmp_path, env)
    faulty.append(f)

    def alive() -> bool:
        assert f.proc.poll() is None, f.err.read_text()
        return http_get(f.url("/healthz"), timeout=1.0)[0] == 200

    wait_until(alive, 20, "logshipper alive")  # not ready: no Elasticsearch on that port
    return f


def test_a_stalled_reader_fails_healthz_naming_it(tmp_path: Path, faulty: list[Faulty]) -> None:
    """The reader loop stops turning while the process lives: /healthz turns 503 naming the
    reader within its period plus LOGSHIPPER_STALL_TIMEOUT (1 s), so the kubelet restarts it."""
    f = _logshipper(tmp_path, "logshipper:reader-hangs", faulty)
    armed = f.arm()

    def stalled() -> bool:
        return http_get(f.url("/healthz"), timeout=1.0)[0] == 503

    wait_until(stalled, 5, "/healthz 503")
    assert time.monotonic() - armed < 5
    status, body = http_get(f.url("/healthz"))
    assert status == 503 and b"reader made no progress" in body
    assert f.proc.poll() is None


def test_a_stalled_health_checker_fails_healthz(
    tmp_path: Path, faulty: list[Faulty], member: int
) -> None:
    """The ambassador's health round never ends: /healthz turns 503 naming the checker."""
    f = _ambassador(tmp_path, "ambassador:health-hangs", faulty, member)
    f.arm()
    wait_until(lambda: http_get(f.url("/healthz"))[0] == 503, 5, "/healthz 503")
    body = http_get(f.url("/healthz"))[1]
    assert b"health checks of listener default made no progress" in body


def test_drain_ends_tasks_without_a_failure(tmp_path: Path, faulty: list[Faulty]) -> None:
    """SIGTERM: every supervised task ends (cancelled or returned) and the exit is a clean 0
    with no error line; the fault is never armed."""
    f = _logshipper(tmp_path, "logshipper:reader-raises", faulty)
    f.proc.terminate()
    assert f.proc.wait(timeout=20) == 0
    assert not [x for x in f.lines() if x["level"] == "error"], f.err.read_text()


def test_the_service_itself_failing_is_one_line_too(tmp_path: Path, faulty: list[Faulty]) -> None:
    """Not a background task but the service's own start failing unexpectedly: exit 1 and one
    error line with the error, the traceback only at debug level."""
    (tmp_path / "trigger").touch()  # armed from the start
    env = {"ADAPTER_LISTEN": f"127.0.0.1:{free_port()}"}
    f = Faulty("adapter:start-raises", tmp_path, env)
    faulty.append(f)
    assert f.proc.wait(timeout=20) == 1
    text = f.err.read_text(errors="replace")
    errors = [x for x in f.lines() if x["level"] == "error"]
    assert [x["msg"] for x in errors] == ["sidecar failed: ValueError: injected fault"], text
    assert "Traceback" not in text


# --- the supervisor in-process: what counts as a death ----------------------------------------


def _run(body: Any) -> tuple[tasks.Supervisor, list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    log = logging.getLogger("tests.supervision")
    log.setLevel(logging.DEBUG)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log.handlers[:] = [handler]
    log.propagate = False
    sup = tasks.Supervisor(log, stall_after=0.05)

    async def main() -> None:
        tasks.install(sup)
        await body(sup)

    asyncio.run(main())
    return sup, records


def test_a_task_that_returns_early_is_a_death_unless_finite_or_draining() -> None:
    """Returning before the drain is a death (the loop is gone); a finite job may return, a
    cancelled task is normal, and once closing nothing is a death."""

    async def body(sup: tasks.Supervisor) -> None:
        async def quits() -> None:
            await asyncio.sleep(0)

        await tasks.spawn("start-up job", quits(), finite=True)
        cancelled = tasks.spawn("canceled loop", asyncio.sleep(10))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert sup.failure is None
        await tasks.spawn("sender", quits())
        await asyncio.sleep(0)

    sup, records = _run(body)
    assert sup.failure == "sender: returned, but it should run until the drain"
    assert [r.getMessage() for r in records if r.levelno == logging.ERROR] == [
        "background task sender died: returned, but it should run until the drain; "
        "exiting so that the container is restarted"
    ]


def test_heartbeats_name_the_stalled_loop_and_recover() -> None:
    """A loop that beats stays alive; one that stops beating past its bound is named."""

    async def body(sup: tasks.Supervisor) -> None:
        go = asyncio.Event()

        async def loop() -> None:
            while True:
                tasks.beat()
                await asyncio.sleep(0.01)
                if go.is_set():
                    await asyncio.Event().wait()

        task = tasks.spawn("poller", loop(), beat_every=0.02)
        await asyncio.sleep(0.2)
        assert sup.stalled() is None
        go.set()
        await asyncio.sleep(0.2)
        reason = sup.stalled()
        assert reason is not None and reason.startswith("poller made no progress")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert sup.stalled() is None  # a cancelled loop is no longer watched

    _run(body)
