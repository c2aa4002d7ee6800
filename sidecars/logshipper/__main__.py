"""Entry point: `python -m sidecars.logshipper` and the `sidecar-logshipper` console script."""

from __future__ import annotations

from sidecars.logshipper.service import SIDECAR


def main() -> None:
    SIDECAR.main()


if __name__ == "__main__":
    main()
