"""argparse that reports misuse in one line. Its own module: settings import it only for a
command line, since the images take their settings from the environment and argparse costs
0.4 MiB of memory."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from sidecars.runtime.settings import EXIT_CONFIG


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports misuse in one line, without the multi-line usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see --help)\n")
        raise SystemExit(EXIT_CONFIG)
