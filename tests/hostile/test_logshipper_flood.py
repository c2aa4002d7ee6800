"""Floods the app can cause: rotation as fast as it can rename, and rotated files piling up.
Every line arrives once, memory stays flat and no fd is kept for a file that is done."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import (
    BulkSink,
    admin_url,
    checksum,
    metric,
    rss_bytes,
    shipper_env,
)

pytestmark = pytest.mark.integration


def _log_fds(pid: int, logs: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(logs))
        except OSError:
            continue
    return count


def test_rotation_as_fast_as_rename_loses_and_doubles_nothing(dirs: tuple[Path, Path]) -> None:
    """300 generations of 50 lines, each renamed to app.log.N (still matched) the moment it
    is written: 15,000 lines, each delivered once; at most LOGSHIPPER_MAX_OPEN_FILES fds
    open on the log volume (plus rotated files being finished), RSS under 150 MiB."""
    logs, state = dirs
    written: list[str] = []
    with BulkSink() as sink:
        env = shipper_env(
            logs, state, sink.url, "logs", paths=f"{logs}/app.log*", max_open_files="16"
        )
        with SidecarProcess("logshipper", env=env) as proc:
            peak_rss = peak_fds = 0
            for gen in range(300):
                app = logs / "app.log"
                lines = [f"gen {gen:03d} line {i:02d}" for i in range(50)]
                app.write_text("\n".join(lines) + "\n")
                written += lines
                os.rename(app, logs / f"app.log.{gen}")
                if gen % 20 == 0:
                    peak_rss = max(peak_rss, rss_bytes(proc.proc.pid))
                    peak_fds = max(peak_fds, _log_fds(proc.proc.pid, logs))

            def done() -> bool:
                nonlocal peak_rss
                peak_rss = max(peak_rss, rss_bytes(proc.proc.pid))
                return sink.count() >= len(written)

            wait_until(done, 60, "every line")
            got = sink.messages()
            assert len(got) == len(written) and checksum(got) == checksum(written)
            assert peak_rss < 150 << 20, peak_rss
            assert peak_fds <= 16 + 8, peak_fds
            assert proc.terminate() == 0


def test_files_rotated_away_are_let_go_after_the_rotate_wait(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """50 generations renamed out of the glob's sight (and so followed by fd): once each is
    read to its end and idle for LOGSHIPPER_ROTATE_WAIT, its fd is closed and it is no
    longer tracked, so rotation cannot pile up fds."""
    logs, state = dirs
    old = tmp_path / "rotated"
    old.mkdir()
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", rotate_wait="200ms")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            for gen in range(50):
                (logs / "app.log").write_text(f"gen {gen}\n")
                wait_until(lambda g=gen: f"gen {g}" in sink.messages(), 30, f"gen {gen}")
                os.rename(logs / "app.log", old / f"app.{gen}")
            wait_until(lambda: metric(admin, "logshipper_files_tracked") == 0, 10, "let go")
            wait_until(lambda: metric(admin, "logshipper_files_open") == 0, 10, "closed")
            wait_until(lambda: _log_fds(proc.proc.pid, old) == 0, 10, "no fd on a rotated file")
            assert sink.count() == 50
            assert proc.terminate() == 0
