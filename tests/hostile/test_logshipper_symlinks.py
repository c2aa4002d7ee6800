"""The application writes the log volume and is not trusted: symlinks out of it, FIFOs, sockets
and devices, and names swapped after the shipper followed them, must never make the shipper
read something outside the volume, block, or stop shipping the real logs."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, http_get, wait_until
from tests.logshipper_support import (
    BulkSink,
    admin_url,
    make_chain,
    metric,
    remove_chain,
    shipper_env,
    wait_metric,
)

pytestmark = pytest.mark.integration

SECRET = "TOKEN-do-not-ship"


def _secret(tmp_path: Path) -> Path:
    outside = tmp_path / "secrets"
    outside.mkdir()
    token = outside / "token"
    token.write_text(SECRET + "\n")
    return token


def _shipped(sink: BulkSink, text: str) -> bool:
    return any(text in m for m in sink.messages())


def test_symlinks_out_of_the_volume_are_not_followed_inside_ones_are(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Default policy `inside`: a file symlink and a directory symlink resolving outside the
    globs' directory are skipped (one warning, metric `outside_roots`); a symlink to a file
    inside the volume is shipped."""
    logs, state = dirs
    token = _secret(tmp_path)
    (logs / "token.log").symlink_to(token)
    (logs / "sub").symlink_to(token.parent)  # a directory symlink for the ** glob
    (token.parent / "deep.log").write_text(SECRET + " deep\n")
    (logs / "data").mkdir()
    (logs / "data" / "inner.txt").write_text("inner line\n")
    (logs / "inner.log").symlink_to(logs / "data" / "inner.txt")
    (logs / "app.log").write_text("app line\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", paths=f"{logs}/**/*.log")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_until(
                lambda: {"app line", "inner line"} <= set(sink.messages()), 30, "inside lines"
            )
            wait_metric(
                admin, "logshipper_file_errors_total", 'reason="outside_roots"', 2, "refused"
            )
            assert not _shipped(sink, SECRET)
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()
            refused = [r for r in proc.log_lines() if "outside the watched" in r.get("msg", "")]
            assert len(refused) == 1  # rate limited: one line for both


@pytest.mark.parametrize(("policy", "shipped"), [("never", set()), ("any", {SECRET})])
def test_follow_symlinks_never_and_any(
    dirs: tuple[Path, Path], tmp_path: Path, policy: str, shipped: set[str]
) -> None:
    """`never` skips every file that is a symlink (even to a file inside); `any` follows all
    of them, as before (the operator's explicit choice)."""
    logs, state = dirs
    (logs / "token.log").symlink_to(_secret(tmp_path))
    (logs / "inner.txt").write_text("inner line\n")
    (logs / "inner.log").symlink_to(logs / "inner.txt")
    (logs / "app.log").write_text("app line\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", follow_symlinks=policy)
        with SidecarProcess("logshipper", env=env) as proc:
            want = {"app line"} | shipped | (set() if policy == "never" else {"inner line"})
            wait_until(lambda: want <= set(sink.messages()), 30, "lines")
            if policy == "never":
                wait_metric(admin_url(env), "logshipper_file_errors_total", "symlink", 2, "skip")
            assert set(sink.messages()) == want
            assert proc.terminate() == 0


