"""Suite-wide configuration: markers by folder, and the fixture plugins every suite may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import compiled

# The real Elasticsearch node (and its TLS proxy) for every suite that ships logs, and the
# logshipper tests' shared fixtures.
pytest_plugins = ["tests.servers.elasticsearch", "tests.logshipper_support"]

HERE = Path(__file__).parent
_SUITES = ("unit", "integration", "e2e", "fuzz")


# The first test to use the Elasticsearch node starts it, on a fresh machine after a Maven
# download: its fixture's own deadline (es-node's, 180 s) must not be cut by the default timeout.
_NODE_FIXTURES = {
    "elasticsearch_url",
    "elasticsearch_small_queue_url",
    "elasticsearch_secure",
    "elasticsearch_recent_url",
}
_NODE_TIMEOUT = 600


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compiled modules older than a source under sidecars/ would run stale code: rebuilt first."""
    if os.environ.get("SIDECARS_PURE") == "1" or not compiled.outputs() or compiled.up_to_date():
        return
    if compiled.build() != 0:
        pytest.exit("the compiled modules are stale and scripts/compile failed", returncode=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests are marked by the folder they live in, so `-m unit` etc. select whole suites."""
    for item in items:
        suite = Path(str(item.path)).relative_to(HERE).parts[0]
        if suite in _SUITES:
            item.add_marker(getattr(pytest.mark, suite))
        uses_node = _NODE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_node and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(_NODE_TIMEOUT))
