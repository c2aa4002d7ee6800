"""`python -m sidecars.inject`: the same as `sidecars inject`."""

from __future__ import annotations

from sidecars.inject.cli import inject_main

if __name__ == "__main__":
    inject_main()
