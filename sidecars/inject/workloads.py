"""Where a pod spec sits in each kind of workload, and the documents of a file or a List."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from sidecars.inject.errors import InjectError

# kind -> keys from the document to its pod template (the Pod is its own template)
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
MAX_LIST_DEPTH = 8


@dataclass
class Workload:
    kind: str
    name: str
    metadata: MutableMapping[str, Any]  # the workload's own
    template: MutableMapping[str, Any]  # its pod template (metadata and spec)

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"

    def annotations(self) -> dict[str, Any]:
        """The workload's annotations, then its pod template's (which win)."""
        out: dict[str, Any] = {}
        for meta in (self.metadata, self.template.get("metadata")):
            if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
                out.update(meta["annotations"])
        return out

    def template_annotations(self) -> MutableMapping[str, Any]:
        """The pod template's annotations, created if missing (inject records itself there)."""
        if self.template.get("metadata") is None:
            self.template["metadata"] = CommentedMap()
        meta = self.template["metadata"]
        if meta.get("annotations") is None:
            meta["annotations"] = CommentedMap()
        annotations: MutableMapping[str, Any] = meta["annotations"]
        return annotations

    def check(self) -> None:
        """Metadata and annotations that are there must be mappings (never replaced)."""
        template_meta = self.template.get("metadata")
        if template_meta is not None and not isinstance(template_meta, dict):
            raise InjectError("the pod template's metadata is not a mapping")
        for where, meta in (("metadata", self.metadata), ("template", template_meta or {})):
            annotations = meta.get("annotations")
            if annotations is not None and not isinstance(annotations, dict):
                raise InjectError(f"{where} annotations are not a mapping")


def _dig(doc: MutableMapping[str, Any], path: tuple[str, ...], label: str) -> Any:
    node: Any = doc
    for i, key in enumerate(path):
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise InjectError(f"{label}: {'.'.join(path[: i + 1])} is missing or not a mapping")
    return node


def workloads(doc: Any, depth: int = 0) -> Iterator[Workload]:
    """The workloads in one document: itself, or the items of a List; other kinds: none."""
    if not isinstance(doc, dict):
        return
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        if depth >= MAX_LIST_DEPTH:
            raise InjectError(f"Lists nested deeper than {MAX_LIST_DEPTH}")
        for item in doc["items"]:
            yield from workloads(item, depth + 1)
        return
    if not isinstance(kind, str) or kind not in TEMPLATE_PATHS:
        return
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise InjectError(f"a {kind} without metadata")
    name = metadata.get("name")
    name = name if isinstance(name, str) else "?"  # never str() a list: it may be an alias bomb
    label = f"{kind}/{name}"
    template = _dig(doc, TEMPLATE_PATHS[kind], label)
    if not isinstance(template.get("spec"), dict):
        raise InjectError(f"{label}: its pod spec is missing or not a mapping")
    yield Workload(kind, name, metadata, template)
