"""The index template that maps logshipper's own ECS fields explicitly (no text+keyword pairs)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

_STRFTIME = re.compile(r"%.")
_STARS = re.compile(r"\*+")


def index_pattern(index: str) -> str:
    """The index pattern matching every index `index` (a name or date pattern) expands to."""
    return _STARS.sub("*", _STRFTIME.sub("*", index.replace("%%", "\0"))).replace("\0", "%")


def template_name(index: str) -> str:
    """`logshipper-<pattern>` with the characters a template name cannot hold replaced."""
    return "logshipper-" + re.sub(r"[^a-z0-9._-]", "_", index_pattern(index).lower())


def template_body(index: str, priority: int) -> dict[str, Any]:
    """A composable index template: `@timestamp` date, `message` text only (dynamic mapping
    would add a `keyword` sub-field of every message, doubling the indexing work), the file
    path and tags keyword only, the offset a long, Kubernetes metadata keyword only."""
    keyword = {"type": "keyword", "ignore_above": 1024}
    return {
        "index_patterns": [index_pattern(index)],
        "priority": priority,
        "_meta": {"managed_by": "logshipper"},
        "template": {
            "mappings": {
                "dynamic_templates": [
                    {
                        "kubernetes_keywords": {
                            "path_match": "kubernetes.*",
                            "match_mapping_type": "string",
                            "mapping": keyword,
                        }
                    }
                ],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text"},
                    "tags": keyword,
                    "log": {
                        "properties": {
                            "file": {"properties": {"path": keyword}},
                            "offset": {"type": "long"},
                        }
                    },
                },
            }
        },
    }


def template_request(index: str, priority: int) -> tuple[str, bytes]:
    """Path and body of the PUT that creates the template, never replacing one already there
    (`create=true`): an operator's edits to it are kept."""
    path = f"/_index_template/{quote(template_name(index), safe='')}?create=true"
    return path, orjson.dumps(template_body(index, priority))
