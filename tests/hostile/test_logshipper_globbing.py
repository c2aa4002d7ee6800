"""Expanding the globs over a tree the application shapes: the same paths as glob on plain
trees, and bounded work on trees built to hurt (directories 1,500 deep, symlink loops, a
chain of directories each linking twice to the next, a link out of the volume)."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import pytest

from sidecars.logshipper.globbing import MAX_DEPTH, expand
from sidecars.logshipper.opening import Opener
from tests.logshipper_support import make_chain, remove_chain

pytestmark = pytest.mark.unit


def _tree(root: Path) -> None:
    for rel in [
        "a.log", "b.txt", ".hidden.log", "sub/c.log", "sub/deeper/d.log", "sub/.dot/e.log",
        "x/y/z/f.log", "x/g.log", "other/h.LOG",
    ]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")


@pytest.mark.parametrize(
    "rel",
    ["*.log", "**/*.log", "*/*.log", "sub/**/*.log", "x/*/z/*.log", "**/.*.log", "[ab].*", "?.log"],
)
def test_same_paths_as_glob_on_a_plain_tree(tmp_path: Path, rel: str) -> None:
    """Without symlinks the walker names exactly what glob.glob(recursive=True) names."""
    _tree(tmp_path)
    pattern = f"{tmp_path}/{rel}"
    assert sorted(expand(pattern, lambda _: True)) == sorted(glob.glob(pattern, recursive=True))


def test_relative_patterns_name_relative_paths(tmp_path: Path) -> None:
    _tree(tmp_path)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for rel in ["*.log", "**/*.log", "sub/*.log"]:
            assert sorted(expand(rel, lambda _: True)) == sorted(glob.glob(rel, recursive=True))
    finally:
        os.chdir(here)


def test_a_tree_1500_deep_raises_nothing_and_stops_at_max_depth(tmp_path: Path) -> None:
    """glob recurses per level and raises RecursionError here; the walker descends at most
    MAX_DEPTH levels with as many open directories."""
    make_chain(tmp_path, 1500, "deep.log")
    (tmp_path / "a" / "top.log").write_text("x\n")
    try:
        with pytest.raises(RecursionError):
            list(glob.iglob(f"{tmp_path}/**/*.log", recursive=True))
        found = list(expand(f"{tmp_path}/**/*.log", lambda _: True))
        assert found == [f"{tmp_path}/a/top.log"] and MAX_DEPTH < 1500
    finally:
        remove_chain(tmp_path / "a", 1500)


def test_symlink_loops_and_doubling_chains_are_entered_once(tmp_path: Path) -> None:
    """`loop -> .` and 24 directories each linking twice to the next (2^24 paths for glob):
    every directory is entered once through a link, so the walk is quick and small."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(25):
        (logs / f"d{i}").mkdir()
    for i in range(24):
        (logs / f"d{i}" / "a").symlink_to(f"../d{i + 1}")
        (logs / f"d{i}" / "b").symlink_to(f"../d{i + 1}")
    (logs / "d24" / "end.log").write_text("x\n")
    (logs / "loop").symlink_to(".")
    started = time.monotonic()
    found = list(expand(f"{logs}/**/*.log", Opener((f"{logs}/**/*.log",), "inside").may_enter))
    assert time.monotonic() - started < 5
    assert f"{logs}/d24/end.log" in found and len(found) <= 3


def test_a_directory_link_out_of_the_volume_is_not_entered(tmp_path: Path) -> None:
    """With `inside` (and `never`) a symlinked directory resolving outside the globs' roots
    is not walked at all; with `any` it is."""
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    (outside / "secret.log").write_text("x\n")
    (logs / "escape").symlink_to(outside)
    pattern = f"{logs}/**/*.log"
    for policy, expected in [("inside", []), ("never", []), ("any", [f"{logs}/escape/secret.log"])]:
        assert list(expand(pattern, Opener((pattern,), policy).may_enter)) == expected


def test_events_for_files_beyond_max_files_do_not_ask_for_a_rescan_each(tmp_path: Path) -> None:
    """At LOGSHIPPER_MAX_FILES, an event naming another matching file is taken as seen (the
    file waits for the periodic rescan): a flood of new files must not turn every event into
    a walk of the whole volume."""
    import logging

    from sidecars.logshipper.batching import Budget, Pipeline
    from sidecars.logshipper.documents import DocumentBuilder
    from sidecars.logshipper.files import Reader
    from sidecars.logshipper.metrics import Metrics
    from sidecars.logshipper.tailer import Tailer
    from sidecars.runtime.metrics import Registry

    for i in range(3):
        (tmp_path / f"f{i}.log").write_text("x\n")
    pipeline = Pipeline(1 << 20, 100, Budget(4 << 20))
    reader = Reader(DocumentBuilder("logs"), pipeline, partial_flush=1.0, multiline_timeout=1.0)
    tailer = Tailer(
        [f"{tmp_path}/*.log"],
        [],
        reader,
        Metrics(Registry()),
        logging.getLogger("test"),
        max_line=1024,
        max_open=4,
        max_files=2,
        follow_symlinks="inside",
        rotate_wait=1.0,
        read_from_end=False,
        multiline=None,
        skip=set(),
        checkpoints={},
    )
    tailer.scan()
    assert len(tailer.by_key) == 2 and tailer.waiting == 1
    (tmp_path / "new.log").write_text("x\n")
    assert tailer.mark(f"{tmp_path}/new.log")  # no rescan asked for
    assert not tailer.mark(f"{tmp_path}/other.txt")  # not ours: a rename maybe, rescan
    assert len(tailer.by_key) == 2
    tailer.close()


@pytest.mark.parametrize("by_handle", [True, False])
def test_the_opener_refuses_the_same_names_with_or_without_proc(
    tmp_path: Path, by_handle: bool
) -> None:
    """Through an O_PATH handle and /proc/self/fd, or (no /proc mounted) by path with a
    fstat check after opening: a link out is refused, a FIFO is refused without blocking,
    a link inside and a regular file are opened for reading."""
    from sidecars.logshipper.opening import Refused

    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "secret").write_text("s\n")
    (logs / "out.log").symlink_to(tmp_path / "secret")
    os.mkfifo(logs / "fifo.log")
    (logs / "a.log").write_text("a\n")
    (logs / "in.log").symlink_to(logs / "a.log")
    opener = Opener((f"{logs}/*.log",), "inside")
    opener.by_handle = by_handle
    for name, reason in [("out.log", "outside_roots"), ("fifo.log", "not_regular")]:
        with pytest.raises(Refused) as caught:
            opener.open(f"{logs}/{name}")
        assert caught.value.reason == reason
    for name in ("a.log", "in.log"):
        fd, _ = opener.open(f"{logs}/{name}")
        assert os.read(fd, 10) == b"a\n"
        os.close(fd)
