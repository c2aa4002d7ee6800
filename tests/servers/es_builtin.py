"""Elasticsearch's own built-in `logs-*-*` index template, installed into the test node.

The integ-test distribution leaves out the x-pack-stack plugin that installs it, but the
template's JSON resources ship in its x-pack-core module (`logs-template.json`,
`logs-mappings.json`, ... up to 8.11; `logs@template.json`, `ecs@mappings.json`, ... in the
x-pack-template-resources jar from 8.12). They are read from there, their placeholders filled
and the parts this node cannot hold taken out: the ILM setting and the default ingest pipeline
(no ILM and no ingest-common module), `constant_keyword`, `match_only_text` and `wildcard`
(modules absent) as `keyword` / `text`.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from tests.servers.elasticsearch import es_request

_PLACEHOLDER = re.compile(r"\$\{xpack\.stack\.template\.(version|deprecated)\}")
_SUBSTITUTES = {"constant_keyword": "keyword", "match_only_text": "text", "wildcard": "keyword"}


def _resources(dist: Path) -> dict[str, str]:
    """`name.json` -> text, from every jar of the distribution's x-pack-core module."""
    found: dict[str, str] = {}
    for jar in sorted((dist / "modules" / "x-pack-core").glob("*.jar")):
        with zipfile.ZipFile(jar) as z:
            for name in z.namelist():
                if "/" not in name and name.endswith(".json"):
                    found[name] = z.read(name).decode()
    return found


def _load(text: str) -> dict[str, Any]:
    filled = _PLACEHOLDER.sub(lambda m: "1" if m.group(1) == "version" else "false", text)
    return dict(json.loads(filled))


def _adapt(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("lifecycle", "default_pipeline", "final_pipeline") and isinstance(
                value, dict | str
            ):
                continue  # index.lifecycle.name, index.default_pipeline
            if key == "type" and isinstance(value, str) and value in _SUBSTITUTES:
                out[key] = _SUBSTITUTES[value]
            elif key == "value" and node.get("type") == "constant_keyword":
                continue
            else:
                out[key] = _adapt(value)
        return out
    if isinstance(node, list):
        return [_adapt(v) for v in node]
    return node


def install_builtin_logs_template(url: str, dist: Path, suffix: str, pattern: str) -> str:
    """Install the distribution's built-in logs template and its component templates, each
    named with `suffix` (the node is shared), matching `pattern` instead of `logs-*-*` (its
    data streams cannot be deleted on this node, and so neither can a template they use).
    Returns the index template's name; its priority and everything else are Elastic's."""
    resources = _resources(dist)
    main = "logs@template.json" if "logs@template.json" in resources else "logs-template.json"
    template = _adapt(_load(resources[main]))
    components = []
    for component in template["composed_of"]:
        text = resources.get(f"{component}.json")
        if text is None:
            continue  # logs@custom: Elastic's own template lists it as optional
        body = _adapt(_load(text))
        status, answer = es_request(url, "PUT", f"/_component_template/{component}-{suffix}", body)
        assert status == 200, (component, answer)
        components.append(f"{component}-{suffix}")
    template["composed_of"] = components
    template.pop("ignore_missing_component_templates", None)
    template["index_patterns"] = [pattern]
    name = f"logs-builtin-{suffix}"
    status, answer = es_request(url, "PUT", f"/_index_template/{name}", template)
    assert status == 200, answer
    return name
