"""The static ECS fields of every document, as Filebeat and Elastic Agent write them for a
container log: built once at start, so the per-line cost is copying their bytes."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from sidecars import __version__

ECS_VERSION = "8.11.0"  # a released ECS 8 whose field reference has every field written here
AGENT_TYPE = "logshipper"
_AGENT_ID_FILE = "agent-id"
_LABEL_LINE = re.compile(r'([^=\s]+)="((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def agent_id(state_dir: str) -> str:
    """A UUID kept beside the checkpoints, so it stays the same across restarts (as
    Filebeat's `meta.json`). A missing or unreadable one is replaced by a new one."""
    path = os.path.join(state_dir, _AGENT_ID_FILE)
    with contextlib.suppress(OSError, ValueError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return str(uuid.UUID(os.read(fd, 64).decode().strip()))
        finally:
            os.close(fd)
    new = str(uuid.uuid4())
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, new.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return new


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), value)


def parse_labels(text: str) -> dict[str, str]:
    """The downward API's labels file (`key="value"` lines, values Go-quoted). Keys are
    de-dotted (`app.kubernetes.io/name` -> `app_kubernetes_io/name`) as Filebeat does, so
    that a label `app` and a label `app.kubernetes.io/name` cannot clash in the mapping."""
    labels = {}
    for line in text.splitlines():
        match = _LABEL_LINE.fullmatch(line.strip())
        if match:
            labels[match.group(1).replace(".", "_")] = _unquote(match.group(2))
    return labels


def _drop_empty(fields: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            value = _drop_empty(value)
        if value:
            out[key] = value
    return out


def static_fields(
    *,
    dataset: str,
    namespace: str,
    agent: str,
    hostname: str | None = None,
    pod: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    ephemeral_id: str | None = None,
) -> dict[str, Any]:
    """Every field that is the same for all documents of this shipper. `pod` holds the
    downward API values (`name`, `uid`, `namespace`, `node`, `container`); empty ones are left
    out."""
    host = hostname or socket.gethostname()
    pod = pod or {}
    fields: dict[str, Any] = {
        "ecs": {"version": ECS_VERSION},
        "host": {"name": host},
        "agent": {
            "type": AGENT_TYPE,
            "name": host,
            "version": __version__,
            "id": agent,
            "ephemeral_id": ephemeral_id or str(uuid.uuid4()),
        },
        "container": {"name": pod.get("container", "")},
        "kubernetes": {
            "pod": {"name": pod.get("name", ""), "uid": pod.get("uid", "")},
            "namespace": pod.get("namespace", ""),
            "node": {"name": pod.get("node", "")},
            "container": {"name": pod.get("container", "")},
            "labels": dict(labels or {}),
        },
        "event": {"dataset": dataset},
        "data_stream": {"type": "logs", "dataset": dataset, "namespace": namespace},
    }
    return _drop_empty(fields)


def merge(doc: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Put `fields` into a parsed JSON document: ours win, the app's other fields in the same
    objects stay (an app's `event.action` next to our `event.dataset`), and an app's value
    that is not an object where ours is (structlog's `event` text, an access log's `host` or
    `agent` string) is kept as `<name>.original` instead of being lost."""
    for key, value in fields.items():
        old = doc.get(key)
        if isinstance(value, Mapping):
            if isinstance(old, dict):
                merge(old, value)
                continue
            if old is not None:
                value = {**value, "original": old}
        doc[key] = value
