"""Entry point: `python -m sidecars.adapter` and the `sidecar-adapter` console script."""

from __future__ import annotations

from sidecars.adapter.service import SIDECAR


def main() -> None:
    SIDECAR.main()


if __name__ == "__main__":
    main()
