"""logshipper records against the real node: UTF-8 (valid, escaped, invalid), multiline stack
traces and JSON lines arrive in Elasticsearch exactly as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import es_count, shipper_env
from tests.servers.elasticsearch import search

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

UTF8 = [
    "café crème, naïve façade",
    "日本語のログ行 ☕ \U0001f680",
    'a "quoted" value and a back\\slash',
    "tab\tseparated\tfields",
    "plain ascii line",
]
CLEAN = ["café crème", "日本語のログ行 ☕ \U0001f680", "€ 100"]


def test_utf8_multiline_and_json_records_reach_the_real_node(
    tmp_path: Path, elasticsearch_url: str, es_index: str
) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    (logs / "utf8.log").write_bytes(
        "\n".join(UTF8).encode() + b"\ninvalid \xff\xfe bytes\n" + b"ascii again\n"
    )
    # a chunk with nothing to escape takes the verbatim path: non-ASCII must survive it too
    (logs / "clean.log").write_text("".join(f"clean {m}\n" for m in CLEAN))
    (logs / "java.log").write_text(
        "2024-01-01 ERROR boom é\n"
        "java.lang.IllegalStateException: x\n"
        "\tat a.b(C.java:1)\n"
        "\tat d.e(F.java:2)\n"
        '{"level": "warn", "msg": "json ☕", "n": 7, "time": "2024-05-06T07:08:09Z"}\n'
        "2024-01-01 INFO fine\n"
    )
    paths = f"{logs}/utf8.log,{logs}/clean.log"
    env = shipper_env(logs, state, elasticsearch_url, es_index, paths=paths)
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(lambda: es_count(elasticsearch_url, es_index) >= 10, 60, "utf8 lines")
        assert proc.terminate() == 0
    env = shipper_env(
        logs,
        state,
        elasticsearch_url,
        es_index,
        paths=str(logs / "java.log"),
        multiline_pattern=r"^(\d{4}-\d{2}-\d{2} |\{)",
        multiline_timeout="200ms",
        json="true",
        timestamp_field="time",
    )
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(lambda: es_count(elasticsearch_url, es_index) >= 13, 60, "java records")
        assert proc.terminate() == 0
    docs = search(elasticsearch_url, es_index)
    assert len(docs) == 13
    by_path: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_path.setdefault(doc["log"]["file"]["path"], []).append(doc)
    utf8 = {d["message"]: d for d in by_path[str(logs / "utf8.log")]}
    assert set(utf8) == {*UTF8, "invalid \ufffd\ufffd bytes", "ascii again"}
    assert "invalid_utf8" in utf8["invalid \ufffd\ufffd bytes"]["tags"]
    assert all("tags" not in utf8[m] for m in UTF8)
    clean = {d["message"] for d in by_path[str(logs / "clean.log")]}
    assert clean == {f"clean {m}" for m in CLEAN}
    java = sorted(by_path[str(logs / "java.log")], key=lambda d: d["log"]["offset"])
    assert java[0]["message"] == (
        "2024-01-01 ERROR boom é\njava.lang.IllegalStateException: x\n"
        "\tat a.b(C.java:1)\n\tat d.e(F.java:2)"
    )
    assert java[1]["msg"] == "json ☕" and java[1]["n"] == 7
    assert java[1]["@timestamp"] == "2024-05-06T07:08:09.000Z"
    assert java[2]["message"] == "2024-01-01 INFO fine"
