"""Unit tests of the static ECS fields: agent id kept across restarts, downward API labels,
the fields on both document paths, and the index template's ECS mapping and options."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from sidecars import __version__
from sidecars.logshipper.documents import DocumentBuilder
from sidecars.logshipper.ecs import ECS_VERSION, agent_id, parse_labels, static_fields
from sidecars.logshipper.template import template_body

pytestmark = pytest.mark.unit


def test_agent_id_is_kept_beside_the_checkpoints(tmp_path: Path) -> None:
    """The id is a UUID written once to the state directory and read back at every start;
    a corrupt file is replaced by a new id (the shipper still starts)."""
    first = agent_id(str(tmp_path))
    assert uuid.UUID(first) and agent_id(str(tmp_path)) == first
    (tmp_path / "agent-id").write_text("not a uuid\n")
    second = agent_id(str(tmp_path))
    assert second != first and agent_id(str(tmp_path)) == second


def test_downward_api_labels_are_parsed_and_dedotted() -> None:
    """The labels file has Go-quoted `key="value"` lines; dots in keys become `_`."""
    text = 'app.kubernetes.io/name="web"\ntier="front \\"end\\""\nbroken line\n'
    assert parse_labels(text) == {"app_kubernetes_io/name": "web", "tier": 'front "end"'}


def test_static_fields_as_filebeat_writes_them_for_a_container_log() -> None:
    fields = static_fields(
        dataset="app",
        namespace="default",
        agent="a-id",
        hostname="web-0",
        pod={"name": "web-0", "uid": "u-1", "namespace": "shop", "node": "n1", "container": "c"},
        labels={"app": "web"},
        ephemeral_id="e-id",
    )
    assert fields == {
        "ecs": {"version": ECS_VERSION},
        "host": {"name": "web-0"},
        "agent": {
            "type": "logshipper",
            "name": "web-0",
            "version": __version__,
            "id": "a-id",
            "ephemeral_id": "e-id",
        },
        "container": {"name": "c"},
        "kubernetes": {
            "pod": {"name": "web-0", "uid": "u-1"},
            "namespace": "shop",
            "node": {"name": "n1"},
            "container": {"name": "c"},
            "labels": {"app": "web"},
        },
        "event": {"dataset": "app"},
        "data_stream": {"type": "logs", "dataset": "app", "namespace": "default"},
    }
    # outside Kubernetes: no empty objects
    bare = static_fields(dataset="d", namespace="n", agent="a", hostname="h")
    assert "kubernetes" not in bare and "container" not in bare


def test_every_document_path_carries_the_static_fields() -> None:
    """Fast path (verbatim chunk), per-line path and JSON path give the same ECS fields;
    an app's own fields in the same objects (`event.action`) are kept, ours win."""
    meta = static_fields(dataset="app", namespace="default", agent="a", hostname="h")
    b = DocumentBuilder("logs-app-default", create=True, metadata=meta, json_lines=True)
    fast = DocumentBuilder("logs-app-default", create=True, metadata=meta)
    run = fast.run("0123456789abcdef", b'"/l/a.log"', 0.0, [b"one"], [0, 4], b"one\n")
    assert run is not None
    action, doc = (orjson.loads(x) for x in run[0].splitlines())
    assert action == {"create": {"_index": "logs-app-default", "_id": "0123456789abcdef0"}}
    for key, value in meta.items():
        assert doc[key] == value
    _, src = b.build(
        "0123456789abcdef", b'"/l/a.log"', 5, b'{"event":{"action":"x","dataset":"no"}}', 0.0
    )
    parsed = orjson.loads(src)
    assert parsed["event"] == {"action": "x", "dataset": "app"}
    assert parsed["agent"] == meta["agent"] and parsed["data_stream"] == meta["data_stream"]


def test_template_maps_ecs_types_replicas_data_stream_and_lifecycle() -> None:
    body = template_body(
        "logs-app-default", 600, replicas=0, data_stream=True, ilm_policy="p", data_retention="7d"
    )
    assert body["data_stream"] == {} and body["priority"] == 600
    tpl = body["template"]
    assert tpl["settings"] == {"index": {"number_of_replicas": 0, "lifecycle": {"name": "p"}}}
    assert tpl["lifecycle"] == {"data_retention": "7d"}
    props = tpl["mappings"]["properties"]
    assert props["log"]["properties"]["level"]["type"] == "keyword"
    assert props["event"]["properties"]["created"] == {"type": "date"}
    assert props["http"]["properties"]["response"]["properties"]["status_code"]["type"] == "long"
    dynamic = tpl["mappings"]["dynamic_templates"]
    assert dynamic[-1]["strings_as_keyword"]["mapping"]["type"] == "keyword"
    plain = template_body("logs-%Y", 200)
    assert "data_stream" not in plain and "lifecycle" not in plain["template"]
    assert plain["template"]["settings"] == {"index": {"number_of_replicas": 0}}


def test_an_apps_value_at_one_of_our_objects_names_is_kept_as_original() -> None:
    """structlog writes the message as `event`, access logs `host` and `agent` strings:
    such a value is not overwritten by our objects but kept as `<name>.original`."""
    meta = static_fields(dataset="app", namespace="default", agent="a", hostname="h")
    b = DocumentBuilder("logs-app-default", create=True, metadata=meta, json_lines=True)
    line = b'{"event":"user logged in","host":"example.com","agent":"curl/8","n":1}'
    _, src = b.build("0123456789abcdef", b'"/l/a.log"', 0, line, 0.0)
    doc = orjson.loads(src)
    assert doc["event"] == {"dataset": "app", "original": "user logged in"}
    assert doc["host"] == {"name": "h", "original": "example.com"}
    assert doc["agent"]["original"] == "curl/8" and doc["agent"]["type"] == "logshipper"
    assert doc["n"] == 1 and "original" not in meta["event"]  # the static fields stay as built
