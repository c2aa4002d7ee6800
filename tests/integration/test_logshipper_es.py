"""logshipper against the real Elasticsearch node: every line written ends up in the index
exactly once, through restarts, kill -9, rotation, truncation, outages and 429s."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import orjson
import pytest

from sidecars.logshipper.template import template_name
from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import (
    STRICT_SHIPPER_MAPPING,
    CuttableProxy,
    LogWriter,
    admin_url,
    checkpoint_offsets,
    checksum,
    es_count,
    es_messages,
    lines_in,
    metric,
    rss_bytes,
    shipper_env,
    wait_metric,
)
from tests.servers.elasticsearch import (
    TlsProxy,
    block_writes,
    create_strict_index,
    es_request,
    search,
)

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]


def assert_exactly(url: str, index: str, written: list[str], timeout: float = 60.0) -> None:
    """Wait until the index holds as many documents as lines written, then compare them."""
    wait_until(
        lambda: es_count(url, index) >= len(written), timeout, f"{len(written)} docs", every=0.3
    )
    got = es_messages(url, index)
    assert len(got) == len(written), (len(got), len(written))
    assert checksum(got) == checksum(written)


def test_ships_every_line_once_with_ecs_fields_and_drains_on_sigterm(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    app = logs / "app.log"
    written = ["plain ascii", "UTF-8: é ü 日本語 🚀", "", 'tab\tand "quotes" and \\']
    with app.open("wb") as f:
        f.write(("\n".join(written) + "\n").encode())
        f.write(b"broken \xff\xfe utf8\n")
        f.write(b"no newline yet")
    written += ["broken \ufffd\ufffd utf8", "no newline yet"]
    env = shipper_env(logs, state, elasticsearch_url, es_index)
    with SidecarProcess(
        "logshipper", env={**env, "POD_NAME": "web-0", "POD_NAMESPACE": "shop"}
    ) as proc:
        proc.wait_http(admin_url(env) + "/readyz")
        assert_exactly(elasticsearch_url, es_index, written)
        wait_until(
            lambda: metric(admin_url(env), "logshipper_documents_delivered_total") == 6,
            10,
            "metric",
        )
        assert metric(admin_url(env), "logshipper_lines_read_total") == 6
        wait_until(lambda: checkpoint_offsets(state)[str(app)] == app.stat().st_size, 10, "ckpt")
        assert proc.terminate() == 0
    docs = search(elasticsearch_url, es_index, {"match_phrase": {"message": "broken"}})
    (doc,) = docs
    assert doc["log"] == {"file": {"path": str(app)}, "offset": doc["log"]["offset"]}
    assert doc["tags"] == ["invalid_utf8"]
    assert doc["kubernetes"]["pod"]["name"] == "web-0" and doc["kubernetes"]["namespace"] == "shop"
    assert doc["@timestamp"].endswith("Z")

    # restart: only what was appended meanwhile is shipped
    more = LogWriter(app, "after-restart")
    with app.open("a") as f:
        f.write("\n")  # completes "no newline yet" in the file; its rest is a new line
    written.append("")
    more.write(50)
    with SidecarProcess("logshipper", env=env) as proc:
        assert_exactly(elasticsearch_url, es_index, written + more.written)
        assert proc.terminate() == 0


def _writer(stop: threading.Event, fn: object) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)  # type: ignore[arg-type]
    t.start()
    return t


def test_kill_9_and_restart_mid_stream_leaves_each_line_once(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(8_000, size=100)
    # checkpoints lag far behind the index, so every restart re-sends acknowledged records
    env = shipper_env(
        logs, state, elasticsearch_url, es_index, batch_max_docs="500", checkpoint_interval="2s"
    )
    for _ in range(3):
        with SidecarProcess("logshipper", env=env) as proc:
            before = es_count(elasticsearch_url, es_index)
            wait_until(
                lambda b=before: es_count(elasticsearch_url, es_index) > b + 300, 30, "progress"
            )
            proc.proc.send_signal(signal.SIGKILL)  # no drain: checkpoints lag behind the index
            proc.proc.wait(10)
        writer.write(1_000, size=100)
    with SidecarProcess("logshipper", env=env) as proc:
        proc.wait_http(admin_url(env) + "/readyz")
        assert_exactly(elasticsearch_url, es_index, writer.written)
        assert proc.terminate() == 0


def _write_generation(f: TextIO, generation: int, first: int, written: list[str]) -> int:
    """1,500 numbered lines at an app's pace (a flush and a short pause every 100); returns the
    next line number."""
    n = first
    for _ in range(1500):
        msg = f"gen {generation} line {n:06d}"
        f.write(msg + "\n")
        written.append(msg)
        n += 1
        if n % 100 == 0:
            f.flush()
            time.sleep(0.03)
    f.flush()
    return n


def _ship_while_writing(
    dirs: tuple[Path, Path], url: str, index: str, write: Callable[[Path, list[str]], None]
) -> None:
    """Run the shipper while `write(app, written)` writes and rotates logs/app.log in a thread,
    then check that the index holds every written line exactly once."""
    logs, state = dirs
    app = logs / "app.log"
    written: list[str] = []
    stop = threading.Event()

    def run() -> None:
        write(app, written)
        stop.set()

    env = shipper_env(logs, state, url, index)
    app.touch()
    with SidecarProcess("logshipper", env=env) as proc:
        proc.wait_http(admin_url(env) + "/readyz")
        t = _writer(stop, run)
        t.join(60)
        assert stop.is_set()
        assert_exactly(url, index, written)
        assert proc.terminate() == 0


def test_rename_rotation_under_continuous_writing(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    def write(app: Path, written: list[str]) -> None:
        n = 0
        for generation in range(6):
            with app.open("a") as f:
                n = _write_generation(f, generation, n, written)
            # logrotate's default: rename, and the app creates a new file
            os.rename(app, app.with_name(f"app.log.{generation}"))

    _ship_while_writing(dirs, elasticsearch_url, es_index, write)


def test_copytruncate_under_continuous_writing(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    def write(app: Path, written: list[str]) -> None:
        n = 0
        with app.open("a") as f:  # the app keeps its file open across the truncations
            for generation in range(5):
                n = _write_generation(f, generation, n, written)
                shutil.copyfile(app, app.with_name(f"app.log.{generation}"))  # copytruncate
                os.truncate(app, 0)

    _ship_while_writing(dirs, elasticsearch_url, es_index, write)


def test_truncation_to_empty_and_rewrite_is_read_again_from_zero(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    app = logs / "app.log"
    first = LogWriter(app, "first")
    first.write(100)
    env = shipper_env(logs, state, elasticsearch_url, es_index)
    with SidecarProcess("logshipper", env=env) as proc:
        assert_exactly(elasticsearch_url, es_index, first.written)
        app.write_text("")
        second = LogWriter(app, "second")  # same length lines: same offsets, new ids
        second.write(60)
        assert_exactly(elasticsearch_url, es_index, first.written + second.written)
        assert proc.terminate() == 0


def test_real_429s_are_retried_until_accepted(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(200)
    env = shipper_env(logs, state, elasticsearch_url, es_index)
    with SidecarProcess("logshipper", env=env) as proc:
        assert_exactly(elasticsearch_url, es_index, writer.written)
        with block_writes(elasticsearch_url, es_index):
            writer.write(300)
            wait_metric(admin_url(env), "logshipper_documents_retried_total", "", 1, "retried 429s")
            assert es_count(elasticsearch_url, es_index) == 200
        assert_exactly(elasticsearch_url, es_index, writer.written)
        assert proc.terminate() == 0
    assert not (state / "dead-letter.ndjson").exists()


def test_mapping_conflicts_go_to_the_dead_letter_file_and_never_block_the_rest(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    es_strict_index = es_index
    create_strict_index(elasticsearch_url, es_index, STRICT_SHIPPER_MAPPING)
    app = logs / "app.log"
    good = [orjson.dumps({"message": f"ok {i}"}).decode() for i in range(50)]
    bad = [orjson.dumps({"message": f"bad {i}", "unmapped_field": i}).decode() for i in range(3)]
    app.write_text("\n".join(good[:25] + bad + good[25:]) + "\n")
    env = shipper_env(logs, state, elasticsearch_url, es_strict_index, json="true")
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(lambda: len(list(lines_in(state / "dead-letter.ndjson"))) == 3, 30, "dlq")
        assert_exactly(elasticsearch_url, es_strict_index, [f"ok {i}" for i in range(50)])
        wait_until(lambda: checkpoint_offsets(state)[str(app)] == app.stat().st_size, 10, "ckpt")
        assert metric(admin_url(env), "logshipper_documents_dead_lettered_total") == 3
        assert proc.terminate() == 0
    records = list(lines_in(state / "dead-letter.ndjson"))
    assert {r["reason"] for r in records} == {"strict_dynamic_mapping_exception"}
    assert sorted(r["document"]["message"] for r in records) == ["bad 0", "bad 1", "bad 2"]
    assert "unmapped_field" in records[0]["error"]["reason"]


def test_outage_backs_off_keeps_memory_flat_and_delivers_everything_after(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(100)
    port = int(elasticsearch_url.rsplit(":", 1)[1])
    with CuttableProxy(port) as proxy:
        env = shipper_env(
            logs,
            state,
            proxy.url,
            es_index,
            queue_max_bytes="256KiB",
            batch_max_bytes="128KiB",
            max_line_size="16KiB",
        )
        admin = admin_url(env)
        with SidecarProcess("logshipper", env=env) as proc:
            assert_exactly(elasticsearch_url, es_index, writer.written)
            proxy.cut()
            writer.write(3_000, size=250)  # ~0.7 MB while Elasticsearch is unreachable
            wait_until(lambda: metric(admin, "logshipper_queue_bytes") > 200_000, 30, "queue full")
            wait_metric(admin, "logshipper_bulk_errors_total", 'reason="connection"', 3, "retries")
            rss_before = rss_bytes(proc.proc.pid)
            writer.write(8_000, size=250)  # ~2 MB more: the files are the buffer, not memory
            wait_until(lambda: metric(admin, "logshipper_bulk_errors_total") > 6, 30, "retries")
            assert metric(admin, "logshipper_queue_bytes") <= 2 * 256 * 1024
            assert rss_bytes(proc.proc.pid) - rss_before < 8 << 20
            assert metric(admin, "logshipper_file_lag_bytes") > 2 << 20
            assert es_count(elasticsearch_url, es_index) == 100
            proxy.restore()
            assert_exactly(elasticsearch_url, es_index, writer.written, timeout=90)
            wait_until(lambda: metric(admin, "logshipper_file_lag_bytes") == 0, 10, "no lag")
            assert proc.terminate() == 0
            warnings = [r for r in proc.log_lines() if r.get("reason") == "connection"]
            assert warnings and len(warnings) < 5  # one per streak (+1 per 30 s), not per retry


def test_tls_and_basic_auth_through_nginx(
    dirs: tuple[Path, Path],
    elasticsearch_url: str,
    es_index: str,
    elasticsearch_tls_proxy: TlsProxy,
) -> None:
    logs, state = dirs
    writer = LogWriter(logs / "app.log")
    writer.write(50)
    proxy = elasticsearch_tls_proxy
    env = shipper_env(
        logs,
        state,
        proxy.url,
        es_index,
        es_ca_file=proxy.ca_path,
        es_username=proxy.user,
        es_password=proxy.password,
    )
    with SidecarProcess("logshipper", env=env) as proc:
        proc.wait_http(admin_url(env) + "/readyz")
        assert_exactly(elasticsearch_url, es_index, writer.written)
        assert proc.terminate() == 0
        assert proxy.password not in proc.stderr()  # the secret is never logged
    # a wrong password: 401s are retried (the data waits for the operator), nothing is lost
    writer.write(10)
    env["LOGSHIPPER_ES_PASSWORD"] = "wrong"
    env["LOGSHIPPER_SHUTDOWN_TIMEOUT"] = "2s"  # undeliverable: the drain gives up quickly
    with SidecarProcess("logshipper", env=env) as proc:
        wait_metric(admin_url(env), "logshipper_bulk_errors_total", 'reason="http_401"', 1, "401s")
        assert es_count(elasticsearch_url, es_index) == 50
        assert proc.terminate() == 0
    env["LOGSHIPPER_ES_PASSWORD"] = proxy.password
    with SidecarProcess("logshipper", env=env) as proc:
        assert_exactly(elasticsearch_url, es_index, writer.written)
        assert proc.terminate() == 0


def test_data_stream_create_with_409_as_delivered_after_kill_9(
    dirs: tuple[Path, Path], elasticsearch_url: str
) -> None:
    logs, state = dirs
    stream = f"logs-shipper-{uuid.uuid4().hex[:8]}"  # the built-in logs-*-* template applies
    writer = LogWriter(logs / "app.log")
    writer.write(3000)
    env = shipper_env(
        logs,
        state,
        elasticsearch_url,
        stream,
        data_stream="true",
        checkpoint_interval="5s",
        batch_max_docs="200",
    )
    try:
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: es_count(elasticsearch_url, stream) > 500, 30, "progress")
            proc.proc.send_signal(signal.SIGKILL)  # acknowledged but not checkpointed
            proc.proc.wait(10)
        with SidecarProcess("logshipper", env=env) as proc:
            proc.wait_http(admin_url(env) + "/readyz")  # SIGTERM only once it handles it
            assert_exactly(elasticsearch_url, stream, writer.written)
            assert proc.terminate() == 0
        assert not (state / "dead-letter.ndjson").exists()  # the 409s were deliveries
    finally:
        es_request(elasticsearch_url, "DELETE", f"/_data_stream/{stream}")


def test_a_thousand_files_reach_the_real_node(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    written = []
    for i in range(1000):
        msg = f"file {i} line"
        (logs / f"f{i:04d}.log").write_text(msg + "\n")
        written.append(msg)
    env = shipper_env(logs, state, elasticsearch_url, es_index, max_open_files="64")
    with SidecarProcess("logshipper", env=env) as proc:
        assert_exactly(elasticsearch_url, es_index, written)
        assert len(os.listdir(f"/proc/{proc.proc.pid}/fd")) < 64 + 40
        assert proc.terminate() == 0
    assert len(checkpoint_offsets(state)) == 1000


def test_index_template_maps_our_ecs_fields_before_the_first_document(
    dirs: tuple[Path, Path], elasticsearch_url: str, es_index: str
) -> None:
    logs, state = dirs
    app = logs / "app.log"
    written = [f"line {i}" for i in range(20)]
    app.write_text("\n".join(written) + "\n")
    env = shipper_env(
        logs, state, elasticsearch_url, es_index, index_template="true", data_stream="false"
    )
    name = template_name(es_index)
    try:
        with SidecarProcess("logshipper", env=env) as proc:
            assert_exactly(elasticsearch_url, es_index, written)
            assert any("index template created" in r.get("msg", "") for r in proc.log_lines())
            assert proc.terminate() == 0
        status, body = es_request(elasticsearch_url, "GET", f"/{es_index}/_mapping")
        assert status == 200
        props = body[es_index]["mappings"]["properties"]
        # no text+keyword pairs for our fields: the index was created with the template
        assert props["message"] == {"type": "text"}
        assert props["log"]["properties"]["file"]["properties"]["path"]["type"] == "keyword"
        assert props["log"]["properties"]["offset"] == {"type": "long"}

        # a second start keeps the template there (an operator may have edited it)
        with SidecarProcess("logshipper", env=env) as proc:
            msgs = lambda: [r.get("msg", "") for r in proc.log_lines()]  # noqa: E731
            wait_until(lambda: any("already there" in m for m in msgs()), 30, "kept")
            assert proc.terminate() == 0
    finally:
        es_request(elasticsearch_url, "DELETE", f"/_index_template/{name}")