def test_a_followed_file_replaced_by_a_symlink_out_is_not_followed(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """app.log is shipped, then the app swaps it for a symlink to the token: the old file is
    finished, the token is never read, and later real files are still shipped."""
    logs, state = dirs
    token = _secret(tmp_path)
    (logs / "app.log").write_text("before swap\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: "before swap" in sink.messages(), 30, "first line")
            os.rename(logs / "app.log", logs / "old.txt")
            (logs / "app.log").symlink_to(token)
            wait_metric(admin_url(env), "logshipper_file_errors_total", "outside_roots", 1, "swap")
            (logs / "later.log").write_text("later line\n")
            wait_until(lambda: "later line" in sink.messages(), 30, "later file")
            assert not _shipped(sink, SECRET)
            assert proc.terminate() == 0


def test_fifo_socket_and_device_are_skipped_without_blocking(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A FIFO (no writer: opening it would block), a socket and a character device matching
    the glob are skipped with one warning and counted as `not_regular`; regular files go on."""
    logs, state = dirs
    os.mkfifo(logs / "fifo.log")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(logs / "sock.log"))
    devices = 0
    if os.geteuid() == 0:
        os.mknod(logs / "zero.log", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
        devices = 1
    (logs / "app.log").write_text("app line\n")
    try:
        with BulkSink() as sink:
            env = shipper_env(logs, state, sink.url, "logs")
            with SidecarProcess("logshipper", env=env) as proc:
                admin = admin_url(env)
                wait_until(lambda: "app line" in sink.messages(), 30, "app line")
                wait_metric(admin, "logshipper_file_errors_total", "not_regular", 2 + devices, "x")
                (logs / "more.log").write_text("more line\n")
                wait_until(lambda: "more line" in sink.messages(), 30, "more line")
                assert sink.messages().count("app line") == 1 and sink.count() == 2
                assert proc.terminate() == 0
                skipped = [r for r in proc.log_lines() if r.get("msg", "").startswith("skipping")]
                assert len(skipped) == 1  # one warning per reason and 30 s
    finally:
        sock.close()


def _open_paths(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return out


def test_a_closed_file_replaced_by_a_fifo_does_not_hang_the_shipper(
    dirs: tuple[Path, Path],
) -> None:
    """With more files than LOGSHIPPER_MAX_OPEN_FILES, idle ones are closed and reopened by
    name when they change. A name turned into a FIFO must not be opened blocking: the
    shipper keeps shipping the other files and answers /healthz."""
    logs, state = dirs
    names = [logs / f"f{i}.log" for i in range(8)]
    for i, path in enumerate(names):
        path.write_text(f"first {i}\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", max_open_files="4")
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: sink.count() == 8, 30, "first lines")
            wait_until(
                lambda: len({str(p) for p in names} - _open_paths(proc.proc.pid)) >= 4,
                10,
                "idle files closed",
            )
            closed = sorted({str(p) for p in names} - _open_paths(proc.proc.pid))
            victim = Path(closed[0])
            victim.unlink()
            os.mkfifo(victim)
            os.utime(victim)  # an event for the name
            wait_until(lambda: sink.count() == 8, 1, "settled")
            keep = [p for p in names if p != victim]
            for i, path in enumerate(keep):
                with path.open("a") as f:
                    f.write(f"second {i}\n")
            wait_until(lambda: sink.count() == 8 + len(keep), 30, "second lines")
            assert http_get(admin_url(env) + "/healthz")[0] == 200
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr()


def test_files_followed_are_bounded_by_max_files(dirs: tuple[Path, Path]) -> None:
    """3,000 tiny files match the glob with LOGSHIPPER_MAX_FILES=100: at most 100 are
    followed, the rest wait (metric `logshipper_files_waiting`, one warning); they are
    shipped once followed files are deleted and dropped."""
    logs, state = dirs
    for i in range(3000):
        (logs / f"t{i:05d}.log").write_text(f"tiny {i}\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", max_files="100", rotate_wait="100ms")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_until(lambda: sink.count() >= 100, 30, "first 100")
            wait_metric(admin, "logshipper_files_waiting", "", 2900, "waiting")
            assert metric(admin, "logshipper_files_tracked") <= 100
            assert sink.count() == 100
            for path in logs.iterdir():  # the app deletes what was shipped
                if f"tiny {int(path.stem[1:])}" in sink.messages():
                    path.unlink()
            wait_until(lambda: sink.count() >= 200, 30, "next 100")
            assert metric(admin, "logshipper_files_tracked") <= 100
            assert proc.terminate() == 0
            waits = [r for r in proc.log_lines() if "LOGSHIPPER_MAX_FILES" in r.get("msg", "")]
            assert len(waits) == 1


def test_a_tree_built_to_hurt_glob_does_not_stop_the_shipper(dirs: tuple[Path, Path]) -> None:
    """Under a `**` glob the app makes directories 1,500 deep (glob raised RecursionError:
    the reader died, exit 1, in a restart loop), a symlink loop and 24 directories each
    linking twice to the next (2^24 paths: a rescan that never ends). Lines keep flowing."""
    logs, state = dirs
    make_chain(logs, 1500, "deep.log")
    for i in range(25):
        (logs / f"d{i}").mkdir()
    for i in range(24):
        (logs / f"d{i}" / "a").symlink_to(f"../d{i + 1}")
        (logs / f"d{i}" / "b").symlink_to(f"../d{i + 1}")
    (logs / "loop").symlink_to(".")
    (logs / "app.log").write_text("first\n")
    try:
        with BulkSink() as sink:
            env = shipper_env(logs, state, sink.url, "logs", paths=f"{logs}/**/*.log")
            with SidecarProcess("logshipper", env=env) as proc:
                wait_until(lambda: "first" in sink.messages(), 30, "first line")
                (logs / "d24" / "new.log").write_text("second\n")  # found by a rescan
                wait_until(lambda: "second" in sink.messages(), 30, "second line")
                assert proc.proc.poll() is None
                assert proc.terminate() == 0
                assert "Traceback" not in proc.stderr()
    finally:
        remove_chain(logs / "a", 1500)


def test_a_file_name_that_is_not_utf8_is_shipped_under_a_shown_name(
    dirs: tuple[Path, Path],
) -> None:
    """The app names a file with bytes that are not UTF-8 (and a newline): it is shipped, its
    `log.file.path` shows U+FFFD, and the checkpoint and /metrics (lag per path) still work
    (before: the reader died on serializing the name, exit 1, restart loop)."""
    logs, state = dirs
    name = os.path.join(os.fsencode(logs), b"bad\xff\nname.log")
    with open(name, "wb") as f:
        f.write(b"from a bad name\n")
    (logs / "ok.log").write_text("ok line\n")
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: sink.count() == 2, 30, "both files")
            paths = {d["log"]["file"]["path"] for d in sink.docs.values()}
            assert f"{logs}/bad\ufffd\nname.log" in paths
            wait_until(lambda: (state / "checkpoints.json").exists(), 10, "checkpoint")
            assert http_get(admin_url(env) + "/metrics")[0] == 200
            assert proc.terminate() == 0
