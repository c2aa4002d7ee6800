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


def test_the_ambassador_starts_without_datetime_or_ipaddress() -> None:
    """Its members' wall-clock times are formatted by the runtime's `utc_iso` and the DNS
    server setting's address is parsed only when one is set: neither module at start. (Counted
    from the first sidecars import: a development install's path finder imports ipaddress.)"""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import sidecars.ambassador.service, sidecars.runtime.admin\n"
        "new = set(sys.modules) - before\n"
        "print(' '.join(m for m in ('datetime', 'ipaddress') if m in new))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
