"""Entry point: `python -m sidecars.warloader` and the `sidecar-warloader` console script."""

from __future__ import annotations

from sidecars.warloader.service import SIDECAR


def main() -> None:
    SIDECAR.main()


if __name__ == "__main__":
    main()
