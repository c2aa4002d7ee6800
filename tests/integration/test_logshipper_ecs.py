"""logshipper's ECS documents, data streams and index templates on the real node: every
document carries the fields Filebeat writes for a container log, checked field by field
against ECS 8's field reference; the default target is a data stream with backing indices;
plain indices remain an option; parsed JSON fields get their ECS types."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from sidecars import __version__
from sidecars.logshipper.ecs import ECS_VERSION
from sidecars.logshipper.template import template_name
from tests.helpers import SidecarProcess, wait_until
from tests.logshipper_support import admin_url, es_count, shipper_env
from tests.servers.elasticsearch import delete_index, distribution, es_request, search
from tests.servers.es_builtin import install_builtin_logs_template

pytestmark = [pytest.mark.integration, pytest.mark.elasticsearch]

# ECS 8 field reference (elastic/ecs, generated/ecs/ecs_flat.yml) for every field we write,
# plus Filebeat's own `log.offset` and `kubernetes.*` (keyword, its fields.yml). The node
# lacks the modules of constant_keyword (data_stream.*) and match_only_text (message), so
# the template maps those as keyword and text: the same family, the same queries.
ECS_TYPES = {
    "@timestamp": "date",
    "message": "match_only_text",
    "tags": "keyword",
    "ecs.version": "keyword",
    "log.file.path": "keyword",
    "log.offset": "long",
    "log.level": "keyword",
    "log.logger": "keyword",
    "host.name": "keyword",
    "agent.type": "keyword",
    "agent.name": "keyword",
    "agent.version": "keyword",
    "agent.id": "keyword",
    "agent.ephemeral_id": "keyword",
    "container.name": "keyword",
    "event.dataset": "keyword",
    "event.duration": "long",
    "data_stream.type": "constant_keyword",
    "data_stream.dataset": "constant_keyword",
    "data_stream.namespace": "constant_keyword",
    "http.response.status_code": "long",
    "kubernetes.pod.name": "keyword",
    "kubernetes.pod.uid": "keyword",
    "kubernetes.namespace": "keyword",
    "kubernetes.node.name": "keyword",
    "kubernetes.container.name": "keyword",
    "kubernetes.labels.app": "keyword",
    "kubernetes.labels.app_kubernetes_io/name": "keyword",
}
SAME_FAMILY = {"match_only_text": "text", "constant_keyword": "keyword", "wildcard": "keyword"}
POD_ENV = {
    "POD_NAME": "web-0",
    "POD_UID": "3f0c1a2e-0000-4000-8000-000000000001",
    "POD_NAMESPACE": "shop",
    "NODE_NAME": "node-a",
    "CONTAINER_NAME": "app",
}


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _mapped_types(url: str, target: str) -> dict[str, str]:
    status, body = es_request(url, "GET", f"/{target}/_mapping/field/*")
    assert status == 200, body
    types: dict[str, str] = {}
    for index in body.values():
        for name, field in index["mappings"].items():
            for mapping in field["mapping"].values():
                if "type" in mapping:
                    types[name] = mapping["type"]
    return types


def _env(logs: Path, state: Path, url: str, dataset: str, **extra: str) -> dict[str, str]:
    """Shipper settings for the default target, `logs-<dataset>-<namespace>`, with our
    template (unless `extra` says otherwise)."""
    return shipper_env(logs, state, url, "", dataset=dataset, **{"index_template": "true", **extra})


@pytest.fixture
def dataset() -> str:
    """A unique dataset. The data streams made with it stay on the node, with the templates
    they use: the node lacks the data streams module's REST handlers that delete them (see
    elasticsearch/README.md)."""
    return f"t{uuid.uuid4().hex[:10]}"


def test_default_target_is_a_data_stream_of_ecs_documents(
    dirs: tuple[Path, Path], elasticsearch_url: str, dataset: str
) -> None:
    """With the defaults, lines go to the data stream `logs-<dataset>-default` (bulk
    `create`, our template with `data_stream: {}`, 0 replicas, backing index
    `.ds-logs-...-000001`); each document has every ECS field Filebeat writes for a container
    log, of the ECS type; parsed JSON `log.level` is a keyword; `agent.id` stays the same
    across a restart while `agent.ephemeral_id` changes."""
    logs, state = dirs
    app = logs / "app.log"
    labels = state.parent / "labels"
    labels.write_text('app="web"\napp.kubernetes.io/name="shop-web"\n')
    app.write_text(
        "plain line\n"
        '{"message":"json line","log":{"level":"warn","logger":"a.b"},'
        '"http":{"response":{"status_code":503}},"event":{"duration":1500}}\n'
    )
    env = _env(logs, state, elasticsearch_url, dataset, json="true", pod_labels_file=str(labels))
    stream = f"logs-{dataset}-default"
    with SidecarProcess("logshipper", env={**env, **POD_ENV}) as proc:
        proc.wait_http(admin_url(env) + "/readyz")
        wait_until(lambda: es_count(elasticsearch_url, stream) == 2, 60, "2 docs")
        assert proc.terminate() == 0
    status, resolved = es_request(elasticsearch_url, "GET", f"/_resolve/index/{stream}")
    assert status == 200, resolved
    (ds,) = resolved["data_streams"]
    assert ds["name"] == stream and ds["timestamp_field"] == "@timestamp"
    (backing,) = ds["backing_indices"]
    assert backing.startswith(f".ds-{stream}-") and backing.endswith("-000001")
    status, settings = es_request(elasticsearch_url, "GET", f"/{backing}/_settings")
    assert settings[backing]["settings"]["index"]["number_of_replicas"] == "0"

    docs = {d["message"]: d for d in search(elasticsearch_url, stream)}
    plain, parsed = docs["plain line"], docs["json line"]
    types = _mapped_types(elasticsearch_url, stream)
    for doc in (plain, parsed):
        for name, value in _flatten(doc).items():
            assert name in ECS_TYPES, f"{name} is not an ECS (or Filebeat) field"
            expected = ECS_TYPES[name]
            assert types[name] == SAME_FAMILY.get(expected, expected), name
            if expected in ("long",):
                assert isinstance(value, int), name
            else:
                assert isinstance(value, str), name
    assert types["log.level"] == "keyword" and parsed["log"]["level"] == "warn"
    assert plain["ecs"] == {"version": ECS_VERSION}
    assert plain["agent"]["type"] == "logshipper" and plain["agent"]["version"] == __version__
    assert plain["host"]["name"] == plain["agent"]["name"]
    assert plain["container"] == {"name": "app"}
    assert plain["kubernetes"] == {
        "pod": {"name": "web-0", "uid": POD_ENV["POD_UID"]},
        "namespace": "shop",
        "node": {"name": "node-a"},
        "container": {"name": "app"},
        "labels": {"app": "web", "app_kubernetes_io/name": "shop-web"},
    }
    assert plain["event"] == {"dataset": dataset}
    assert plain["data_stream"] == {"type": "logs", "dataset": dataset, "namespace": "default"}
    assert plain["log"] == {"file": {"path": str(app)}, "offset": 0}
    assert parsed["log"]["offset"] == len("plain line\n")
    assert parsed["event"] == {"duration": 1500, "dataset": dataset}

    # restart: the same agent id, a new ephemeral one
    with app.open("a") as f:
        f.write("after restart\n")
    with SidecarProcess("logshipper", env={**env, **POD_ENV}) as proc:
        wait_until(lambda: es_count(elasticsearch_url, stream) == 3, 60, "3 docs")
        assert proc.terminate() == 0
    (again,) = search(elasticsearch_url, stream, {"match_phrase": {"message": "after"}})
    assert again["agent"]["id"] == plain["agent"]["id"]
    assert again["agent"]["ephemeral_id"] != plain["agent"]["ephemeral_id"]
    # the built-in logs-*-* template (priority 100) would lose to ours
    status, tpl = es_request(elasticsearch_url, "GET", f"/_index_template/{template_name(stream)}")
    assert tpl["index_templates"][0]["index_template"]["priority"] > 500


def test_plain_indices_remain_an_option(
    dirs: tuple[Path, Path], elasticsearch_url: str, dataset: str
) -> None:
    """LOGSHIPPER_DATA_STREAM=false: dated plain indices `logshipper-<dataset>-<namespace>-
    YYYY.MM.DD` written with `index`, our template (no data stream, 0 replicas: green on one
    node) mapping parsed JSON strings as keyword."""
    logs, state = dirs
    (logs / "app.log").write_text('{"message":"m","log":{"level":"error"},"custom":"x y"}\n')
    env = _env(
        logs, state, elasticsearch_url, dataset, namespace="ns1", data_stream="false", json="true"
    )
    pattern = f"logshipper-{dataset}-ns1-*"
    template = template_name(f"logshipper-{dataset}-ns1-%Y.%m.%d")
    try:
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda: es_count(elasticsearch_url, pattern) == 1, 60, "1 doc")
            assert proc.terminate() == 0
        status, resolved = es_request(elasticsearch_url, "GET", f"/_resolve/index/{pattern}")
        assert resolved["data_streams"] == []
        (index,) = resolved["indices"]
        assert "data_stream" not in index and index["name"].startswith(f"logshipper-{dataset}")
        status, health = es_request(
            elasticsearch_url, "GET", f"/_cluster/health/{index['name']}?wait_for_status=green"
        )
        assert health["status"] == "green", health
        types = _mapped_types(elasticsearch_url, index["name"])
        assert types["log.level"] == "keyword" and types["custom"] == "keyword"
        assert types["message"] == "text" and types["agent.id"] == "keyword"
    finally:
        delete_index(elasticsearch_url, pattern)
        es_request(elasticsearch_url, "DELETE", f"/_index_template/{template}")


def _backing_settings(url: str, stream: str) -> dict[str, Any]:
    status, resolved = es_request(url, "GET", f"/_resolve/index/{stream}")
    (ds,) = resolved["data_streams"]
    (backing,) = ds["backing_indices"]
    status, settings = es_request(url, "GET", f"/{backing}/_settings")
    assert status == 200, settings
    return dict(settings[backing]["settings"]["index"])


def test_works_with_the_builtin_logs_template_and_ours_wins_over_it(
    dirs: tuple[Path, Path], elasticsearch_url: str, dataset: str
) -> None:
    """Elasticsearch's own `logs-*-*` template (from the distribution's resources, see
    tests/servers/es_builtin.py) is installed for this test's names. Without our template
    the shipper's data stream is made from the built-in one (its `best_compression` codec)
    and every line arrives; with ours (priority 600 > 100) ours makes it (0 replicas, no such
    codec, `log.level` keyword)."""
    logs, state = dirs
    builtin = install_builtin_logs_template(
        elasticsearch_url, distribution(), dataset, f"logs-{dataset}*-*"
    )
    line = '{"message":"m","log":{"level":"info"}}\n'
    (logs / "app.log").write_text(line * 5)
    for suffix, ours in (("b", "false"), ("o", "true")):
        own_state = Path(f"{state}-{suffix}")
        env = _env(
            logs, own_state, elasticsearch_url, dataset + suffix, index_template=ours, json="true"
        )
        own_state.mkdir()
        stream = f"logs-{dataset}{suffix}-default"
        with SidecarProcess("logshipper", env=env) as proc:
            wait_until(lambda s=stream: es_count(elasticsearch_url, s) == 5, 60, "5 docs")
            assert proc.terminate() == 0
        settings = _backing_settings(elasticsearch_url, stream)
        if ours == "false":
            assert settings.get("codec") == "best_compression", settings  # the built-in's
        else:
            assert "codec" not in settings and settings["number_of_replicas"] == "0"
            assert _mapped_types(elasticsearch_url, stream)["log.level"] == "keyword"
    status, body = es_request(elasticsearch_url, "GET", f"/_index_template/{builtin}")
    assert body["index_templates"][0]["index_template"]["priority"] == 100  # Elastic's


def test_an_ilm_policy_the_node_cannot_hold_refuses_the_template_not_the_documents(
    dirs: tuple[Path, Path], elasticsearch_url: str, dataset: str
) -> None:
    """LOGSHIPPER_ILM_POLICY sets `index.lifecycle.name` in the template. This node has no
    ILM, so it refuses the template: one warning names the unknown setting, and the lines
    are still delivered (to a target created without the template)."""
    logs, state = dirs
    (logs / "app.log").write_text("a\nb\n")
    env = _env(logs, state, elasticsearch_url, dataset, ilm_policy="logs")
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(lambda: es_count(elasticsearch_url, f"logs-{dataset}-default") == 2, 60, "2")
        (warning,) = [r for r in proc.log_lines() if "index template not created" in r["msg"]]
        assert "index.lifecycle.name" in warning["error"]
        assert proc.terminate() == 0


def test_data_retention_reaches_the_data_stream_on_a_recent_node(
    dirs: tuple[Path, Path], elasticsearch_recent_url: str, dataset: str
) -> None:
    """LOGSHIPPER_DATA_RETENTION puts `lifecycle.data_retention` in the template; a node of
    8.11 or later (8.19 here) gives it to the data stream it creates (its cluster state;
    the REST handlers of `_data_stream` are in a module the test distribution lacks)."""
    logs, state = dirs
    url = elasticsearch_recent_url
    (logs / "app.log").write_text("a\n")
    env = _env(logs, state, url, dataset, data_retention="7d")
    stream = f"logs-{dataset}-default"
    with SidecarProcess("logshipper", env=env) as proc:
        wait_until(lambda: es_count(url, stream) == 1, 60, "1 doc")
        assert proc.terminate() == 0
    status, state_doc = es_request(url, "GET", "/_cluster/state/metadata")
    assert status == 200, state_doc
    ds = state_doc["metadata"]["data_stream"]["data_stream"][stream]
    assert ds["lifecycle"]["data_retention"] == "7d"
    assert ds["indices"][0]["index_name"].startswith(f".ds-{stream}-")
