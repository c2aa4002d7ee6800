"""The runtime's file events (inotify) over directories the application shapes: links it
plants are never watched through, a directory replaced under a watch is watched again, and a
flood that overflows the kernel's event queue is reported (the caller rescans), not lost."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sidecars.runtime.fileevents import DirWatch, WatchError

pytestmark = pytest.mark.unit

QUEUE = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


class Seen:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.overflows = 0
        self.changed = asyncio.Event()

    def change(self, path: str) -> None:
        self.paths.append(path)
        self.changed.set()

    def overflow(self) -> None:
        self.overflows += 1
        self.changed.set()

    async def until(self, check: object, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


async def test_links_planted_in_a_recursive_tree_are_not_watched_through(tmp_path: Path) -> None:
    """Below a recursive root only real directories are watched: a link to a directory
    outside and a link loop add no watch, and changes outside raise no event."""
    root, outside = tmp_path / "src", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "a" / "loop").symlink_to(root)
    seen = Seen()
    watch = DirWatch(seen.change, seen.overflow, recursive=True)
    try:
        assert watch.sync([str(root)]) == [str(root)]
        assert sorted(watch._paths.values()) == [str(root), str(root / "a"), str(root / "a" / "b")]
        (outside / "x").write_text("outside\n")
        (root / "a" / "b" / "y").write_text("inside\n")
        await seen.until(lambda: str(root / "a" / "b" / "y") in seen.paths)
        assert not [p for p in seen.paths if p.startswith(str(outside))]
        # a directory created later is watched too, a link created later is not
        (root / "new").mkdir()
        (root / "later").symlink_to(outside)
        await seen.until(lambda: str(root / "later") in seen.paths)
        (root / "new" / "z").write_text("z\n")
        await seen.until(lambda: str(root / "new" / "z") in seen.paths)
        assert str(root / "later") not in watch._paths.values()
    finally:
        watch.close()


async def test_a_replaced_directory_is_watched_again(tmp_path: Path) -> None:
    """A root renamed away and replaced by a new directory: its old watch reports the move,
    and the next sync watches the new directory (the old one's events no longer count)."""
    root = tmp_path / "logs"
    root.mkdir()
    seen = Seen()
    watch = DirWatch(seen.change, seen.overflow)
    try:
        watch.sync([str(root)])
        root.rename(tmp_path / "old")
        root.mkdir()
        await seen.until(lambda: str(root) in seen.paths)  # the move of the root itself
        assert watch.sync([str(root)]) == [str(root)]
        assert watch.sync([str(root)]) == []  # the same directory: nothing to do
        (root / "new.log").write_text("x\n")
        await seen.until(lambda: str(root / "new.log") in seen.paths)
    finally:
        watch.close()


async def test_a_missing_root_is_awaited_in_its_parent(tmp_path: Path) -> None:
    """A root that does not exist (yet, or between a rename and its replacement): its
    appearance is an event naming it (other names in the parent are not), and the next sync
    watches it."""
    root = tmp_path / "logs"
    seen = Seen()
    watch = DirWatch(seen.change, seen.overflow)
    try:
        assert watch.sync([str(root)]) == []
        (tmp_path / "unrelated").write_text("x\n")
        root.mkdir()
        await seen.until(lambda: str(root) in seen.paths)
        assert seen.paths == [str(root)]
        assert watch.sync([str(root)]) == [str(root)]
        (root / "app.log").write_text("x\n")
        await seen.until(lambda: str(root / "app.log") in seen.paths)
    finally:
        watch.close()


@pytest.mark.skipif(QUEUE > 1 << 20, reason="the kernel's event queue is too long to overflow")
async def test_an_overflowing_queue_is_reported_not_lost(tmp_path: Path) -> None:
    """More events than the kernel queues while the loop is busy: the caller hears of the
    overflow (to rescan everything), and the watch keeps working afterwards."""
    root = tmp_path / "logs"
    root.mkdir()
    a, b = root / "a.log", root / "b.log"
    a.write_text("")
    b.write_text("")
    seen = Seen()
    watch = DirWatch(seen.change, seen.overflow)
    try:
        watch.sync([str(root)])
        for _ in range(QUEUE // 2 + 100):  # the loop does not run: nothing is read meanwhile
            os.utime(a)
            os.utime(b)  # alternating: the kernel merges only repeats of the last event
        (root / "lost.log").write_text("x\n")
        await seen.until(lambda: seen.overflows == 1)
        assert str(root / "lost.log") not in seen.paths
        (root / "after.log").write_text("x\n")
        await seen.until(lambda: str(root / "after.log") in seen.paths)
    finally:
        watch.close()


async def test_a_tree_beyond_the_watch_cap_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More directories than a watcher may watch: WatchError naming the cap, and nothing
    stays watched (the caller polls)."""
    import sidecars.runtime.fileevents as fileevents

    monkeypatch.setattr(fileevents, "MAX_WATCHES", 3)
    for i in range(5):
        (tmp_path / f"d{i}").mkdir()
    watch = DirWatch(lambda _: None, lambda: None, recursive=True)
    with pytest.raises(WatchError, match="more than 3 directories to watch") as err:
        watch.sync([str(tmp_path)])
    assert "\n" not in str(err.value)
    assert watch._paths == {} and watch._fd == -1
