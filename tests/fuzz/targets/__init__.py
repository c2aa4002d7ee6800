"""The fuzz targets: one module per parser, each with `fuzz(data: bytes) -> None` and `MAX_LEN`.

A target asserts the parser's contract: it returns a value or raises only its documented
error, and what it returns keeps the parser's own invariants. Anything else escapes `fuzz`
and is a crash. Hangs and runaway memory are caught by the runner's per-input limits.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

TARGETS = (
    "prometheus_text",
    "health_rules",
    "health_json",
    "archive",
    "settings_values",
    "listener_config",
    "member_file",
    "line_framing",
    "multiline",
    "documents",
    "checkpoint_file",
    "bulk_answer",
    "install_record",
    "http_request_head",
    "http_response_head",
    "http_answer",
    "admin_request_head",
    "chunked_body",
    "inject_yaml",
    "resp_stream",
    "memcached_text",
)
CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def load(name: str) -> ModuleType:
    """The target module `name` (a KeyError-like ValueError for an unknown name)."""
    if name not in TARGETS:
        raise ValueError(f"unknown fuzz target {name!r}; known: {', '.join(TARGETS)}")
    return importlib.import_module(f"{__name__}.{name}")


def seeds(name: str) -> list[Path]:
    """The seed inputs kept in the repository for `name`."""
    return sorted(p for p in (CORPUS / name).iterdir() if p.is_file())
