"""One target under atheris (libFuzzer): `python -m tests.fuzz.worker TARGET [libFuzzer flags]
[CORPUS_DIR...]`. The runner starts it; run it by hand to pass libFuzzer flags directly."""

from __future__ import annotations

import sys

import atheris


def main() -> None:
    name = sys.argv[1]
    from tests.fuzz import targets

    with atheris.instrument_imports(include=["sidecars"]):
        target = targets.load(name)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target.fuzz)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
