"""The logshipper's file events when the application works against them: inotify limits
exhausted, the event queue overflowed, the log directory replaced. Lines must still ship (by
polls and rescans), with one warning line, never a traceback or silent loss."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, inotify_limited, wait_until
from tests.logshipper_support import BulkSink, shipper_env

pytestmark = pytest.mark.integration

QUEUE = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
SLOW = {"poll_interval": "60s", "rescan_interval": "60s"}  # only events can be quick


@pytest.mark.parametrize(
    ("limit", "hint"),
    [
        ("max_inotify_watches", "watch limit"),
        ("max_inotify_instances", "instance limit"),
    ],
)
def test_at_an_inotify_limit_lines_ship_by_polling_with_one_warning(
    dirs: tuple[Path, Path], limit: str, hint: str
) -> None:
    """No watch can be added (or no inotify instance made): one warning naming the limit,
    then files are read every LOGSHIPPER_POLL_INTERVAL and new ones found by rescans, and the
    failed watch, retried at each rescan, is not logged again."""
    logs, state = dirs
    (logs / "app.log").write_text("first\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env, prefix=inotify_limited(limit)) as proc:
            wait_until(lambda: "first" in sink.messages(), 30, "the first line")
            with (logs / "app.log").open("a") as f:
                f.write("grown\n")
            (logs / "new.log").write_text("new file\n")
            wait_until(lambda: {"grown", "new file"} <= set(sink.messages()), 30, "polled lines")
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()
            lines = proc.log_lines()
    warnings = [r for r in lines if r["msg"].startswith("file events unavailable")]
    assert len(warnings) == 1, warnings  # 300ms rescans retried it many times
    assert hint in warnings[0]["error"]


@pytest.mark.skipif(QUEUE > 1 << 20, reason="the kernel's event queue is too long to overflow")
def test_an_overflowed_event_queue_rescans_and_polls_at_once(dirs: tuple[Path, Path]) -> None:
    """The shipper is stopped while the application raises more events than the kernel
    queues; a file created and a line written after that raise none. Once it runs again the
    overflow makes it rescan and poll every file at once, not at the next 60s timer."""
    logs, state = dirs
    a, b, c = logs / "a.log", logs / "b.log", logs / "c.log"
    for f in (a, b, c):
        f.write_text(f"{f.stem} first\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", **SLOW)
        with SidecarProcess("logshipper", env=env) as proc:
            firsts = {"a first", "b first", "c first"}
            wait_until(lambda: firsts <= set(sink.messages()), 30, "the first lines")
            os.kill(proc.proc.pid, signal.SIGSTOP)
            try:
                for _ in range(QUEUE // 2 + 100):
                    os.utime(a)
                    os.utime(b)  # alternating: the kernel merges only repeats of the last event
                (logs / "new.log").write_text("after the overflow\n")
                with c.open("a") as f:
                    f.write("c grown\n")
            finally:
                os.kill(proc.proc.pid, signal.SIGCONT)
            wanted = {"after the overflow", "c grown"}
            wait_until(lambda: wanted <= set(sink.messages()), 10, "lines after the overflow")
            assert proc.terminate() == 0
            assert any(r["msg"].startswith("file events overflowed") for r in proc.log_lines())


def test_a_replaced_log_directory_is_watched_again(dirs: tuple[Path, Path]) -> None:
    """The log directory renamed away and a new one made in its place: the move wakes a
    rescan, which watches the new directory, so a file created in it ships at once (not at
    the next 60s rescan)."""
    logs, state = dirs
    (logs / "app.log").write_text("before\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", **SLOW)
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: "before" in sink.messages(), 30, "the first line")
            logs.rename(logs.with_name("old"))
            logs.mkdir()
            # the rescan woken by the move may come before or after this file: both ship it
            (logs / "first.log").write_text("first in the new directory\n")
            wait_until(lambda: "first in the new directory" in sink.messages(), 10, "first")
            (logs / "second.log").write_text("second in the new directory\n")
            wait_until(lambda: "second in the new directory" in sink.messages(), 10, "second")
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()
