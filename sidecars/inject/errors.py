"""The one error inject reports: a line naming the document and what is wrong."""

from __future__ import annotations


class InjectError(Exception):
    """Bad input or a collision: printed as one line, exit 2, nothing written."""
