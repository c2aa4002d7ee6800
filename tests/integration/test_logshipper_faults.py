"""logshipper against answers a healthy Elasticsearch never gives (HTML, non-JSON, errors:true,
no product header, TLS mismatch) and against bad input files. The bulk sink used here is a
scripted server because a real node cannot be made to produce these faults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SidecarProcess, run_sidecar, wait_until
from tests.logshipper_support import (
    BulkSink,
    LogWriter,
    admin_url,
    checkpoint_offsets,
    checksum,
    lines_in,
    metric,
    shipper_env,
    wait_metric,
)

pytestmark = pytest.mark.integration


def _all_delivered(sink: BulkSink, written: list[str], timeout: float = 30.0) -> None:
    wait_until(lambda: sink.count() >= len(written), timeout, f"{len(written)} docs")
    got = sink.messages()
    assert len(got) == len(written) and checksum(got) == checksum(written)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("html", "bad_response"),
        ("html502", "http_502"),
        ("nonjson", "bad_response"),
        ("errors", "http_429"),
        ("noproduct", "not_elasticsearch"),
    ],
)
def test_bad_answers_are_retried_logged_counted_and_nothing_is_lost(
    dirs: tuple[Path, Path], mode: str, reason: str
) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(30)
    with BulkSink() as sink:
        sink.mode, sink.fail_next = mode, 3
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            _all_delivered(sink, writer.written)
            admin = admin_url(env)
            if mode == "errors":
                assert metric(admin, "logshipper_documents_retried_total", reason) >= 30
            else:
                assert metric(admin, "logshipper_bulk_errors_total") >= 3
            assert proc.terminate() == 0
            failures = [r for r in proc.log_lines() if r.get("msg", "").startswith("bulk request")]
            if mode != "errors":
                assert failures and failures[0]["reason"] == reason
            assert "Traceback" not in proc.stderr()
        assert sink.requests >= 4


def test_item_400s_go_to_the_dead_letter_file_and_the_rest_is_delivered(
    dirs: tuple[Path, Path],
) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(40)
    with BulkSink() as sink:
        sink.item_status = lambda doc: 400 if doc["message"].endswith("7 " + "x" * 40) else 201
        env = shipper_env(logs, state, sink.url, "logs")
        with SidecarProcess("logshipper", env=env) as proc:
            bad = [m for m in writer.written if m.endswith("7 " + "x" * 40)]
            _all_delivered(sink, [m for m in writer.written if m not in bad])
            wait_until(lambda: len(list(lines_in(state / "dead-letter.ndjson"))) == 4, 10, "dlq")
            wait_until(
                lambda: (
                    checkpoint_offsets(state)[str(logs / "app.log")]
                    == (logs / "app.log").stat().st_size
                ),
                10,
                "checkpoint past the dead letters",
            )
            assert proc.terminate() == 0
    records = list(lines_in(state / "dead-letter.ndjson"))
    assert {r["reason"] for r in records} == {"mapper_parsing_exception"}
    assert sorted(r["document"]["message"] for r in records) == sorted(bad)


def test_tls_failure_is_a_clear_retry_not_a_crash(dirs: tuple[Path, Path]) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(5)
    with BulkSink() as sink:
        # https:// to a plain-HTTP server: the handshake fails on every attempt
        url = sink.url.replace("http://", "https://")
        # nothing can be delivered: SIGTERM gives up after the (short) drain time, exit 0
        env = shipper_env(logs, state, url, "logs", shutdown_timeout="2s")
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wait_metric(admin, "logshipper_bulk_errors_total", 'reason="tls"', 2, "tls errors")
            assert sink.count() == 0
            assert proc.terminate() == 0
            (warning,) = [r for r in proc.log_lines() if r.get("reason") == "tls"][:1]
            assert warning["level"] == "warning" and warning["error"]
        assert checkpoint_offsets(state)[str(logs / "app.log")] == 0  # nothing acknowledged


def test_gzip_bodies_and_readiness_follow_the_sink(dirs: tuple[Path, Path]) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(20)
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", es_gzip="true")
        with SidecarProcess("logshipper", env=env) as proc:
            proc.wait_http(admin_url(env) + "/readyz")
            _all_delivered(sink, writer.written)
            assert sink.gzipped >= 1
            assert proc.terminate() == 0


def test_bad_input_files_are_survived(dirs: tuple[Path, Path]) -> None:
    """Missing paths, an unreadable file, binary garbage, a 100 MB line, a path that
    becomes a directory: warnings and metrics, and every good line still arrives."""
    logs, state = dirs
    sub = logs / "later"
    garbage = bytes(range(256)) * 64  # NULs, control bytes, invalid UTF-8, no newlines
    (logs / "binary.log").write_bytes(garbage + b"\nafter garbage\n")
    locked = logs / "locked.log"
    locked.write_text("secret\n")
    locked.chmod(0)
    huge = logs / "huge.log"
    with huge.open("wb") as f:
        f.write(b"before\n")
        block = b"y" * (1 << 20)
        for _ in range(100):
            f.write(block)
        f.write(b"\nafter huge\n")
    with BulkSink() as sink:
        env = shipper_env(
            logs, state, sink.url, "logs", paths=f"{logs}/*.log,{sub}/*.log", max_line_size="1MiB"
        )
        with SidecarProcess("logshipper", env=env) as proc:
            admin = admin_url(env)
            wanted = {"after garbage", "before", "after huge"}
            wait_until(lambda: wanted <= set(sink.messages()), 60, "good lines")
            got = sink.messages()
            assert "after garbage" in got and "before" in got and "after huge" in got
            cut = [m for m in got if m.startswith("y")]
            assert len(cut) == 1 and len(cut[0]) == 1 << 20  # cut at the limit, one record
            if os.geteuid() != 0:  # root reads mode-000 files anyway
                assert metric(admin, "logshipper_file_errors_total", 'reason="permission"') >= 1
            # a path that becomes a directory
            (logs / "binary.log").unlink()
            (logs / "binary.log").mkdir()
            # a missing directory that appears later
            sub.mkdir()
            (sub / "late.log").write_text("late line\n")
            wait_until(lambda: "late line" in sink.messages(), 30, "late file")
            wait_metric(
                admin,
                "logshipper_file_errors_total",
                'reason="not_regular"',
                1,
                "directory noticed",
                within=10,
            )
            assert proc.terminate() == 0
            text = proc.stderr()
            assert "Traceback" not in text
            assert text.count(f"no file matches {sub}/*.log yet") == 1  # warned once
    tagged = [d for d in sink.docs.values() if "invalid_utf8" in d.get("tags", [])]
    assert tagged


def test_bad_settings_exit_2_naming_the_setting(tmp_path: Path) -> None:
    result = run_sidecar(
        "logshipper",
        env={
            "LOGSHIPPER_ES_HOSTS": "ftp://x",
            "LOGSHIPPER_INDEX": "Bad Index",
            "LOGSHIPPER_BATCH_MAX_DOCS": "zero",
            "LOGSHIPPER_MULTILINE_PATTERN": "([",
            "LOGSHIPPER_STATE_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2
    for var in ("ES_HOSTS", "INDEX", "BATCH_MAX_DOCS", "MULTILINE_PATTERN"):
        assert f"LOGSHIPPER_{var}=" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_sidecar(
        "logshipper",
        env={
            "LOGSHIPPER_ES_CLIENT_CERT": "/etc/hostname",  # there, but no key with it
            "LOGSHIPPER_ES_PASSWORD": "hunter2",
            "LOGSHIPPER_STATE_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2
    assert "LOGSHIPPER_ES_CLIENT_KEY" in result.stderr and "hunter2" not in result.stderr


def test_many_idle_files_cost_no_fd_each(dirs: tuple[Path, Path]) -> None:
    logs, state = dirs
    written = []
    for i in range(1000):
        msg = f"file {i} line"
        (logs / f"f{i:04d}.log").write_text(msg + "\n")
        written.append(msg)
    with BulkSink() as sink:
        env = shipper_env(logs, state, sink.url, "logs", max_open_files="64")
        with SidecarProcess("logshipper", env=env) as proc:
            _all_delivered(sink, written, timeout=60)
            admin = admin_url(env)
            wait_until(lambda: metric(admin, "logshipper_files_open") <= 64, 10, "fds closed")
            fds = len(os.listdir(f"/proc/{proc.proc.pid}/fd"))
            assert fds < 64 + 40, fds
            assert metric(admin, "logshipper_files_tracked") == 1000
            # an idle file that grows is still noticed (event or rescan)
            with (logs / "f0500.log").open("a") as f:
                f.write("file 500 again\n")
            written.append("file 500 again")
            _all_delivered(sink, written)
            assert proc.terminate() == 0


def test_multiline_and_json_records(dirs: tuple[Path, Path]) -> None:
    logs, state = dirs
    (logs / "java.log").write_text(
        "2024-01-01 ERROR boom\n"
        "java.lang.IllegalStateException: x\n"
        "\tat a.b(C.java:1)\n"
        "\tat d.e(F.java:2)\n"
        "2024-01-01 INFO fine\n"
    )
    (logs / "app.json.log").write_text(
        '{"time": "2024-05-06T07:08:09Z", "level": "warn", "msg": "jj", "n": 1}\nnot json\n'
    )
    with BulkSink() as sink:
        common = dict(multiline_timeout="200ms")
        env = shipper_env(
            logs,
            state,
            sink.url,
            "logs-%Y.%m.%d",
            paths=str(logs / "java.log"),
            multiline_pattern=r"^\d{4}-\d{2}-\d{2} ",
            **common,
        )
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: sink.count() == 2, 20, "2 records")
            assert proc.terminate() == 0
        env = shipper_env(
            logs,
            state,
            sink.url,
            "logs-%Y.%m.%d",
            paths=str(logs / "app.json.log"),
            json="true",
            timestamp_field="time",
        )
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: sink.count() == 4, 20, "4 records")
            assert proc.terminate() == 0
    by_msg = {d.get("message", d.get("msg")): (k, d) for k, d in sink.docs.items()}
    trace = by_msg[
        "2024-01-01 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b(C.java:1)"
        "\n\tat d.e(F.java:2)"
    ]
    assert trace[1]["log"]["offset"] == 0
    (index, _), doc = by_msg["jj"]
    assert index == "logs-2024.05.06" and doc["@timestamp"] == "2024-05-06T07:08:09.000Z"
    assert doc["level"] == "warn" and doc["n"] == 1
    assert "not json" in by_msg
