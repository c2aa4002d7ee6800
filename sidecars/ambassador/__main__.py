"""Entry point: `python -m sidecars.ambassador` and the `sidecar-ambassador` console script."""

from __future__ import annotations

from sidecars.ambassador.service import SIDECAR


def main() -> None:
    SIDECAR.main()


if __name__ == "__main__":
    main()
