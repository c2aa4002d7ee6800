"""What identifies a remote version, and the download policy: plain data, no HTTP client."""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server said identifies this version: for resuming and conditional requests."""

    etag: str | None = None
    last_modified: str | None = None

    def if_range(self) -> str | None:
        """A validator fit for If-Range: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


@dataclass(frozen=True, slots=True)
class Fetched:
    """Outcome of a download: the server's 304, or the size and sha256 of what was written."""

    not_modified: bool
    size: int = 0
    sha256: str = ""
    validators: Validators = Validators()


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Limits and retry behaviour for every download."""

    max_size: int
    attempts: int
    retry_delay: float
    min_rate: int = 0  # bytes/s an attempt must reach over each `rate_window`; 0: no rule
    rate_window: float = 30.0
    deadline: float | None = None  # seconds for one source's download, retries included


def basic(user: str, password: str) -> str:
    """An Authorization header value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
