"""Rule 7 with hostile input: a kill -9 at chosen points while the shipper reads over-long
lines, partial lines, invalid UTF-8 and NUL bytes, or while its state volume is full, gives
the same index as a run without the crash: every record exactly once, against the real
Elasticsearch node."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import (
    admin_url,
    checkpoint_offsets,
    es_count,
    es_messages,
    fill_volume,
    rss_bytes,
    shipper_env,
    wait_metric,
)
from tests.warloader_support import tmpfs

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def _kill_when(env: dict[str, str], ready: Callable[[], bool], what: str) -> None:
    """Run the shipper until `ready`, then kill -9 it (no drain, no last checkpoint)."""
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(ready, 60, what, every=0.1)
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)


def _finish(
    env: dict[str, str], url: str, index: str, files: list[Path], expected: list[str]
) -> None:
    """Restart, wait until every byte of `files` is acknowledged and checkpointed, and
    compare the index with `expected` (a multiset: nothing missing, nothing twice)."""
    with SidecarProcess("logshipper", env=env) as proc:
        state = Path(env["LOGSHIPPER_STATE_DIR"])

        def done() -> bool:
            offsets = checkpoint_offsets(state)
            return all(offsets.get(str(f)) == f.stat().st_size for f in files)

        wait_until(done, 60, "every byte acknowledged", every=0.1)
        assert sorted(es_messages(url, index)) == sorted(expected)
        assert proc.terminate() == 0
        assert "Traceback" not in proc.stderr()


def _has(url: str, index: str, check: Callable[[str], bool]) -> bool:
    return es_count(url, index) > 0 and any(check(m) for m in es_messages(url, index))


def _checkpointed_past(state: Path, path: Path, offset: int) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(OSError, ValueError):
            return checkpoint_offsets(state).get(str(path), -1) >= offset
        return False

    return check


def _checkpointed(state: Path, path: Path, size: int) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(OSError, ValueError):
            return checkpoint_offsets(state).get(str(path)) == size
        return False

    return check


@pytest.mark.parametrize("point", ["head_shipped", "head_checkpointed"])
def test_kill_9_around_an_over_long_line_ships_its_head_once_and_no_tail(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str, point: str
) -> None:
    """A line longer than LOGSHIPPER_MAX_LINE_SIZE, still without its newline: its head is
    shipped (tagged truncated). A kill -9 after that, then the rest of the line and more
    lines: the head is in the index once and no part of the line's tail became a record."""
    logs, state = dirs
    app, other = logs / "app.log", logs / "other.log"
    app.write_bytes(b"first\n")
    env = shipper_env(logs, state, elasticsearch_url, es_index, max_line_size="64KiB")
    head = "L" * (64 << 10)
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(_checkpointed(state, app, 6), 60, "first line checkpointed")
        _append(app, b"L" * (200 << 10))  # the line's head, no newline yet
        wait_until(lambda: _has(elasticsearch_url, es_index, head.__eq__), 60, "head", every=0.1)
        if point == "head_checkpointed":
            other.write_bytes(b"other\n")  # its checkpoint is written after the head's answer
            wait_until(_checkpointed(state, other, 6), 60, "later checkpoint")
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)
    _append(app, b"L" * (100 << 10) + b"\nafter\n")
    expected = ["first", head, "after"] + (["other"] if other.exists() else [])
    files = [app, other] if other.exists() else [app]
    _finish(env, elasticsearch_url, es_index, files, expected)


@pytest.mark.parametrize("checkpoint_interval", ["100ms", "60s"])
def test_kill_9_after_a_partial_line_was_flushed_cuts_it_at_the_same_place(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str, checkpoint_interval: str
) -> None:
    """A last line without newline is shipped after LOGSHIPPER_PARTIAL_FLUSH; the app then
    completes it. Killed after the partial record was shipped (its checkpoint written or
    not), the restarted shipper cuts the line at the same byte: the index holds the partial
    record and the rest, each once, as a run without the crash."""
    logs, state = dirs
    app = logs / "app.log"
    app.write_bytes(b"p1\npartial")
    env = shipper_env(
        logs, state, elasticsearch_url, es_index, checkpoint_interval=checkpoint_interval
    )
    _kill_when(env, lambda: _has(elasticsearch_url, es_index, lambda m: m == "partial"), "flush")
    _append(app, b" rest\nnext\n")
    _finish(env, elasticsearch_url, es_index, [app], ["p1", "partial", " rest", "next"])


