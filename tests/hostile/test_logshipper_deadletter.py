"""The dead-letter file under hostile conditions: a symlink or FIFO planted at its path, a
full volume. Refused documents are written there each exactly once, as whole lines, and
never through a planted link; meanwhile their checkpoint does not move."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import (
    BulkSink,
    LogWriter,
    admin_url,
    checkpoint_offsets,
    fill_volume,
    shipper_env,
    wait_metric,
)
from tests.warloader_support import remount_readonly, tmpfs

pytestmark = pytest.mark.integration


def _refuse_sevens(doc: dict[str, object]) -> int:
    return 400 if str(doc["message"]).endswith("7 " + "x" * 280) else 201


def _dead_messages(path: Path) -> list[str]:
    """Messages in the dead-letter file; every line must be a whole JSON record."""
    if not path.exists():
        return []
    return [orjson.loads(line)["document"]["message"] for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_a_planted_symlink_or_fifo_at_the_dead_letter_path_is_not_followed(
    dirs: tuple[Path, Path], tmp_path: Path, planted: str
) -> None:
    """The dead-letter path is a symlink to another file (or a FIFO): nothing is written
    through it, the shipper does not block, an error and `file_errors{dead_letter}` say so,
    and the checkpoint waits. Once the link is removed the refused documents land in a real
    file, each once."""
    logs, state = dirs
    state.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    dead = state / "dead-letter.ndjson"
    if planted == "symlink":
        dead.symlink_to(victim)
    else:
        os.mkfifo(dead)
    writer = LogWriter(logs / "app.log")
    writer.write(40, size=300)
    refused = [m for m in writer.written if _refuse_sevens({"message": m}) == 400]
    with BulkSink() as sink:
        sink.item_status = _refuse_sevens
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_metric(admin, "logshipper_file_errors_total", "dead_letter", 1, "refused path")
            assert victim.read_bytes() == b"precious\n"
            first_refused = writer.written.index(refused[0])
            if (state / "checkpoints.json").exists():
                offset = checkpoint_offsets(state).get(str(logs / "app.log"), 0)
                assert offset <= 301 * first_refused
            dead.unlink()
            wait_until(lambda: len(_dead_messages(dead)) == len(refused), 30, "dead letters")
            size = (logs / "app.log").stat().st_size
            wait_until(lambda: checkpoint_offsets(state)[str(logs / "app.log")] == size, 10, "cp")
            assert proc.terminate() == 0
            errors = [r for r in proc.log_lines() if "dead-letter file" in r.get("msg", "")]
            assert errors and "not followed" in str(errors[0]) or planted == "fifo"
    assert victim.read_bytes() == b"precious\n"
    assert sorted(_dead_messages(dead)) == sorted(refused)
    assert sink.count() == len(writer.written) - len(refused)


def test_a_full_volume_leaves_no_torn_or_doubled_dead_letter(dirs: tuple[Path, Path]) -> None:
    """The state volume has room for part of the dead letters only: the write fails with
    ENOSPC after a partial write, which is cut back; the retry after space frees up writes
    each refused document once, as whole lines."""
    logs, _ = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(200, size=300)
    refused = [m for m in writer.written if _refuse_sevens({"message": m}) == 400]
    with tmpfs("256k") as state, BulkSink() as sink:
        sink.item_status = _refuse_sevens
        filler = fill_volume(state, leave=8 << 10)  # room for part of the dead letters
        env = shipper_env(logs, state, sink.url, "logs", batch_max_docs="1000")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_metric(admin, "logshipper_file_errors_total", "dead_letter", 1, "ENOSPC")
            filler.unlink()
            dead = state / "dead-letter.ndjson"
            wait_until(lambda: len(_dead_messages(dead)) >= len(refused), 30, "dead letters")
            assert proc.terminate() == 0
        assert sorted(_dead_messages(dead)) == sorted(refused)


def test_kill_9_after_dead_lettering_does_not_write_the_record_twice(
    dirs: tuple[Path, Path],
) -> None:
    """Refused documents are in the dead-letter file, their checkpoint not yet written
    (LOGSHIPPER_CHECKPOINT_INTERVAL=60s): kill -9, restart. The documents are read and
    refused again, but each is in the file once (its id was already there)."""
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(100, size=300)
    refused = [m for m in writer.written if _refuse_sevens({"message": m}) == 400]
    dead = state / "dead-letter.ndjson"
    with BulkSink() as sink:
        sink.item_status = _refuse_sevens
        env = shipper_env(
            logs, state, sink.url, "logs", checkpoint_interval="60s", batch_max_docs="10"
        )
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: len(_dead_messages(dead)) == len(refused), 30, "dead letters")
            wait_until(lambda: sink.count() == len(writer.written) - len(refused), 30, "rest")
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait(10)
        requests = sink.requests
        env["LOGSHIPPER_CHECKPOINT_INTERVAL"] = "100ms"
        assert checkpoint_offsets(state)[str(logs / "app.log")] < 301 * 90  # not past them
        with SidecarProcess("logshipper", env=env) as proc:
            proc.wait_http(admin_url(env) + "/readyz")
            size = (logs / "app.log").stat().st_size
            wait_until(lambda: checkpoint_offsets(state)[str(logs / "app.log")] == size, 30, "cp")
            assert proc.terminate() == 0
        assert sink.requests > requests  # the documents were sent (and refused) again
    assert sorted(_dead_messages(dead)) == sorted(refused)


def test_a_read_only_state_volume_waits_and_loses_nothing(dirs: tuple[Path, Path]) -> None:
    """The state volume turns read-only after the start (EROFS for the dead-letter file):
    an error and the metric, retries, the refused documents and their checkpoint wait; once
    it is writable again each is dead-lettered once and the checkpoint catches up."""
    logs, _ = dirs
    writer = LogWriter(logs / "app.log")
    with tmpfs("1m") as state, BulkSink() as sink:
        sink.item_status = _refuse_sevens
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            proc.wait_http(admin + "/readyz")
            remount_readonly(state)  # after the start (a read-only one is refused: exit 2)
            writer.write(40, size=300)
            refused = [m for m in writer.written if _refuse_sevens({"message": m}) == 400]
            wait_metric(admin, "logshipper_file_errors_total", "dead_letter", 1, "EROFS")
            subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
            dead = state / "dead-letter.ndjson"
            wait_until(lambda: len(_dead_messages(dead)) == len(refused), 30, "dead letters")
            size = (logs / "app.log").stat().st_size
            wait_until(lambda: checkpoint_offsets(state)[str(logs / "app.log")] == size, 30, "cp")
            assert proc.terminate() == 0
        assert sorted(_dead_messages(dead)) == sorted(refused)
        assert sink.count() == len(writer.written) - len(refused)


def test_a_partial_line_waits_while_its_cut_cannot_be_written(dirs: tuple[Path, Path]) -> None:
    """The state volume is full when a last line without newline is due to be flushed: the
    cut cannot be checkpointed, so the line is not shipped half (it would be cut elsewhere
    after a crash); once there is room it is shipped as the partial record, once."""
    logs, _ = dirs
    app = logs / "app.log"
    app.write_text("first\n")
    with tmpfs("256k") as state, BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_until(lambda: sink.messages() == ["first"], 30, "first line")
            wait_until(lambda: (state / "checkpoints.json").exists(), 10, "checkpoint")
            filler = fill_volume(state)
            with app.open("a") as f:
                f.write("half a line")
            wait_metric(admin, "logshipper_checkpoint_errors_total", "", 2, "cut refused")
            assert sink.messages() == ["first"]
            filler.unlink()
            wait_until(lambda: "half a line" in sink.messages(), 30, "partial shipped")
            assert sorted(sink.messages()) == ["first", "half a line"]
            assert proc.terminate() == 0
