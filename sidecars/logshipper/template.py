"""The index template of the target: ECS fields by their ECS types (no text+keyword pairs),
replicas, data stream and lifecycle options."""

from __future__ import annotations

import re
from typing import Any

import orjson

_STRFTIME = re.compile(r"%.")
_STARS = re.compile(r"\*+")


def index_pattern(index: str) -> str:
    """The index pattern matching every index `index` (a name or date pattern) expands to."""
    return _STARS.sub("*", _STRFTIME.sub("*", index.replace("%%", "\0"))).replace("\0", "%")


def template_name(index: str) -> str:
    """`logshipper-<pattern>` with the characters a template name cannot hold replaced."""
    return "logshipper-" + re.sub(r"[^a-z0-9._-]", "_", index_pattern(index).lower())


_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_TEXT = {"type": "text"}
_LONG = {"type": "long"}
_DATE = {"type": "date"}


def _tree(flat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`{"log.level": m}` -> `{"log": {"properties": {"level": m}}}`."""
    root: dict[str, Any] = {}
    for name, mapping in flat.items():
        *parents, leaf = name.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = mapping
    return root


# ECS 8 fields by their ECS types (match_only_text and wildcard as text and keyword, which
# every distribution has): ours, and the ones applications commonly log in JSON
ECS_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": _DATE,
    "message": _TEXT,
    "tags": _KEYWORD,
    "labels": {"type": "object"},
    "ecs.version": _KEYWORD,
    "log.file.path": _KEYWORD,
    "log.offset": _LONG,
    "log.level": _KEYWORD,
    "log.logger": _KEYWORD,
    "log.origin.file.name": _KEYWORD,
    "log.origin.file.line": _LONG,
    "log.origin.function": _KEYWORD,
    "host.name": _KEYWORD,
    "host.hostname": _KEYWORD,
    **{f"agent.{f}": _KEYWORD for f in ("type", "name", "version", "id", "ephemeral_id")},
    **{f"container.{f}": _KEYWORD for f in ("name", "id", "image.name", "runtime")},
    **{f"data_stream.{f}": _KEYWORD for f in ("type", "dataset", "namespace")},
    **{
        f"event.{f}": _KEYWORD
        for f in ("dataset", "module", "action", "category", "kind", "outcome", "type", "code")
    },
    **{f"event.{f}": _DATE for f in ("created", "start", "end", "ingested")},
    "event.duration": _LONG,
    "event.severity": _LONG,
    "event.sequence": _LONG,
    "event.original": {"type": "keyword", "index": False, "doc_values": False},
    **{f"service.{f}": _KEYWORD for f in ("name", "version", "environment", "id", "type")},
    "trace.id": _KEYWORD,
    "span.id": _KEYWORD,
    "transaction.id": _KEYWORD,
    "error.type": _KEYWORD,
    "error.code": _KEYWORD,
    "error.id": _KEYWORD,
    "error.message": _TEXT,
    "error.stack_trace": _TEXT,
    "process.pid": _LONG,
    "process.name": _KEYWORD,
    "process.thread.id": _LONG,
    "process.thread.name": _KEYWORD,
    "http.request.method": _KEYWORD,
    "http.request.id": _KEYWORD,
    "http.request.bytes": _LONG,
    "http.response.status_code": _LONG,
    "http.response.bytes": _LONG,
    "url.original": _KEYWORD,
    "url.path": _KEYWORD,
    "url.domain": _KEYWORD,
    "user_agent.original": _KEYWORD,
    "client.ip": {"type": "ip"},
    "source.ip": {"type": "ip"},
    "user.name": _KEYWORD,
    "user.id": _KEYWORD,
}


def template_body(
    index: str,
    priority: int,
    *,
    replicas: int = 0,
    data_stream: bool = False,
    ilm_policy: str = "",
    data_retention: str = "",
) -> dict[str, Any]:
    """A composable index template: the ECS fields by their ECS types, `message` text only
    (dynamic mapping would add a `keyword` sub-field of every message, doubling the indexing
    work), Kubernetes metadata and other strings (parsed JSON fields) keyword only: ECS's
    default type, and what `log.level` and its like need to be aggregated on."""
    settings: dict[str, Any] = {"index": {"number_of_replicas": replicas}}
    if ilm_policy:
        settings["index"]["lifecycle"] = {"name": ilm_policy}
    template: dict[str, Any] = {
        "settings": settings,
        "mappings": {
            "dynamic_templates": [
                {
                    "kubernetes_keywords": {
                        "path_match": "kubernetes.*",
                        "match_mapping_type": "string",
                        "mapping": _KEYWORD,
                    }
                },
                {"strings_as_keyword": {"match_mapping_type": "string", "mapping": _KEYWORD}},
            ],
            "properties": _tree(ECS_FIELDS),
        },
    }
    if data_retention:
        template["lifecycle"] = {"data_retention": data_retention}
    body: dict[str, Any] = {
        "index_patterns": [index_pattern(index)],
        "priority": priority,
        "_meta": {"managed_by": "logshipper"},
        "template": template,
    }
    if data_stream:
        body["data_stream"] = {}
    return body


def template_request(index: str, priority: int, **options: Any) -> tuple[str, bytes]:
    """Path and body of the PUT that creates the template, never replacing one already there
    (`create=true`): an operator's edits to it are kept. `options`: see template_body."""
    path = f"/_index_template/{template_name(index)}?create=true"  # [a-z0-9._-]: no escaping
    return path, orjson.dumps(template_body(index, priority, **options))
