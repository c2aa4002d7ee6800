"""Unit tests of logshipper's index template: pattern, name and mapping of our ECS fields."""

from __future__ import annotations

import orjson
import pytest

from sidecars.logshipper.template import (
    index_pattern,
    template_body,
    template_name,
    template_request,
)

pytestmark = pytest.mark.unit


def test_pattern_covers_every_date_the_index_expands_to() -> None:
    assert index_pattern("logs-app-%Y.%m.%d") == "logs-app-*.*.*"
    assert index_pattern("logs-%Y%m%d-x") == "logs-*-x"
    assert index_pattern("plain") == "plain"
    assert index_pattern("a%%b-%Y") == "a%b-*"


def test_name_is_a_valid_template_name() -> None:
    assert template_name("logs-app-%Y.%m.%d") == "logshipper-logs-app-_._._"
    assert template_name("plain") == "logshipper-plain"


def test_body_maps_our_fields_without_text_keyword_pairs() -> None:
    body = template_body("logs-%Y", 200)
    assert body["index_patterns"] == ["logs-*"] and body["priority"] == 200
    props = body["template"]["mappings"]["properties"]
    assert props["message"] == {"type": "text"}
    assert props["@timestamp"] == {"type": "date"}
    assert props["log"]["properties"]["file"]["properties"]["path"]["type"] == "keyword"
    assert props["log"]["properties"]["offset"] == {"type": "long"}


def test_request_never_replaces_an_existing_template() -> None:
    path, body = template_request("logs-%Y", 7)
    assert path == "/_index_template/logshipper-logs-_?create=true"
    assert orjson.loads(body)["priority"] == 7