def test_kill_9_amid_invalid_utf8_and_nul_bytes_leaves_each_line_once(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    """Lines with invalid UTF-8, NUL bytes and control characters (the slow, per-line path):
    a kill -9 while they are shipped, then a restart, leaves each exactly once."""
    logs, state = dirs
    app = logs / "app.log"
    raw = [b"bad \xff\xfe %d" % i if i % 3 == 0 else b"nul\x00%d\x01\x1b" % i for i in range(3000)]
    app.write_bytes(b"\n".join(raw) + b"\n")
    expected = [line.decode(errors="replace") for line in raw]
    env = shipper_env(
        logs, state, elasticsearch_url, es_index, batch_max_docs="200", checkpoint_interval="1s"
    )
    _kill_when(env, lambda: es_count(elasticsearch_url, es_index) >= 600, "some shipped")
    _finish(env, elasticsearch_url, es_index, [app], expected)


def test_full_state_volume_loses_and_duplicates_nothing(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    """Checkpoint writes fail with ENOSPC: an error and `logshipper_checkpoint_errors_total`,
    retried without new input until space frees up (then the checkpoint catches up); a
    kill -9 while the volume is full, then a restart, leaves every line once."""
    logs, _ = dirs
    app = logs / "app.log"
    lines = [f"line {i:05d}" for i in range(2000)]
    with tmpfs("256k") as state:
        env = shipper_env(logs, state, elasticsearch_url, es_index)
        app.write_text("\n".join(lines[:500]) + "\n")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_until(_checkpointed(state, app, app.stat().st_size), 60, "first checkpoint")
            filler = fill_volume(state)
            _append(app, ("\n".join(lines[500:1000]) + "\n").encode())
            wait_metric(admin, "logshipper_checkpoint_errors_total", "", 3, "retried errors")
            wait_until(lambda: es_count(elasticsearch_url, es_index) == 1000, 60, "shipped")
            filler.unlink()  # space again, and no new line to trigger a checkpoint
            wait_until(_checkpointed(state, app, app.stat().st_size), 30, "caught up")
            errors = [r for r in proc.log_lines() if r.get("msg", "").startswith("cannot write")]
            assert len(errors) == 1  # one line for the streak, not one per retry
            filler = fill_volume(state)
            _append(app, ("\n".join(lines[1000:1500]) + "\n").encode())
            wait_until(lambda: es_count(elasticsearch_url, es_index) == 1500, 60, "shipped")
            proc.proc.send_signal(signal.SIGKILL)  # acknowledged, never checkpointed
            proc.proc.wait(10)
        assert not (state / "checkpoints.json.tmp").exists()  # no partial temp file kept
        filler.unlink()
        _append(app, ("\n".join(lines[1500:]) + "\n").encode())
        _finish(env, elasticsearch_url, es_index, [app], lines)


def test_kill_9_while_reading_a_sparse_1gib_line_keeps_memory_flat(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    """A single 1 GiB line of NUL bytes with no newline (a sparse file): its head is shipped,
    the rest skipped in chunks with flat memory; killed while skipping and restarted, the
    line is one record and the next line arrives once."""
    logs, state = dirs
    app = logs / "app.log"
    app.write_bytes(b"before\n")
    with app.open("r+b") as f:
        f.truncate(7 + (1 << 30))
    env = shipper_env(logs, state, elasticsearch_url, es_index, max_line_size="64KiB")
    peak = 0

    def head_in() -> bool:
        nonlocal peak
        peak = max(peak, rss_bytes(pid))
        return es_count(elasticsearch_url, es_index) >= 2

    with SidecarProcess("logshipper", env=env) as proc:
        pid = proc.proc.pid
        wait_until(head_in, 60, "head shipped", every=0.1)
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)
    assert peak < 200 << 20, peak
    _append(app, b"\nafter\n")
    _finish(env, elasticsearch_url, es_index, [app], ["before", "\0" * (64 << 10), "after"])


def test_kill_9_at_random_bytes_of_mixed_hostile_input_gives_the_same_index(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    """A file of over-long lines (one cut inside a UTF-8 character), invalid UTF-8, NUL and
    control bytes and plain lines is appended in pieces split at random bytes (mid-line
    included), and the shipper is killed -9 after each of five pieces. The index ends up
    with exactly the records a run without crashes gives: each line once, over-long ones
    as their head."""
    import random

    logs, state = dirs
    app = logs / "app.log"
    rng = random.Random(7)
    max_line = 1024
    lines: list[bytes] = []
    for i in range(1500):
        kind = i % 6
        if kind == 0:
            lines.append(b"long %d " % i + b"L" * rng.randrange(1100, 5000))
        elif kind == 1:
            lines.append(b"bad \xff\xfe\xc3 %d" % i)
        elif kind == 2:
            lines.append(b"nul \x00\x01\x1b %d" % i)
        elif kind == 3:
            lines.append(b"cut " + "\u00e9".encode() * 600 + b" %d" % i)  # cut inside a char
        else:
            lines.append(b"plain line %d" % i)
    data = b"\n".join(lines) + b"\n"
    expected = [line[:max_line].decode(errors="replace") for line in lines]
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    inside_long = [starts[i] + 1500 for i in range(0, len(lines), 6) if len(lines[i]) > 1600]
    # three pieces end inside an over-long line past its head, two anywhere
    cuts = sorted(rng.sample(inside_long, 3) + rng.sample(range(1, len(data)), 2))
    cuts.append(len(data))
    env = shipper_env(
        logs,
        state,
        elasticsearch_url,
        es_index,
        max_line_size=str(max_line),
        partial_flush="60s",  # no partial record: a piece may end mid-line
        batch_max_docs="100",
        checkpoint_interval="300ms",
    )
    done = 0
    for cut in cuts[:-1]:
        _append(app, data[done:cut])
        last_line_end = data.rfind(b"\n", 0, cut) + 1
        # killed once every complete line is checkpointed (and a head cut from the piece's
        # last, unfinished line may be shipped)
        _kill_when(env, _checkpointed_past(state, app, last_line_end), "checkpointed")
        done = cut
    _append(app, data[done:])
    _finish(env, elasticsearch_url, es_index, [app], expected)
