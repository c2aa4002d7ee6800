"""Suite-wide configuration: markers by folder, and the fixture plugins every suite may use."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real Elasticsearch node (and its TLS proxy) for every suite that ships logs.
pytest_plugins = ["tests.servers.elasticsearch"]

HERE = Path(__file__).parent
_SUITES = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests are marked by the folder they live in, so `-m unit` etc. select whole suites."""
    for item in items:
        suite = Path(str(item.path)).relative_to(HERE).parts[0]
        if suite in _SUITES:
            item.add_marker(getattr(pytest.mark, suite))
