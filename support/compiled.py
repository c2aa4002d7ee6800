"""The modules compiled with mypyc: build them in place, next to their sources, or remove them.

    python -m support.compiled            # compile what pyproject.toml lists, unless up to date
    python -m support.compiled --clean    # remove the compiled modules (the sources run)
    python -m support.compiled --list     # the compiled files, one path a line

The list is `[tool.sidecars.compiled]` in pyproject.toml, by the shared library (group) each
module's code is built into. Python's import prefers an extension
module (`head.cpython-311-x86_64-linux-gnu.so`) to the `.py` beside it, so the compiled modules
run wherever they exist; `SIDECARS_PURE=1` hides them (sidecars/__init__.py). The build is
recorded in build/mypyc/stamp: a digest of every source under sidecars/ (mypyc compiles a module
with the types of all it imports), the list, the flags, support/layout.txt, mypy's and the
interpreter's versions. Without a C compiler or the interpreter's headers it says so in one line
and leaves the sources to run.

On Linux the libraries are linked for a small idle footprint (the same speed: instructions per
request measured with bench/instructions.py): hidden symbols (only `PyInit_*` is exported, so no
symbol table and relocations for the rest), relative relocations packed (`DT_RELR`, glibc 2.36+),
and the functions a sidecar runs from start to idle placed together (support/layout.py).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from support import layout

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mypyc"
STAMP = BUILD / "stamp"
# mypyc's shared libraries, named by their group in pyproject.toml (sidecars/runtime/
# _compiled__mypyc.*.so, ...): a sidecar loads the code of its own package and the runtime's, not
# the others' (the ambassador's in one library made every sidecar 0.5 MiB larger), and an http or
# tcp ambassador not the redis and memcached modes' (sidecars/ambassador/_sharded__mypyc.*.so)
LIBRARY = "__mypyc"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def groups() -> dict[str, list[str]]:
    """The modules to compile by group, the module of the shared library they are built into
    (`[tool.sidecars.compiled]` in pyproject.toml); a group's modules are all in its package."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = {str(g): [str(m) for m in ms] for g, ms in meta["tool"]["sidecars"]["compiled"].items()}
    for group, members in found.items():
        package = group.rpartition(".")[0] + "."
        stray = [m for m in members if not m.startswith(package)]
        if stray or not members:
            raise ValueError(f"pyproject.toml: compiled group {group}: {stray or 'no modules'}")
    return found


def modules() -> list[str]:
    """The dotted names of the modules to compile, group by group."""
    return [m for members in groups().values() for m in members]


def source(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def outputs() -> list[Path]:
    """Every compiled file now in the tree (this interpreter's suffix or another's)."""
    return sorted(p for p in (ROOT / "sidecars").rglob("*.so") if p.is_file())


def can_compile() -> str:
    """Empty when a C compiler and this interpreter's headers are here, else what is missing."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return f"no Python headers (Python.h in {sysconfig.get_paths()['include']})"
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "no mypyc (mypy)"
    return ""


def flags() -> tuple[list[str], list[str]]:
    """The extra compiler and linker flags (none off Linux, where GNU ld's script is unknown)."""
    if not sys.platform.startswith("linux"):
        return [], []
    compile_args = ["-fvisibility=hidden", "-ffunction-sections"]
    link_args = ["-Wl,-z,pack-relative-relocs", f"-Wl,-T,{BUILD / 'layout.ld'}"]
    return compile_args, link_args


def digest() -> str:
    import mypy.version

    h = hashlib.sha256()
    h.update(f"{sys.version}|{SUFFIX}|{mypy.version.__version__}|{groups()}".encode())
    h.update(f"{flags()}|{layout.linker_script()}".encode())
    for path in sorted((ROOT / "sidecars").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def expected() -> list[Path]:
    """The files a build of the list makes."""
    return [ROOT / (g.replace(".", "/") + LIBRARY + SUFFIX) for g in groups()] + [
        ROOT / (m.replace(".", "/") + SUFFIX) for m in modules()
    ]


def up_to_date() -> bool:
    return (
        STAMP.exists()
        and STAMP.read_text().strip() == digest()
        and set(outputs()) == set(expected())
    )


def clean() -> None:
    for path in outputs():
        path.unlink()
    STAMP.unlink(missing_ok=True)


def build() -> int:
    """Compile the list in place unless up to date; 0 when the tree is ready to run."""
    missing = can_compile()
    if missing:
        clean()
        print(f"compile: {missing}: the sidecars run as pure Python (slower)", file=sys.stderr)
        return 0
    if up_to_date():
        return 0
    clean()
    # the objects too: setuptools reuses one newer than its C file, built with other flags
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    (BUILD / "layout.ld").write_text(layout.linker_script())
    compile_args, link_args = flags()
    separate = [
        ([str(source(m).relative_to(ROOT)) for m in members], name)
        for name, members in groups().items()
    ]
    paths = [path for members, _ in separate for path in members]
    print(f"compile: mypyc on {len(paths)} modules", file=sys.stderr)
    setup = (
        "import sys\n"
        "from setuptools import Distribution\n"
        "from mypyc.build import mypycify\n"
        f"exts = mypycify({paths!r}, separate={separate!r}, target_dir={str(BUILD)!r},\n"
        "                opt_level='3', debug_level='1')\n"
        "for ext in exts:\n"
        f"    ext.extra_compile_args = [*ext.extra_compile_args, *{compile_args!r}]\n"
        f"    ext.extra_link_args = [*ext.extra_link_args, *{link_args!r}]\n"
        "dist = Distribution({'name': 'sidecars-compiled', 'ext_modules': exts,\n"
        "                     'script_name': 'compile'})\n"
        f"dist.script_args = ['build_ext', '--inplace', '--build-temp', {str(BUILD)!r},\n"
        f"                    '--build-lib', {str(BUILD / 'lib')!r},\n"
        f"                    '-j', str({os.cpu_count() or 1})]\n"
        "dist.parse_command_line()\n"
        "dist.run_commands()\n"
    )
    # From ROOT, for --inplace; a bare Distribution reads no pyproject.toml or setup.cfg.
    done = subprocess.run(
        [sys.executable, "-c", setup],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
        print("compile: mypyc failed (above)", file=sys.stderr)
        clean()
        return 1
    made = set(outputs())
    if made != set(expected()):
        print(f"compile: expected {sorted(map(str, expected()))}, made {sorted(map(str, made))}")
        clean()
        return 1
    STAMP.write_text(digest() + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--clean"]:
        clean()
        return 0
    if argv == ["--list"]:
        print("\n".join(str(p.relative_to(ROOT)) for p in outputs()))
        return 0
    if argv:
        print(f"compile: unknown arguments {argv} (expected none, --clean or --list)")
        return 2
    return build()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
