"""What each sidecar imports at start decides its idle RSS and start time (issue #3's goals):
none of them may pull aiohttp or the Elasticsearch API package in by accident, nor PyYAML,
which only a YAML document (a listener or rules file, a setting) needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY = ("aiohttp", "elasticsearch", "yarl", "yaml")


@pytest.mark.parametrize("name", ["logshipper", "ambassador", "adapter", "warloader"])
def test_starting_a_sidecar_imports_no_heavy_package(name: str) -> None:
    code = (
        f"import sys, sidecars.{name}.service, sidecars.runtime.admin\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
