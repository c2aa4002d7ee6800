"""warloader footprint: a path-only init container never loads the HTTP client or the watcher."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.helpers import free_port, run_sidecar
from tests.warloader_support import artifact_server, war_bytes

pytestmark = pytest.mark.integration

# Loaded into the real process through PYTHONPATH: at exit, write the names of the modules it
# imported to the file named by WARLOADER_TEST_MODULES_OUT (the `-m` run itself is unchanged).
SITECUSTOMIZE = """
import atexit, json, os, sys

def _dump():
    with open(os.environ["WARLOADER_TEST_MODULES_OUT"], "w") as f:
        json.dump(sorted(sys.modules), f)

atexit.register(_dump)
"""

HEAVY = (
    "aiohttp",
    "sidecars.warloader.fetch",
    "sidecars.warloader.watch",
    "sidecars.runtime.fileevents",
)


def loaded_modules(tmp_path: Path, sources: str) -> set[str]:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "modules.json"
    env = {
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
        "WARLOADER_TEST_MODULES_OUT": str(out),
        "WARLOADER_SOURCES": sources,
        "WARLOADER_DEST": str(tmp_path / "dest"),
        "WARLOADER_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
    }
    done = run_sidecar("warloader", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text()))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] == HEAVY[0] or m in HEAVY[1:]}


async def test_path_only_run_imports_no_http_client_nor_watcher(tmp_path: Path) -> None:
    war = tmp_path / "sample.war"
    war.write_bytes(war_bytes())
    modules = await asyncio.to_thread(loaded_modules, tmp_path, str(war))
    assert (tmp_path / "dest" / "sample.war").read_bytes() == war.read_bytes()
    assert "sidecars.warloader.install" in modules  # it did run the installer
    assert heavy(modules) == set()
    assert "sidecars.warloader.extract" not in modules  # a plain copy needs no unpacker


async def test_a_url_source_loads_the_http_client(tmp_path: Path) -> None:
    async with artifact_server() as srv:
        url = srv.put("/sample.war", war_bytes())
        modules = await asyncio.to_thread(loaded_modules, tmp_path, url)
    assert {"aiohttp", "sidecars.warloader.fetch"} <= modules
    assert "sidecars.runtime.fileevents" not in modules
