"""The order of the compiled libraries' code: the functions a sidecar runs from its start to idle
first, in one run, the rest after them.

    python -m support.layout    # record support/layout.txt (valgrind's callgrind; a few minutes)

Reading a page of a library maps the 64 KiB around it (the kernel's fault-around), so a
library whose start-up code lies scattered through its text is resident almost whole at idle:
1.2 MiB of the ambassador's. support/compiled.py links each function layout.txt names into one
section ahead of the rest (`-ffunction-sections` and a linker script's `INSERT BEFORE .text`),
and an idle sidecar touches little else. The list is a measured profile: a function it does not
name (new, or renamed by mypyc) is linked with the rest and costs memory, never correctness.
Record it again when the compiled list or the start-up path changes much.

The record runs the ambassador in each mode under callgrind, with the settings bench/images.py
gives it (one member), until `/readyz` is 200 and six seconds more (past the first health
checks), then reads which functions of the compiled libraries ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from support.process import free_port, http_get, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
LIST = ROOT / "support" / "layout.txt"
MODES = ("tcp", "http", "redis", "memcached")
IDLE = 6.0  # past the first round of health checks (every 5 s by default)
# callgrind_annotate's lines: "  123 (0.01%)  file.c:function [object]"; "'2" marks a recursion.
# The object is "???" for a function linked outside `.text` (valgrind reads that section only):
# the names are matched against the libraries' own symbols instead.
LINE = re.compile(r":([A-Za-z_][\w.]*)(?:'\d+)? \[\S+\]$")


def names() -> list[str]:
    """The functions layout.txt names, in its order (none when it is absent)."""
    if not LIST.exists():
        return []
    lines = LIST.read_text().splitlines()
    return [n for n in (line.strip() for line in lines) if n and not n.startswith("#")]


def linker_script() -> str:
    """A linker script placing the listed functions' sections ahead of the rest of `.text`."""
    rules = "".join(f"    *(.text.{name})\n" for name in names())
    return f"SECTIONS\n{{\n  .text.idle :\n  {{\n{rules}  }}\n}}\nINSERT BEFORE .text;\n"


def defined() -> set[str]:
    """The functions the compiled libraries define (`nm`)."""
    libraries = [str(p) for p in (ROOT / "sidecars").rglob("*__mypyc.*.so")]
    if not libraries:
        raise RuntimeError("no compiled library under sidecars/ (scripts/compile first)")
    shown = subprocess.run(
        ["nm", "--defined-only", *libraries], capture_output=True, text=True, check=True
    ).stdout
    return {f[2] for f in (line.split() for line in shown.splitlines()) if len(f) == 3}


def valgrind_pid(wrapper: int) -> int:
    """The process callgrind runs in: Debian's `valgrind` script starts `valgrind.bin`."""
    children = Path(f"/proc/{wrapper}/task/{wrapper}/children")
    found = children.read_text().split() if children.exists() else []
    return int(found[0]) if found else wrapper


def record(mode: str, work: Path, ours: set[str]) -> set[str]:
    """The compiled functions one start of the ambassador in `mode` runs until idle."""
    admin = free_port()
    out = work / f"{mode}.out"
    env = {
        **os.environ,
        "AMBASSADOR_MODE": mode,
        "AMBASSADOR_UPSTREAMS": "127.0.0.1:8080",
        "AMBASSADOR_LISTEN": f"127.0.0.1:{free_port()}",
        "AMBASSADOR_ADMIN_ADDR": f"127.0.0.1:{admin}",
    }
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    argv += [sys.executable, "-m", "sidecars.ambassador"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        ready = f"http://127.0.0.1:{admin}/readyz"
        wait_until(lambda: http_get(ready)[0] == 200, 120, f"the ambassador ({mode}) ready")
        time.sleep(IDLE)
        pid = valgrind_pid(proc.pid)
        subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, check=True)
        wait_until(lambda: any(work.glob(f"{mode}.out.*.1")), 60, "callgrind's dump")
    finally:
        stop_process(proc, timeout=60)
    dump = sorted(work.glob(f"{mode}.out.*.1"))[0]
    shown = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {m.group(1) for m in map(LINE.search, shown.splitlines()) if m} & ours
    if not any(name.startswith("PyInit_") for name in found):
        raise RuntimeError(f"{dump.name}: no compiled library ran (scripts/compile first)")
    return found


def main() -> int:
    missing = [tool for tool in ("valgrind", "callgrind_control") if not shutil.which(tool)]
    if missing:
        print(f"layout: needs {', '.join(missing)} (Debian package valgrind)", file=sys.stderr)
        return 2
    ran: dict[str, set[str]] = {}
    ours = defined()
    with tempfile.TemporaryDirectory(prefix="layout-") as tmp:
        for mode in MODES:
            ran[mode] = record(mode, Path(tmp), ours)
            print(f"layout: {mode}: {len(ran[mode])} compiled functions ran", file=sys.stderr)
    LIST.write_text(listing(ran))
    print(f"layout: {len(set().union(*ran.values()))} functions in {LIST.name}", file=sys.stderr)
    return 0


def listing(ran: dict[str, set[str]]) -> str:
    """What every mode runs first, then what each mode runs beyond it: a mode touches the
    common run and its own, not the other modes' functions between them."""
    common = set.intersection(*ran.values())
    out = ["# written by python -m support.layout: compiled functions run from start to idle"]
    out += ["# in every mode", *sorted(common)]
    placed = set(common)
    for mode, names in ran.items():
        out += [f"# {mode} mode", *sorted(names - placed)]
        placed |= names
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
