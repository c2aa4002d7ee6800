"""`python -m tests.fuzz run [--seconds N] [--jobs J] [--keep DIR] [TARGET...]`: fuzz each
target for N seconds; `python -m tests.fuzz repro TARGET FILE...`: run inputs once, in
process, and show what they raise; `python -m tests.fuzz list`: the targets."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from tests.fuzz import runner, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fuzz targets for a bounded time each")
    run.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    run.add_argument("--keep", type=Path, help="keep found inputs and reproducers here")
    run.add_argument("targets", nargs="*", metavar="TARGET")
    repro = sub.add_parser("repro", help="run inputs through a target once")
    repro.add_argument("target")
    repro.add_argument("files", nargs="+", type=Path)
    sub.add_parser("list", help="list the targets")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(targets.TARGETS))
        return 0
    if args.command == "repro":
        return _repro(args.target, args.files)
    names = args.targets or list(targets.TARGETS)
    for name in names:
        targets.load(name)  # an unknown name fails before anything runs
    print(f"fuzzing {len(names)} target(s) for {args.seconds} s each, {args.jobs} at a time")
    keep = args.keep.resolve() if args.keep else None
    results = runner.run(names, args.seconds, args.jobs, keep)
    for result in results:
        print(result.line())
        if not result.ok:
            print(f"  reproducer: {result.reproducer}\n" + _indent(result.problem))
    failed = [r.target for r in results if not r.ok]
    print(f"fuzz: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _repro(name: str, files: list[Path]) -> int:
    target = targets.load(name)
    failed = 0
    for path in files:
        data = path.read_bytes()
        try:
            target.fuzz(data)
        except Exception:
            failed += 1
            print(f"{path}: {data[:200]!r}")
            traceback.print_exc()
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()[:40])


if __name__ == "__main__":
    sys.exit(main())
