"""--watch over path sources when the application works against file events: inotify limits
used up (polling takes over, one warning), a source's directory replaced (watched again), a
link loop planted in a source tree (never watched through)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, free_port, inotify_limited, wait_until
from tests.warloader_support import war_bytes

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, sources: str, poll: str) -> tuple[dict[str, str], str]:
    port = free_port()
    env = {
        "WARLOADER_SOURCES": sources,
        "WARLOADER_DEST": str(tmp_path / "webapps"),
        "WARLOADER_POLL_INTERVAL": poll,
        "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{port}",
    }
    return env, f"http://127.0.0.1:{port}/readyz"


def _replace(path: Path, data: bytes) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_bytes(data)
    staged.rename(path)


def _installed(path: Path, data: bytes) -> bool:
    return path.exists() and path.read_bytes() == data


def test_with_no_inotify_watch_left_path_sources_are_polled(tmp_path: Path) -> None:
    """The inotify watch limit is reached (run in a user namespace whose limit is 0): one
    warning naming the limit, then the source is looked at every WARLOADER_POLL_INTERVAL, so
    a new version is still installed; the watch, retried at each poll, is not logged again."""
    src = tmp_path / "image" / "app.war"
    src.parent.mkdir()
    src.write_bytes(war_bytes({"tag.txt": "v1"}))
    env, ready = _env(tmp_path, str(src), "200ms")
    prefix = inotify_limited("max_inotify_watches")
    with SidecarProcess("warloader", env, ["--watch", "true"], prefix=prefix) as proc:
        proc.wait_http(ready)
        for tag in ("v2", "v3"):
            new = war_bytes({"tag.txt": tag})
            _replace(src, new)
            wait_until(lambda n=new: _installed(tmp_path / "webapps" / "app.war", n), 20, tag)
        assert proc.terminate() == 0, proc.stderr()
        assert "Traceback" not in proc.stderr()
        warnings = [r["msg"] for r in proc.log_lines() if r["msg"].startswith("cannot watch")]
    assert len(warnings) == 1, warnings
    assert "watch limit" in warnings[0] and "polling every 0.2s" in warnings[0]


def test_a_replaced_source_directory_is_watched_again(tmp_path: Path) -> None:
    """The directory holding a file source renamed away and made anew with a new version:
    the move is an event, the new directory is watched, so the version after that is
    installed at once too (polls are 60s apart: only events can be this quick)."""
    src = tmp_path / "image" / "app.war"
    src.parent.mkdir()
    src.write_bytes(war_bytes({"tag.txt": "v1"}))
    dest = tmp_path / "webapps" / "app.war"
    env, ready = _env(tmp_path, str(src), "60s")
    with SidecarProcess("warloader", env, ["--watch", "true"]) as proc:
        proc.wait_http(ready)
        wait_until(
            lambda: any(r["msg"] == "watching sources for changes" for r in proc.log_lines()),
            10,
            "watching",
        )
        src.parent.rename(tmp_path / "old-image")
        src.parent.mkdir()
        v2 = war_bytes({"tag.txt": "v2"})
        src.write_bytes(v2)
        wait_until(lambda: _installed(dest, v2), 10, "v2 in the new directory")
        v3 = war_bytes({"tag.txt": "v3"})
        _replace(src, v3)
        wait_until(lambda: _installed(dest, v3), 10, "v3 in the new directory")
        assert proc.terminate() == 0, proc.stderr()


def _inotify_watches(pid: int) -> int:
    """How many inotify watches the process holds (its fdinfo lists one line per watch)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                count += sum(line.startswith("inotify wd:") for line in info.splitlines())
        except OSError:
            continue  # closed meanwhile
    return count


def test_links_in_a_source_tree_are_not_watched_through(tmp_path: Path) -> None:
    """A directory source that gains a link loop (WEB-INF/loop -> ..) and a new directory:
    the new directory is watched, the loop is not entered (one watch per real directory),
    and a change in the new directory is installed at once (polls are 60s apart)."""
    tree = tmp_path / "site"
    (tree / "WEB-INF").mkdir(parents=True)
    (tree / "WEB-INF" / "web.xml").write_text("<web-app/>\n")
    env, ready = _env(tmp_path, str(tree), "60s")
    with SidecarProcess("warloader", env, ["--watch", "true"]) as proc:
        proc.wait_http(ready)
        pid = proc.proc.pid
        wait_until(lambda: _inotify_watches(pid) == 2, 10, "site and WEB-INF watched")
        (tree / "WEB-INF" / "loop").symlink_to("..")
        (tree / "WEB-INF" / "classes").mkdir()
        wait_until(lambda: _inotify_watches(pid) == 3, 10, "the new directory watched")
        (tree / "WEB-INF" / "classes" / "new.txt").write_text("new\n")
        installed = tmp_path / "webapps" / "site" / "WEB-INF" / "classes" / "new.txt"
        wait_until(installed.exists, 10, "the change in the new directory")
        assert os.path.islink(tmp_path / "webapps" / "site" / "WEB-INF" / "loop")
        assert _inotify_watches(pid) == 3
        assert proc.terminate() == 0, proc.stderr()
