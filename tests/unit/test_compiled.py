"""The modules pyproject.toml lists as compiled run compiled (mypyc) wherever scripts/compile
could build them, and from their sources with SIDECARS_PURE=1 (scripts/test's second pass)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from support import compiled

IMPORT = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\n"
IMPORT += "print(*sys.modules)"
SHOW = "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"


def loaded_from(pure: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIDECARS_PURE"}
    if pure:
        env["SIDECARS_PURE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SHOW, *compiled.modules()],
        env=env,
        cwd=compiled.ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.split()


def test_this_run_uses_the_variant_it_asked_for() -> None:
    """In this test process: the sources under SIDECARS_PURE=1, else the compiled modules when a
    compiler is here (scripts/setup built them), else the sources."""
    pure = os.environ.get("SIDECARS_PURE") == "1" or bool(compiled.can_compile())
    for name in compiled.modules():
        path = str(importlib.import_module(name).__file__)
        if pure:
            assert path.endswith(".py"), f"{name} runs from {path}"
        else:
            assert path.endswith(compiled.SUFFIX), f"{name} runs from {path}: run scripts/compile"


def test_sidecars_pure_runs_the_sources() -> None:
    """SIDECARS_PURE=1 imports every listed module from its .py even where a compiled one is."""
    files = loaded_from(pure=True)
    assert len(files) == len(compiled.modules())
    assert all(f.endswith(".py") for f in files), files


def test_without_sidecars_pure_the_compiled_modules_run() -> None:
    """Python's import prefers the compiled module beside the source: each listed module loads
    from its .so, and the sources of the rest of the tree are still imported."""
    if compiled.can_compile():
        pytest.skip(f"nothing compiled here: {compiled.can_compile()}")
    files = loaded_from(pure=False)
    # by name only: mypyc sets the __file__ of a module its package's library imports first as
    # if that library were at the top of the tree (sidecars/ambassador/sidecars/ambassador/...).
    names = [os.path.basename(f) for f in files]
    assert names == [compiled.source(m).stem + compiled.SUFFIX for m in compiled.modules()]


def test_each_group_is_one_library_in_its_package() -> None:
    """pyproject.toml lists each compiled module once, in a group (a shared library) of its own
    package; the redis and memcached modes' modules are a library apart from the http/tcp path."""
    groups = compiled.groups()
    assert len(compiled.modules()) == len(set(compiled.modules()))
    for group, members in groups.items():
        assert all(m.startswith(group.rpartition(".")[0] + ".") for m in members), group
    assert "sidecars.ambassador.redis" in groups["sidecars.ambassador._sharded"]
    assert "sidecars.ambassador.http" in groups["sidecars.ambassador._compiled"]


def test_the_http_and_tcp_path_loads_no_sharded_module() -> None:
    """Importing the http and tcp modes' modules loads none of the sharded group's modules nor,
    compiled, its library: an http or tcp ambassador maps and relocates none of that code."""
    ours = compiled.groups()["sidecars.ambassador._compiled"]
    done = subprocess.run(
        [sys.executable, "-c", IMPORT, *ours],
        cwd=compiled.ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(done.stdout.split())
    sharded = {"sidecars.ambassador._sharded__mypyc"}
    sharded.update(compiled.groups()["sidecars.ambassador._sharded"])
    assert not loaded & sharded, sorted(loaded & sharded)
    if not compiled.can_compile() and os.environ.get("SIDECARS_PURE") != "1":
        assert "sidecars.ambassador._compiled__mypyc" in loaded
